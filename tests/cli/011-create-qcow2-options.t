#!/bin/bash
# kimg create -f qcow2 -o ... for the option combinations qemu-img accepts:
# the image passes `qemu-img check`, `qemu-img info --output=json` shows
# exactly what qemu-img's own image with the same options shows (except
# actual-size: host allocation depends on the metadata layout, which need
# not be qemu's), `qemu-img map` agrees apart from host offsets, content
# compares equal, and the image stays clean after qemu-io writes to it.
. "$(dirname "$0")/lib.sh"
mkdir q k
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
size=4M
for o in "${combos[@]}"; do
    opt=(); [ -n "$o" ] && opt=(-o "$o")
    name="create -o '$o'"
    rm -f q/img.qcow2 k/img.qcow2
    (cd q && qemu-img create -q -f qcow2 "${opt[@]}" img.qcow2 $size) ||
        { fail "$name: qemu-img itself refused"; continue; }
    cd k; kimg create -q -f qcow2 "${opt[@]}" img.qcow2 $size; cd ..
    if [ "$RC" -ne 0 ]; then fail "$name: exit 0" "exit $RC: $(head -2 "$T/err")"; continue; fi
    pass "$name: exit 0"
    ok "$name: qemu-img check clean" check_clean k/img.qcow2
    (cd q && qemu-img info --output=json img.qcow2 > ../qi.json)
    (cd k && qemu-img info --output=json img.qcow2 > ../ki.json)
    qemu-img map --output=json q/img.qcow2 > qm.json; qemu-img map --output=json k/img.qcow2 > km.json
    json_norm_files actual-size,offset qi.json ki.json qm.json km.json
    is_file ki.json.norm qi.json.norm "$name: qemu-img info as for qemu-img's image"
    is_file km.json.norm qm.json.norm "$name: qemu-img map as for qemu-img's image (offsets aside)"
    ok "$name: content equals qemu-img's image" qemu_oracle_compare k/img.qcow2 q/img.qcow2
    qemu-io -f qcow2 -c "write -P 0x5a 0 64k" -c "write -P 0xa5 3M 1k" -c "write -z 1M 128k" \
        k/img.qcow2 > /dev/null 2>&1
    ok "$name: clean after qemu-io writes" check_clean k/img.qcow2
done
done_testing
