#!/bin/bash
# kimg snapshot (internal qcow2 snapshots), qemu-img's options:
#   -l lists as qemu-img (fixtures with and without snapshots, compat 0.10);
#   -c NAME creates one qemu-img sees (name, size 0 VM state), image clean;
#   -a NAME reverts the content to the snapshot's (compared with qemu-img's
#   own -a on a twin), -d NAME deletes it with no leak; errors (unknown
#   snapshot, raw image) exit 1 with one "kimg: " line.
. "$(dirname "$0")/../cli/lib.sh"
fixtures
cd "$FX"
for f in snap.qcow2 v3.qcow2 amend-v2.qcow2; do
    oracle "snapshot -l $f" snapshot -l "$f"
done
oracle "snapshot -l -U snap.qcow2" snapshot -l -U snap.qcow2
cd "$T"
for fx in v3.qcow2 v2.qcow2 el2.qcow2 rb1.qcow2 zlib.qcow2; do
    cp "$FX/$fx" k.qcow2
    qemu-img convert -O raw k.qcow2 before.raw
    kimg snapshot -c "snap one" k.qcow2
    if [ "$fx" = rb1.qcow2 ]; then   # refcount 2 does not fit in 1 bit: qemu-img exits 1
        is "$RC" 1 "$fx: snapshot -c exit 1 (refcount_bits=1 cannot share clusters)"
        err_line "$fx: snapshot -c refused"
        is "$(qemu-img snapshot -l k.qcow2)" "" "$fx: no snapshot made"
        c=0; qemu-img check k.qcow2 > /dev/null 2>&1 || c=$?
        like "$c" "^[03]$" "$fx: no corruption after the refused -c (qemu-img itself leaks a cluster: 3)"
        continue
    fi
    is "$RC" 0 "$fx: snapshot -c exit 0"
    ok "$fx: clean after snapshot -c" check_clean k.qcow2
    like "$(qemu-img snapshot -l k.qcow2 | tail -1)" "^1 +snap one +0 B " "$fx: qemu-img lists the new snapshot"
    qemu-io -f qcow2 -c "write -P 0xee 0 128k" -c "write -z 2M 64k" k.qcow2 > /dev/null
    ok "$fx: clean after writing over the snapshot" check_clean k.qcow2
    cp k.qcow2 q.qcow2
    kimg snapshot -a "snap one" k.qcow2
    is "$RC" 0 "$fx: snapshot -a exit 0"
    qemu-img snapshot -a "snap one" q.qcow2
    ok "$fx: content after -a is the snapshot's" qemu_oracle_compare k.qcow2 before.raw
    ok "$fx: as after qemu-img snapshot -a" qemu_oracle_compare k.qcow2 q.qcow2
    ok "$fx: clean after snapshot -a" check_clean k.qcow2
    kimg snapshot -d "snap one" k.qcow2
    is "$RC" 0 "$fx: snapshot -d exit 0"
    is "$(qemu-img snapshot -l k.qcow2)" "" "$fx: no snapshot left"
    ok "$fx: clean (no leak) after snapshot -d" check_clean k.qcow2
done
cp "$FX/snap.qcow2" s.qcow2
kimg snapshot -a nosuch s.qcow2; is "$RC" 1 "snapshot -a of an unknown name: exit 1"; err_line "snapshot -a nosuch"
kimg snapshot -d nosuch s.qcow2; is "$RC" 1 "snapshot -d of an unknown name: exit 1"; err_line "snapshot -d nosuch"
cp "$FX/holes.raw" h.raw
kimg snapshot -l h.raw
qrc=0; qemu-img snapshot -l h.raw > /dev/null 2>&1 || qrc=$?
is "$RC" "$qrc" "snapshot -l of raw: exit $qrc as qemu-img"
kimg snapshot -c x h.raw; is "$RC" 1 "snapshot -c on raw: exit 1"
like "$(tail -1 "$T/err")" "^kimg: " "snapshot -c on raw: ends with a kimg: error line (after the probing warning)"
done_testing
