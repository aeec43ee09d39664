#!/bin/bash
# --untrusted (kimg's own option): open no file but the one named.  Images
# that need a backing file or an external data file to be read are refused
# (map, compare: one "kimg: " line, compare exit 2 = error opening) without
# touching the other file (a FIFO as backing file would block an open(2));
# info --untrusted still reports the backing/data file names, exactly as
# qemu-img info does; self-contained images work as without the option.
. "$(dirname "$0")/lib.sh"
fixtures
KIMG_TIMEOUT=10
cd "$FX"
for f in chain-top.qcow2 chain-mid.qcow2 chain2-top.qcow2 noformat-top.qcow2 datafile.qcow2 datafile-raw.qcow2; do
    kimg map --untrusted --output=json "$f"
    err_line "map --untrusted $f refused"
    is "$(< "$T/out")" "" "map --untrusted $f: nothing on stdout"
    qemu-img convert -O raw "$f" "$T/flat.raw"
    kimg compare --untrusted "$f" "$T/flat.raw"
    is "$RC" 2 "compare --untrusted $f: exit 2 (error opening)"
    err_line "compare --untrusted $f"
    qimg info --output=json "$f"; kimg info --untrusted --output=json "$f"
    is "$RC" 0 "info --untrusted $f: exit 0"
    is_file "$T/out" "$T/qout" "info --untrusted $f: names the backing/data file as qemu-img info"
    qimg info "$f"; kimg info --untrusted "$f"
    is_file "$T/out" "$T/qout" "info --untrusted $f (human) as qemu-img info"
done
kimg info --untrusted --backing-chain chain-top.qcow2
err_line "info --untrusted --backing-chain refused"
# Self-contained images work as without the option.
for f in v3.qcow2 zlib.qcow2 el2.qcow2 snap.qcow2 holes.raw chain-base.raw; do
    qimg map --output=json "$f"; kimg map --untrusted --output=json "$f"
    is "$RC" 0 "map --untrusted $f: exit 0"
    is_file "$T/out" "$T/qout" "map --untrusted $f as qemu-img map"
    qemu-img convert -O raw "$f" "$T/flat.raw"
    kimg compare --untrusted "$f" "$T/flat.raw"
    is "$RC" 0 "compare --untrusted $f: identical"
    kimg check --untrusted "$f"
    qrc=0; qemu-img check "$f" > /dev/null 2>&1 || qrc=$?
    is "$RC" "$qrc" "check --untrusted $f: exit $qrc as qemu-img check"
done
# A backing file that would block if opened: info --untrusted must not open it.
cd "$T"
mkfifo pipe
qemu-img create -q -f qcow2 -u -b pipe -F raw overfifo.qcow2 1M
kimg info --untrusted --output=json overfifo.qcow2
is "$RC" 0 "info --untrusted with a FIFO backing file: exit 0, no hang"
like "$(grep '"backing-filename"' "$T/out")" '"pipe"' "info --untrusted reports the FIFO's name"
kimg map --untrusted overfifo.qcow2
err_line "map --untrusted with a FIFO backing file refused, no hang"
done_testing
