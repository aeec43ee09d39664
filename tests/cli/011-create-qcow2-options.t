#!/bin/bash
# kimg create -f qcow2 -o ... for the option combinations qemu-img accepts:
# the image passes `qemu-img check`, `qemu-img info --output=json` shows
# exactly what qemu-img's own image with the same options shows (except
# actual-size: host allocation depends on the metadata layout, which need
# not be qemu's), `qemu-img map` agrees apart from host offsets, content
# compares equal, and the image stays clean after qemu-io writes to it.
# make check: a third of the combinations (lib.sh sampled); check-slow the
# rest; both run cluster_size=2M, lazy_refcounts=on and preallocation=falloc
# (the sample has no 2M-cluster, lazy or falloc case).
. "$(dirname "$0")/lib.sh"
combos=(
    ""
    compat=0.10 compat=1.1 compat=v2 compat=v3
    cluster_size=512 cluster_size=4k cluster_size=64k cluster_size=2M
    compat=0.10,cluster_size=512 compat=0.10,cluster_size=2M
    lazy_refcounts=on lazy_refcounts=off compat=0.10,lazy_refcounts=off
    refcount_bits=1 refcount_bits=2 refcount_bits=4 refcount_bits=8
    refcount_bits=16 refcount_bits=32 refcount_bits=64 compat=0.10,refcount_bits=16
    refcount_bits=1,cluster_size=512 refcount_bits=64,cluster_size=512
    preallocation=off preallocation=metadata preallocation=falloc preallocation=full
    preallocation=metadata,cluster_size=512 preallocation=metadata,cluster_size=2M
    preallocation=full,cluster_size=4k,refcount_bits=1 compat=0.10,preallocation=metadata
    compression_type=zlib compression_type=zstd compat=0.10,compression_type=zlib
    extended_l2=on extended_l2=off extended_l2=on,cluster_size=16k extended_l2=on,cluster_size=2M
    extended_l2=on,preallocation=metadata extended_l2=on,preallocation=falloc
    compat=1.1,cluster_size=4k,lazy_refcounts=on,refcount_bits=64,compression_type=zstd,preallocation=metadata
    cluster_size=64k,cluster_size=4k
)
for o in "${combos[@]}"; do
    sampled || case $o in cluster_size=2M | lazy_refcounts=on | preallocation=falloc) ;; *) continue ;; esac
    create_oracle "$o" 4M
done
done_testing
