#!/bin/bash
# kimg create -f qcow2 over the cross product of the main options (see
# create_oracle in lib.sh for what is compared with qemu-img's image):
#   compat 0.10/1.1 x cluster_size 512/64k/2M x preallocation off/metadata/falloc/full
#   (compat 1.1, 64k) refcount_bits 1/8/64 x lazy_refcounts x compression_type x extended_l2
#   sizes that are not a multiple of the cluster size.
# make check: a third of each matrix (lib.sh sampled; every option value is
# among them); check-slow the rest.
. "$(dirname "$0")/lib.sh"
for compat in 0.10 1.1; do
    for cs in 512 64k 2M; do
        for p in off metadata falloc full; do
            sampled || continue
            create_oracle "compat=$compat,cluster_size=$cs,preallocation=$p" 3M
        done
    done
done
for rb in 1 8 64; do
    for lazy in on off; do
        for ct in zlib zstd; do
            for el2 in on off; do
                sampled || continue
                create_oracle "refcount_bits=$rb,lazy_refcounts=$lazy,compression_type=$ct,extended_l2=$el2" 2M
            done
        done
    done
done
for size in 1536 100000 $((2 * 1024 * 1024 + 512)) 1G 1T; do
    for o in "" "cluster_size=2M,extended_l2=on"; do
        sampled || continue
        create_oracle "$o" "$size"
    done
done
done_testing
