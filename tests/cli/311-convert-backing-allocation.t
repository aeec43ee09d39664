#!/bin/bash
# convert -B: the output's allocation is qemu-img's.  qemu-img copies what
# the source's top layer holds (the -B image stands in for the source's
# backing chain): ranges the top layer leaves to its backing file stay
# unallocated, zero clusters of the top become zero clusters, and a source
# without a backing file (flat qcow2, raw) is written whole, its
# unallocated ranges as zeros over the backing's data.  Zeros past the end
# of the -B image are not written.  With -c each target cluster is decided
# at its start: a span shorter than a cluster makes the cluster data, read
# through the chain.  A zero write that covers part of a cluster whose
# rest reads as zeros makes a zero cluster.  Each case compares
# `qemu-img map --output=json` of both outputs (host offsets aside), the
# content (qemu-img compare) and qemu-img check.
# make check: a third of the cases (lib.sh sampled; the flat qcow2 source,
# which a later check reads, in each part); check-slow the rest.
. "$(dirname "$0")/lib.sh"

# map_shape MAP: one line per extent, the offset's value dropped
map_shape() {
    python3 -c '
import json, sys
for e in json.load(open(sys.argv[1])):
    print(e["start"], e["length"], e["depth"], e["present"], e["zero"], e["data"],
          "offset" in e)' "$1"
}
# case_ NAME BACKING BFMT SRC [ARGS...]: convert -B both ways and compare
# (one of the sampled cases; case_each runs in each part)
case_() {
    sampled || return 0         # check: a third of the cases; check-slow: the rest
    case_each "$@"
}
case_each() {
    local name=$1 b=$2 bf=$3 src=$4
    shift 4
    rm -f q.qcow2 k.qcow2
    qemu-img convert "$@" -O qcow2 -B "$b" -F "$bf" "$src" q.qcow2 ||
        { fail "$name: qemu-img itself failed"; return; }
    kimg convert "$@" -O qcow2 -B "$b" -F "$bf" "$src" k.qcow2
    is "$RC" 0 "$name: exit 0" || { diag "$(< "$T/err")"; return; }
    qemu-img map --output=json q.qcow2 > q.map
    qemu-img map --output=json k.qcow2 > k.map
    map_shape q.map > q.shape
    map_shape k.map > k.shape
    is_file k.shape q.shape "$name: allocation (qemu-img map) as qemu-img's"
    ok "$name: reads as qemu-img's output" qemu_oracle_compare q.qcow2 k.qcow2
    ok "$name: check clean" check_clean k.qcow2
}

# base <- top: data, zero clusters over data, data of zeros, a partial write
qemu-img create -q -f qcow2 base.qcow2 4M
qemu-io -c 'write -P 0xaa 0 2M' -c 'write -P 0xbb 3M 64k' base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 4M
qemu-io -c 'write -P 0xcc 64k 64k' -c 'write -z 256k 128k' -c 'write -z -u 512k 64k' \
    -c 'write -P 0 1M 64k' -c 'write -P 0xdd 2560k 4k' -c 'write -z 3M 64k' top.qcow2 > /dev/null
case_ "overlay" base.qcow2 qcow2 top.qcow2
case_ "overlay, -c" base.qcow2 qcow2 top.qcow2 -c
case_ "overlay, -c, 2M clusters" base.qcow2 qcow2 top.qcow2 -c -o cluster_size=2M
case_ "overlay, 4k clusters" base.qcow2 qcow2 top.qcow2 -o cluster_size=4k
case_ "overlay, -S 0" base.qcow2 qcow2 top.qcow2 -S 0
case_ "overlay, v2 target" base.qcow2 qcow2 top.qcow2 -o compat=0.10

# a flat copy (no backing file): everything is written, holes as zeros
qemu-img convert -O qcow2 top.qcow2 flat.qcow2
qemu-img convert -O raw top.qcow2 flat.raw
case_each "flat qcow2 source" base.qcow2 qcow2 flat.qcow2
ok "flat qcow2 source: the output reads as the source" qemu_oracle_compare flat.qcow2 k.qcow2
case_ "flat qcow2 source, -c" base.qcow2 qcow2 flat.qcow2 -c
case_ "raw source" base.qcow2 qcow2 flat.raw

