#!/bin/bash
# Strings that come from an image (backing file name, backing format,
# snapshot names, data file name) and the file name itself are escaped in
# JSON exactly as qemu-img 7.2 does (\" \\ \n \t, \u00XX in upper case for
# other control characters and DEL, non-ASCII as \uXXXX, surrogate pairs
# above U+FFFF, U+FFFD for invalid UTF-8), and printed raw in human output.
. "$(dirname "$0")/lib.sh"
names=(
    'quote"d'
    'back\slash'
    $'new\nline'
    $'tab\tand\rcr'
    $'ctl\x01\x1f\x7f'
    'utf8-é-€'
    $'emoji\xf0\x9f\x98\x80'
    $'bad\xff\xfeutf8\xc3'
    '</script>&amp;'
    'json:{"driver":"raw"}'
)
i=0
for n in "${names[@]}"; do
    i=$((i + 1))
    qemu-img create -q -f qcow2 -u -b "$n" -F qcow2 o$i.qcow2 1M
    oracle "backing name #$i JSON" info --output=json o$i.qcow2
    oracle "backing name #$i human" info o$i.qcow2
done
# Snapshot names (no backing file, snapshots need none).
qemu-img create -q -f qcow2 s.qcow2 1M
for n in 'sn"ap' 'sn\ap' $'sn\x01ap' 'snäp' $'sn\nap'; do
    qemu-img snapshot -c "$n" s.qcow2
done
oracle "snapshot names JSON" info --output=json s.qcow2
oracle "snapshot names human" info s.qcow2
# The file name itself.
fname=$'we"ird\\ é name.qcow2'
qemu-img create -q -f qcow2 "$fname" 1M
oracle "file name JSON" info --output=json "$fname"
oracle "file name human" info "$fname"
# Data file name.
qemu-img create -q -f qcow2 -o 'data_file=da"ta é.raw' d.qcow2 1M
oracle "data file name JSON" info --output=json d.qcow2
oracle "data file name human" info d.qcow2
done_testing
