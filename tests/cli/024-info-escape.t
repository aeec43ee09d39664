#!/bin/bash
# Strings that come from an image (backing file name, backing format,
# snapshot names, data file name) and the file name itself are escaped in
# JSON exactly as qemu-img 7.2 does (\" \\ \n \t, \u00XX in upper case for
# other control characters and DEL, non-ASCII as \uXXXX, surrogate pairs
# above U+FFFF, U+FFFD for invalid UTF-8).  Human output equals qemu-img's
# for printable names; for names with control characters qemu-img prints
# them raw (a newline in a backing name forges an output line, an ESC
# drives the terminal), so kimg must escape them instead: no control byte
# but the line ends, and exactly as many lines as for a plain name.
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
has_ctl() { LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f]' "$1"; }
# human NAME IMAGE LINES: kimg's human info of IMAGE is clean of control
# bytes and LINES long, or (for printable strings) equals qemu-img's.
human() {
    local name=$1 img=$2 lines=$3 raw=$4
    if [ "$raw" = printable ]; then oracle "$name human" info "$img"; return; fi
    kimg info "$img"
    is "$RC" 0 "$name human: exit 0"
    ok "$name human: no raw control characters" eval '! has_ctl "$T/out"'
    is "$(wc -l < "$T/out")" "$lines" "$name human: $lines lines, as for a plain name"
}
qemu-img create -q -f qcow2 -u -b plain -F qcow2 plain.qcow2 1M
plain_lines=$(qemu-img info plain.qcow2 | wc -l)
i=0
for n in "${names[@]}"; do
    i=$((i + 1))
    qemu-img create -q -f qcow2 -u -b "$n" -F qcow2 o$i.qcow2 1M
    oracle "backing name #$i JSON" info --output=json o$i.qcow2
    kind=printable; printf %s "$n" > name.txt; has_ctl name.txt && kind=control
    [ "$n" != "${n/$'\n'/}" ] && kind=control
    human "backing name #$i" o$i.qcow2 "$plain_lines" $kind
done
# Snapshot names (no backing file, snapshots need none).
qemu-img create -q -f qcow2 s.qcow2 1M
for n in 'sn"ap' 'sn\ap' 'snäp'; do
    qemu-img snapshot -c "$n" s.qcow2
done
oracle "printable snapshot names JSON" info --output=json s.qcow2
oracle "printable snapshot names human" info s.qcow2
snap_lines=$(qemu-img info s.qcow2 | wc -l)
for n in $'sn\x01ap' $'sn\nap'; do
    qemu-img snapshot -c "$n" s.qcow2
done
oracle "snapshot names with control characters JSON" info --output=json s.qcow2
human "snapshot names with control characters" s.qcow2 $((snap_lines + 2)) control
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
