#!/bin/bash
# convert -p prints the same steps as qemu-img, byte for byte: qemu-img
# counts only the pieces it copies as data (zeros too with -S 0), cut by its
# block status (qcow2 replies end at an L2 table, compressed clusters come
# one at a time, requests stop at 2 GiB), its 2 MiB buffer and -c's target
# clusters, prints when the float share grows by more than 1, and prints
# 100.00 once more at the end, then a newline; only 0.00 and the newline
# when it fails after its option checks.
# make check: a third of the cases (lib.sh sampled; raw -> raw, the
# clusters written in part, the failures and -q in each part), ordered so
# that it takes one case of each kind and the cheap ones (no compressed
# 512-byte clusters, the 4k -c target: some 2 s of qemu-img CPU each);
# check-slow the rest.
. "$(dirname "$0")/lib.sh"

# steps NAME ARGS... TARGET: the same convert through both tools (targets
# q.TARGET and k.TARGET); exit code and stdout compared.  steps is one of
# the sampled cases; steps_each runs in each part.
steps() {
    sampled || return 0         # check: a third of the cases; check-slow: the rest
    steps_each "$@"
}
steps_each() {
    local name=$1; shift
    local args=("$@") n=$#
    local tgt=${args[$((n - 1))]} a
    unset "args[$((n - 1))]"
    for a in "${args[@]}"; do case $a in [sc][0-9]*.qcow2) src_img "${a%.qcow2}" ;; esac; done
    qimg convert "${args[@]}" "q.$tgt"
    kimg convert "${args[@]}" "k.$tgt"
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || diag "$(head -3 "$T/err")"
    is_file "$T/out" "$T/qout" "$name: -p lines as qemu-img's"
}
# src_img sCS | cCS: src.raw as a qcow2 with CS clusters (c: compressed),
# made when a case first names it (check's sample leaves some unused:
# c512 alone costs qemu-img some 2 s of CPU)
src_img() {
    [ -e "$1.qcow2" ] && return 0
    local c=; [ "${1:0:1}" = c ] && c=-c
    qemu-img convert $c -f raw -O qcow2 -o cluster_size="${1:1}" src.raw "$1.qcow2"
}
# twins CMD...: run CMD with the target names q.X and k.X (as "@X")
twins() { local p; for p in q k; do "${@//@/$p.}" || return 1; done; }

qemu-img create -q -f raw src.raw 16M
qemu-io -f raw -c 'write -P 0x5a 1M 3M' -c 'write -P 0x11 5M 64k' -c 'write -P 7 6M 2M' \
        -c 'write -P 8 9M 300k' -c 'write -P 9 10M 5M' -c 'write -P 1 15M 4k' src.raw > /dev/null
qemu-img create -q -f raw zero.raw 10M          # qemu-img allocates its first block
: > empty.raw
head -c 1000001 /dev/urandom > odd.raw          # not a whole number of sectors

steps_each "raw -> raw" -p -f raw -O raw src.raw o.raw
steps "raw -> qcow2" -p -f raw -O qcow2 src.raw o.qcow2
steps "zeros only" -p -f raw -O raw zero.raw o.raw
steps "zero-size source" -p -f raw -O qcow2 empty.raw o.qcow2
steps "odd-sized source" -p -f raw -O raw odd.raw o.raw
steps "-S 0 counts zeros" -p -S 0 -f raw -O qcow2 src.raw o.qcow2
steps "-S 64k" -p -S 64k -f raw -O qcow2 src.raw o.qcow2
for cs in 65536 4096; do      # (check's third takes 64k: 4k costs three times more)
    steps "-c, $cs-byte clusters" -p -c -f raw -O qcow2 -o cluster_size=$cs src.raw o.qcow2
done

# qcow2 sources: small clusters (an L2 table spans 32 KiB), compressed ones
# (ordered so that check's third takes one case of each kind, the cheap
# ones: compressed 64k -> raw, 512 -> raw, compressed 64k -> -c qcow2)
for c in s65536 c65536 s2M c512 s512 c2M c512: c65536: c2M:; do
    cs=${c:1}; cs=${cs%:}
    case $c in
        s*) steps "qcow2 $cs -> raw" -p -O raw s$cs.qcow2 o.raw ;;
        *:) steps "compressed qcow2 $cs -> -c qcow2" -p -c -O qcow2 c$cs.qcow2 o.qcow2 ;;
        *) steps "compressed qcow2 $cs -> raw" -p -O raw c$cs.qcow2 o.raw ;;
    esac
done
src_img s512                    # the backing file of the layers below
qemu-img convert -f raw -O qcow2 -o extended_l2=on src.raw ext.qcow2
qemu-io -c 'write -P 5 10k 3k' -c 'write -z 40k 8k' -c 'write -P 6 9469952 100k' ext.qcow2 > /dev/null
steps "extended L2 -> raw" -p -O raw ext.qcow2 o.raw
steps "extended L2 -> -S 0 qcow2" -p -S 0 -O qcow2 ext.qcow2 o.qcow2

