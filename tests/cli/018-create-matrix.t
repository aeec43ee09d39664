#!/bin/bash
# kimg create -f qcow2 over the cross product of the main options (see
# create_oracle in lib.sh for what is compared with qemu-img's image):
#   compat 0.10/1.1 x cluster_size 512/64k/2M x preallocation off/metadata/falloc/full
#   (compat 1.1, 64k) refcount_bits 1/8/64 x lazy_refcounts x compression_type x extended_l2
#   sizes that are not a multiple of the cluster size.
# make check: a fifth of each matrix (lib.sh sampled 5, every option value
# among them: a stride of 5 walks each matrix's inner options, where 3 or
# 4 would keep to some values); check-slow the rest.
. "$(dirname "$0")/lib.sh"
# (cluster sizes ordered so that check's fifth takes full preallocation
# with 64k clusters: with 512-byte or 2M ones a case costs 1 s of CPU)
for compat in 0.10 1.1; do
    for cs in 64k 2M 512; do
        for p in off metadata falloc full; do
            sampled 5 || continue
            create_oracle "compat=$compat,cluster_size=$cs,preallocation=$p" 3M
        done
    done
done
for rb in 1 8 64; do
    for lazy in on off; do
        for ct in zlib zstd; do
            for el2 in on off; do
                sampled 5 || continue
                create_oracle "refcount_bits=$rb,lazy_refcounts=$lazy,compression_type=$ct,extended_l2=$el2" 2M
            done
        done
    done
done
# (ordered so that check's fifth takes 1536 and 1T with 2M clusters)
for size in 1G 1536 100000 1T $((2 * 1024 * 1024 + 512)); do
    for o in "" "cluster_size=2M,extended_l2=on"; do
        sampled 5 || continue
        create_oracle "$o" "$size"
    done
done
done_testing
