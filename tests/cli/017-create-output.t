#!/bin/bash
# kimg create prints qemu-img's "Formatting 'FILE', fmt=... size=... ..."
# line on stdout, with the same options in the same order and spelling
# (sizes in bytes, as typed otherwise), and nothing with -q.
. "$(dirname "$0")/lib.sh"
mkdir q k
qemu-img create -q -f raw q/b.raw 1M; cp q/b.raw k/b.raw
cases=(
    "-f raw img 1M"
    "-f raw -o preallocation=full img 64k"
    "-f qcow2 img 1G"
    "-f qcow2 -o compat=0.10 img 1.5G"
    "-f qcow2 -o compat=v3,cluster_size=4k,lazy_refcounts=on,refcount_bits=8 img 1M"
    "-f qcow2 -o preallocation=metadata,compression_type=zstd img 1M"
    "-f qcow2 -o extended_l2=on img 512b"
    "-f qcow2 -b b.raw -F raw img"
    "-f qcow2 -u -b nosuch -F qcow2 img 3M"
    "-f qcow2 -o data_file=img.data,data_file_raw=on img 1M"
    "-f qcow2 -o cluster_size=64k,cluster_size=2M img 1M"
)
for c in "${cases[@]}"; do
    rm -f q/img q/img.data k/img k/img.data
    (cd q && qemu-img create $c > ../q.out 2> /dev/null)
    cd k; kimg create $c; cd ..
    is "$RC" 0 "create $c: exit 0"
    is_file "$T/out" q.out "create $c: output as qemu-img's"
done
rm -f k/img
cd k; kimg create -q -f qcow2 img 1M; cd ..
is "$(< "$T/out")" "" "create -q prints nothing"
done_testing