# qemu-img cuts a block-status reply that ends inside a cluster of the
# source's top layer back to that cluster's start: a cluster written only
# in part whose tail is a hole in the host file (as a file system leaves
# it when the file grew past it later), and a 64 KiB-cluster layer over a
# 512-byte-cluster backing file, whose replies end anywhere.  (The images
# are copied with cp --sparse=always: qemu leaves a cluster's unwritten
# tail as a fallocated extent, and ext4's SEEK_DATA calls such a range
# data or a hole by whether it is in the page cache, so the first tool's
# reads would change what the second one sees.)
qemu-img create -q -f qcow2 part0.qcow2 8M
qemu-io -c 'write -P 0x55 1M 200k' -c 'write -P 0x66 3M 72k' -c 'write -z 5M 8k' part0.qcow2 > /dev/null
cp --sparse=always part0.qcow2 part.qcow2
steps_each "qcow2, clusters written in part -> raw" -p -O raw part.qcow2 o.raw
steps_each "qcow2, clusters written in part -> vmdk" -p -O vmdk part.qcow2 o.vmdk
qemu-img create -q -f qcow2 -o cluster_size=65536 -b s512.qcow2 -F qcow2 over0.qcow2
qemu-io -c 'write -P 0x77 9300k 10k' over0.qcow2 > /dev/null
cp --sparse=always over0.qcow2 over.qcow2
steps_each "64k clusters over 512-byte clusters -> raw" -p -O raw over.qcow2 o.raw

# a chain of three layers with different cluster sizes
qemu-img create -q -f qcow2 -o cluster_size=65536 -b s512.qcow2 -F qcow2 mid.qcow2
qemu-io -c 'write -P 0x11 100k 300k' -c 'write -z 1M 200k' -c 'write -c -P 3 2M 64k' \
        -c 'discard 3M 256k' -c 'write -P 0 4M 64k' mid.qcow2 > /dev/null
qemu-img create -q -f qcow2 -o cluster_size=512 -b mid.qcow2 -F qcow2 top.qcow2
qemu-io -c 'write -P 0x22 5M 100k' -c 'write -c -P 0x33 6M 64k' -c 'write -z 7M 64k' \
        -c 'write -P 9 7000k 3k' top.qcow2 > /dev/null
steps "chain -> raw" -p -O raw top.qcow2 o.raw
steps "chain -> -c qcow2" -p -c -O qcow2 top.qcow2 o.qcow2
steps "chain -> -S 0 qcow2" -p -S 0 -O qcow2 top.qcow2 o.qcow2
steps "chain -B: top layer only" -p -O qcow2 -B mid.qcow2 -F qcow2 top.qcow2 o.qcow2
steps "chain -B -S 0" -p -S 0 -O qcow2 -B mid.qcow2 -F qcow2 top.qcow2 o.qcow2
steps "chain -B -c" -p -c -O qcow2 -B mid.qcow2 -F qcow2 top.qcow2 o.qcow2
qemu-img create -q -f qcow2 short.qcow2 3M
qemu-io -c 'write -P 1 0 1M' short.qcow2 > /dev/null
steps "-B a shorter backing file, -S 0" -p -S 0 -O qcow2 -B short.qcow2 -F qcow2 top.qcow2 o.qcow2
# (check's third takes the 64k one: qemu-img makes and reads c512 in some
# 4 s of CPU, half check's time; the c512 ones belong to check-slow)
steps "several sources" -p -O raw src.raw top.qcow2 zero.raw empty.raw c512.qcow2 o.raw
steps "several sources, 64k compressed clusters" -p -O raw src.raw top.qcow2 zero.raw empty.raw c65536.qcow2 o.raw
steps "several sources -c" -p -c -O qcow2 src.raw top.qcow2 odd.raw c512.qcow2 o.qcow2

# vpc, vhdx and vdi sources: blocks written in part (qemu reports a whole
# allocated block as data, never looking for holes in the host file: these
# drivers have no cluster cut of their own to model)
for f in vpc vhdx vdi; do
    qemu-img create -q -f $f part.$f 64M
    qemu-io -f $f -c 'write -P 3 4k 4k' -c 'write -P 4 9m 512' -c 'write -P 5 20m 64k' \
        part.$f > /dev/null
    sync
    steps "$f blocks written in part" -p -f $f -O raw part.$f o.raw
    steps "$f blocks written in part, -S 0" -p -S 0 -f $f -O raw part.$f o.raw
done

# existing targets (check's third takes -n)
twins qemu-img create -q -f raw @o.raw 16M
steps "-n --target-is-zero" -p -n --target-is-zero -O raw src.raw o.raw
twins qemu-img create -q -f qcow2 -o cluster_size=4096 @o.qcow2 16M
steps "-n" -p -n -O qcow2 top.qcow2 o.qcow2
twins qemu-img create -q -f qcow2 @o.qcow2 16M
steps "-n -c" -p -n -c -O qcow2 src.raw o.qcow2
twins qemu-img create -q -f qcow2 @o.qcow2 1M
steps_each "-n, target too small: 0.00 and a newline" -p -n -O qcow2 src.raw o.qcow2
steps_each "missing source: 0.00 and a newline" -p -O raw nonexistent.raw o.raw
steps_each "-q silences -p" -q -p -f raw -O raw src.raw o.raw
done_testing
