#!/bin/bash
# `check -r all` never changes what the guest reads outside the damaged
# cluster's own data.  The damage: a preallocated cluster (one whose host
# cluster no subcluster reads from: the zero flag, or extended L2 with no
# allocated bit) gets a misaligned host offset.  Both tools repair it by
# clearing the offset; the zero flag and the subcluster bitmap must stay,
# so zero subclusters keep reading zeros and unallocated ones keep reading
# the backing file.  (kimg once set every subcluster to zero: the overlay
# then hid the backing file's data.)  Standard and extended L2, v3 and
# v2 (compat=0.10), with and without a backing file; each repaired image
# reads as the image did before the damage, as qemu-img's repair of the
# same image, and passes qemu-img check.  v2 differs on purpose: the zero
# flag is not allowed there and qemu cannot read it, so kimg clears the
# entry (unallocated) where qemu-img writes the flag back.
. "$(dirname "$0")/lib.sh"
plan 96
KiB=1024
CL=$((64 * KiB))
GUEST=$((2 * CL))        # the damaged guest cluster

qemu-img create -q -f qcow2 base.qcow2 1M
qemu-io -c "write -P 0xaa 0 1M" base.qcow2 > /dev/null

# The 16-byte L2 entry (entry, bitmap) of GUEST in IMG, as two hex words.
entry_of() { local pos; pos=$($Q2 l2 "$1" $GUEST | cut -d' ' -f1)
             od -An -v -tx1 -j "$pos" -N16 "$1" | tr -d ' \n'; }

n=0
scenario() {
    local l2=$1 compat=$2 backing=$3 opts pos e bm name
    n=$((n + 1))
    name="$l2 L2, compat $compat, ${backing:-no backing}"
    opts=compat=$compat
    [ "$l2" = extended ] && opts=$opts,extended_l2=on
    rm -f pre$n.qcow2
    if [ -n "$backing" ]; then
        qemu-img create -q -f qcow2 -o "$opts" -b "$T/base.qcow2" -F qcow2 pre$n.qcow2 1M
    else
        qemu-img create -q -f qcow2 -o "$opts" pre$n.qcow2 1M
    fi
    # data before, in and after the cluster, so the cluster has a host
    # offset and its neighbours are allocated too
    qemu-io -c "write -P 0xbb $((GUEST - 4 * KiB)) $((12 * KiB))" \
            -c "write -P 0xcc $((GUEST + CL)) 4k" pre$n.qcow2 > /dev/null
    pos=$($Q2 l2 pre$n.qcow2 $GUEST | cut -d' ' -f1)
    e=$(( $(get_be 8 pre$n.qcow2 "$pos") ))
    if [ "$l2" = extended ]; then
        # subclusters 0-3 zero, 4-31 unallocated (the backing file shows)
        put_be 8 pre$n.qcow2 $((pos + 8)) $((0x0000000f00000000))
    else
        e=$((e | 1))                                # preallocated zero cluster
        put_be 8 pre$n.qcow2 "$pos" "$e"
    fi
    ok "$name: the undamaged image is clean" check_clean pre$n.qcow2
    cp pre$n.qcow2 c$n.qcow2
    put_be 8 c$n.qcow2 "$pos" $((e + 512))      # misaligned host offset
    qrc=0; qemu-img check c$n.qcow2 > /dev/null 2>&1 || qrc=$?
    is "$qrc" 2 "$name: qemu-img check sees a corruption"
    check_oracle "$name: check" c$n.qcow2
    check_oracle "$name: check -q (problems still on stderr)" c$n.qcow2 -q
    repair_oracle "$name: check -r all" c$n.qcow2 -r all
    ok "$name: kimg's repair passes qemu-img check" check_clean ck/c$n.qcow2
    if [ "$compat" = 0.10 ]; then
        # The zero flag is not allowed in a v2 image: qemu's reader refuses
        # it ("Zero cluster entry found in pre-v3 image"), so neither the
        # undamaged image nor qemu-img's repair (which writes the flag) can
        # be read.  kimg leaves the cluster unallocated: it reads as the
        # image with that entry cleared.
        cp pre$n.qcow2 want$n.qcow2
        put_be 8 want$n.qcow2 "$pos" 0
        ok "$name: reads as the image with the entry cleared" \
           qemu_oracle_compare want$n.qcow2 ck/c$n.qcow2
        is "$(entry_of ck/c$n.qcow2 | cut -c1-16)" 0000000000000000 \
           "$name: the repaired L2 entry is unallocated"
        return
    fi
    ok "$name: reads as before the damage" qemu_oracle_compare pre$n.qcow2 ck/c$n.qcow2
    ok "$name: reads as qemu-img's repair" qemu_oracle_compare cq/c$n.qcow2 ck/c$n.qcow2
    is "$(entry_of ck/c$n.qcow2)" "$(entry_of cq/c$n.qcow2)" \
       "$name: the repaired L2 entry is qemu-img's"
}

for b in "" backing; do
    scenario standard 1.1 "$b"
    scenario standard 0.10 "$b"
    scenario extended 1.1 "$b"
done

# -q quiets stdout only: qemu-img still says why a format cannot be checked
truncate -s 1M r.raw
qimg check -q -f raw r.raw
kimg check -q -f raw r.raw
is "$RC" "$QRC" "check -q of a raw image: exit code $QRC as qemu-img's"
is "$(< "$T/err")" "$(sed 's/^qemu-img:/kimg:/' "$T/qerr")" "check -q of a raw image: stderr as qemu-img's"