# the top is larger than its backing file: zeros past the end of the -B
# image are not written (zero clusters there, or holes of a raw source)
qemu-img create -q -f qcow2 b2.qcow2 2M
qemu-io -c 'write -P 0xaa 0 2M' b2.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b b2.qcow2 -F qcow2 t4.qcow2 4M
qemu-io -c 'write -P 0xcc 64k 64k' -c 'write -z 1M 64k' -c 'write -z 2560k 128k' \
    -c 'write -P 0 3M 128k' -c 'write -P 0xdd 3200k 4k' t4.qcow2 > /dev/null
case_ "past the backing file's end" b2.qcow2 qcow2 t4.qcow2
case_ "past the backing file's end, -S 0" b2.qcow2 qcow2 t4.qcow2 -S 0
case_ "past the backing file's end, -c" b2.qcow2 qcow2 t4.qcow2 -c -o cluster_size=1M
case_ "raw source, smaller -B image" b2.qcow2 qcow2 flat.raw

# a backing file whose end is inside a cluster
qemu-img create -q -f qcow2 bodd.qcow2 1049088
qemu-io -c 'write -P 0xaa 0 1049088' bodd.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b bodd.qcow2 -F qcow2 todd.qcow2 3M
qemu-io -c 'write -z 0 3M' -c 'write -P 0x33 64k 4k' todd.qcow2 > /dev/null
case_ "backing file ends inside a cluster" bodd.qcow2 qcow2 todd.qcow2

# a 4k-cluster top: zeros covering part of a 64k target cluster over a
# backing that reads zeros there become a zero cluster
qemu-img create -q -f qcow2 -o cluster_size=4k b5.qcow2 3M
qemu-io -c 'write -P 0xaa 0 1M' b5.qcow2 > /dev/null
qemu-img create -q -f qcow2 -o cluster_size=4k -b b5.qcow2 -F qcow2 t5.qcow2 3M
qemu-io -c 'write -z 1536k 4k' -c 'write -P 0x11 1600k 4k' -c 'write -P 0 1664k 4k' \
    -c 'write -z 1728k 4k' -c 'write -P 0x22 1732k 4k' -c 'write -z 8k 4k' \
    -c 'write -P 0x44 260k 8k' t5.qcow2 > /dev/null
case_ "small source clusters" b5.qcow2 qcow2 t5.qcow2
case_ "small source clusters, -c" b5.qcow2 qcow2 t5.qcow2 -c
case_ "small source clusters, -c, 16k clusters" b5.qcow2 qcow2 t5.qcow2 -c -o cluster_size=16k

# -c -S 0: zeros are compressed clusters too (with -B or without)
case_ "-c -S 0" b5.qcow2 qcow2 t5.qcow2 -c -S 0
qemu-img convert -c -S 0 -O qcow2 t5.qcow2 q.qcow2
kimg convert -c -S 0 -O qcow2 t5.qcow2 k.qcow2
qemu-img map --output=json q.qcow2 > q.map; map_shape q.map > q.shape
qemu-img map --output=json k.qcow2 > k.map; map_shape k.map > k.shape
is_file k.shape q.shape "-c -S 0 without -B: allocation as qemu-img's"

# parallel writes: the same bytes for any -m
kimg convert -m 1 -O qcow2 -B base.qcow2 -F qcow2 flat.qcow2 m1.qcow2
kimg convert -m 16 -W -O qcow2 -B base.qcow2 -F qcow2 flat.qcow2 m16.qcow2
ok "-m 1 and -m 16 -W give the same bytes" cmp -s m1.qcow2 m16.qcow2
kimg convert -m 1 -O qcow2 -B b5.qcow2 -F qcow2 t5.qcow2 m1.qcow2
kimg convert -m 16 -O qcow2 -B b5.qcow2 -F qcow2 t5.qcow2 m16.qcow2
ok "small source clusters: -m 1 and -m 16 give the same bytes" cmp -s m1.qcow2 m16.qcow2

done_testing
