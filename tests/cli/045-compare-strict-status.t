#!/bin/bash
# compare -s against qemu-img 7.2 on pairs whose block status differs in
# the flags beyond allocation: qemu compares the whole status word, so an
# extent that reaches the image's end (its EOF flag) differs from the
# same data reported in two extents (host clusters out of order, L2 table
# boundaries, a raw file's data/hole runs), and a host offset known
# (plain) differs from none (encrypted qcow2, luks, whose status is one
# data extent over the whole disk).  Pairs: qcow2 written in and out of
# order, 512-byte clusters (an extent per L2 table), raw files with and
# without holes, overlays, sizes not a multiple of 512, luks and
# encrypted qcow2 against each other and against plain images.  Exit
# code and stdout byte for byte, both orders.
. "$(dirname "$0")/lib.sh"

printf 'strict-status-key' > KEY
obj=(--object secret,id=s,file=KEY)
# One luks volume and one encrypted qcow2 made by qemu-img (each create
# runs its one-second PBKDF2 benchmark, which fails now and then under
# load: retried); the others are copies of them, written by qemu-io.
for i in 1 2 3 4 5; do
    qemu-img create -q "${obj[@]}" -f luks -o key-secret=s,iter-time=10 l0.luks 3M 2> /dev/null && break
done
for i in 1 2 3 4 5; do
    qemu-img create -q "${obj[@]}" -f qcow2 \
        -o encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10 e4.qcow2 3M 2> /dev/null && break
done
mkl() {
    cp l0.luks "$1"
    qemu-io "${obj[@]}" --image-opts "driver=luks,file.filename=$1,key-secret=s" -c "$2" > /dev/null
}
mke() {
    cp e4.qcow2 "$1"
    qemu-io "${obj[@]}" --image-opts "driver=qcow2,file.filename=$1,encrypt.key-secret=s" -c "$2" > /dev/null
}
q() { local f=$1 s=$2; shift 2; qemu-img create -q -f qcow2 "$@" "$f" "$s"; }
w() { local fmt=$1 f=$2; shift 2; local c=(); for x; do c+=(-c "$x"); done; qemu-io -f "$fmt" "${c[@]}" "$f" > /dev/null; }

q a.qcow2 3M; w qcow2 a.qcow2 'write -P 1 0 3M'
q b.qcow2 3M; w qcow2 b.qcow2 'write -P 1 1M 2M' 'write -P 1 0 1M'
q s.qcow2 3M -o cluster_size=512; w qcow2 s.qcow2 'write -P 1 0 3M'
q c.qcow2 3M; w qcow2 c.qcow2 'write -P 1 0 64k'
q d.qcow2 3M; w qcow2 d.qcow2 'write -P 1 0 64k' 'write -z 64k 64k'
q e.qcow2 3M
q o.qcow2 3M -b a.qcow2 -F qcow2; w qcow2 o.qcow2 'write -P 1 1M 64k'
qemu-img create -q -f raw r.raw 3M; w raw r.raw 'write -P 1 0 3M'
qemu-img create -q -f raw r2.raw 3M; w raw r2.raw 'write -P 1 0 64k'
qemu-img create -q -f raw r3.raw 3M
truncate -s 3M t.raw
q o2.qcow2 3M -b r2.raw -F raw
truncate -s 3146000 odd1.raw; w raw odd1.raw 'write -P 1 0 64k'
truncate -s 3146000 odd2.raw; w raw odd2.raw 'write -P 1 0 64k' 'write -P 1 3145728 272'

pairs=("a.qcow2 b.qcow2" "a.qcow2 r.raw" "s.qcow2 r.raw" "s.qcow2 a.qcow2" "c.qcow2 d.qcow2"
       "r.raw r2.raw" "r2.raw r3.raw" "r3.raw e.qcow2" "c.qcow2 r2.raw" "o.qcow2 a.qcow2"
       "o2.qcow2 r2.raw" "t.raw e.qcow2" "t.raw r3.raw" "odd1.raw odd2.raw" "odd1.raw odd1.raw"
       "a.qcow2 a.qcow2" "o.qcow2 o.qcow2")
for p in "${pairs[@]}"; do
    set -- $p
    oracle "compare -s $1 $2" compare -s "$1" "$2"
    [ "$1" = "$2" ] || oracle "compare -s $2 $1" compare -s "$2" "$1"
done

# encrypted images (the key through --image-opts, both sides)
mkl l1.luks 'write -P 1 0 3M'; mkl l3.luks 'write -P 1 0 64k'
mke e1.qcow2 'write -P 1 0 3M'; mke e2.qcow2 'write -P 1 1M 2M'; mke e3.qcow2 'write -P 1 0 64k'
spec() {
    case $1 in
        *.luks) echo "driver=luks,file.filename=$1,key-secret=s" ;;
        e[0-9].qcow2) echo "driver=qcow2,file.filename=$1,encrypt.key-secret=s" ;;
        *.raw) echo "driver=raw,file.filename=$1" ;;
        *) echo "driver=qcow2,file.filename=$1" ;;
    esac
}
for p in "l1.luks l3.luks" "l1.luks r.raw" "l1.luks e1.qcow2" "l3.luks e3.qcow2" "e1.qcow2 e2.qcow2" \
         "e3.qcow2 c.qcow2" "e1.qcow2 a.qcow2" "e4.qcow2 e.qcow2" "e1.qcow2 r.raw" "l1.luks a.qcow2" \
         "l1.luks l1.luks" "e2.qcow2 e2.qcow2"; do
    set -- $p
    oracle "compare -s $1 $2" compare -s "${obj[@]}" --image-opts "$(spec "$1")" "$(spec "$2")"
    [ "$1" = "$2" ] ||
        oracle "compare -s $2 $1" compare -s "${obj[@]}" --image-opts "$(spec "$2")" "$(spec "$1")"
done
done_testing
