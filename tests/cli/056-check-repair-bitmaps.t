#!/bin/bash
# check -r keeps persistent dirty bitmaps, as qemu-img check -r does: the
# repair writes no guest data, so the bitmaps autoclear bit stays set and
# the bitmap clusters stay referenced (not freed as leaks).  An image with
# a bitmap from `qemu-img bitmap --add` (auto flag set) and some data, a
# cluster leaked at the end of the file (lib.sh's qcow2.py), then
# `kimg check -r leaks` / `-r all`: the leak is repaired as by qemu-img,
# qemu-img info still lists the bitmap and qemu-img check is clean.
. "$(dirname "$0")/lib.sh"

mk() {
    rm -f "$1"
    qemu-img create -q -f qcow2 "$1" 4M &&
    qemu-io -f qcow2 -c "write -P 0x5a 0 128k" -c "write -P 0xa5 2M 64k" "$1" > /dev/null &&
    qemu-img bitmap --add "$1" b0 &&
    qemu-io -f qcow2 -c "write -P 0x11 1M 64k" "$1" > /dev/null
}
# leak one cluster past the end of the file (refcount 1, no reference)
leak() {
    local end cs
    cs=$($Q2 header "$1" | sed -n 's/^cluster_size=//p')
    end=$($Q2 free "$1")
    truncate -s $((end + cs)) "$1" && $Q2 set-rc "$1" "$end" 1
}
bitmaps() {
    qemu-img info --output=json "$1" |
        $PY -c 'import json,sys; d=json.load(sys.stdin)
bm=d.get("format-specific",{}).get("data",{}).get("bitmaps",[])
print(" ".join("%s:%s:%s" % (b["name"], b["granularity"], ",".join(b["flags"])) for b in bm))'
}
autoclear() { $Q2 header "$1" | sed -n 's/^autoclear_features=//p'; }

mk img.qcow2 || { fail "qemu-img made the image"; done_testing; }
want=$(bitmaps img.qcow2)
is "$want" "b0:65536:auto" "the image has the bitmap b0 (qemu-img info)"
leak img.qcow2
is "$(qemu-img check img.qcow2 > /dev/null 2>&1; echo $?)" 3 "qemu-img check exits 3 (one leak)"

for r in leaks all; do
    check_oracle "bitmap image, leaked cluster: check -r $r" img.qcow2 -r $r
    is "$RC" 0 "check -r $r exits 0"
    is "$(bitmaps ck/img.qcow2)" "$want" "after kimg check -r $r: qemu-img info lists the bitmap"
    is "$(bitmaps ck/img.qcow2)" "$(bitmaps cq/img.qcow2)" "after kimg check -r $r: bitmaps as after qemu-img's"
    is "$(autoclear ck/img.qcow2)" "$(autoclear cq/img.qcow2)" "after kimg check -r $r: autoclear bits as after qemu-img's"
    ok "after kimg check -r $r: qemu-img check clean" check_clean ck/img.qcow2
    ok "after kimg check -r $r: content as after qemu-img's repair" qemu_oracle_compare ck/img.qcow2 cq/img.qcow2
    cp ck/img.qcow2 fixed-$r.qcow2
    qemu-img bitmap --add fixed-$r.qcow2 b1 &&
        qemu-io -f qcow2 -c "write -P 0x22 3M 64k" fixed-$r.qcow2 > /dev/null
    is "$(bitmaps fixed-$r.qcow2)" "$want b1:65536:auto" \
        "after kimg check -r $r: qemu-img adds a bitmap and writes, both bitmaps listed"
    ok "after kimg check -r $r, qemu-img's bitmap add and write: check clean" \
        check_clean fixed-$r.qcow2
done

# a plain (read-only) check of the repaired image agrees too
check_oracle "bitmap image, after kimg's repair: check" fixed-all.qcow2
done_testing
