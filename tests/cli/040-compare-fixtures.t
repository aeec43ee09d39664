#!/bin/bash
# kimg compare of every fixture against `qemu-img convert -O raw` of it:
# exit 0 and "Images are identical." (this is the content check of every
# reader: compression, subclusters, zero clusters, chains, snapshots,
# data files...), both ways round, with -f/-F given, and with -q silent.
# make check: a third of the fixtures (lib.sh sampled); check-slow the
# rest; both run zlib.qcow2 and snap.qcow2 (zlib, the default compression,
# and the one fixture with snapshots: the sample has neither).
. "$(dirname "$0")/lib.sh"
fixtures
cd "$FX"
for f in $(fixture_names); do
    sampled || case $f in zlib.qcow2 | snap.qcow2) ;; *) continue ;; esac
    fmt=$(awk -v n="$f" '$1 == n { print $2 }' LIST)
    qemu-img convert -O raw "$f" "$T/$f.flat" || { fail "qemu-img convert $f"; continue; }
    oracle "compare $f flat" compare "$f" "$T/$f.flat"
    is "$(< "$T/out")" "Images are identical." "compare $f flat: says identical"
    oracle "compare flat $f" compare "$T/$f.flat" "$f"
    oracle "compare -f $fmt -F raw $f flat" compare -f "$fmt" -F raw "$f" "$T/$f.flat"
    oracle "compare -q $f flat" compare -q "$f" "$T/$f.flat"
    is "$(< "$T/out")" "" "compare -q $f flat: silent"
done
done_testing
