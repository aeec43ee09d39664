#!/bin/bash
# A 1 TiB sparse image (writes at the start, at 512 GiB and in the last
# sector): info, map (JSON, human), check give qemu-img's output, and
# compare with its 1 TiB sparse flattening finishes fast (block status,
# not a full read; KIMG_TIMEOUT 60 s) and says identical, or reports a
# one-byte difference in the last sector at qemu-img's offset.
. "$(dirname "$0")/lib.sh"
T1=$((1024 * 1024 * 1024 * 1024))
qemu-img create -q -f qcow2 big.qcow2 1T
qemu-io -f qcow2 -c "write -P 0xb1 0 4k" -c "write -P 0xb2 512G 64k" \
    -c "write -P 0xb3 $((T1 - 512)) 512" big.qcow2 > /dev/null
oracle "info --output=json" info --output=json big.qcow2
oracle "info" info big.qcow2
oracle "map --output=json" map --output=json big.qcow2
oracle "map" map big.qcow2
oracle "check --output=json" check --output=json big.qcow2
qemu-img convert -O raw big.qcow2 big.raw        # sparse: qemu-img skips zeros
oracle "compare with the flat 1 TiB raw" compare big.qcow2 big.raw
poke big.raw $((T1 - 1)) 00
oracle "compare, last byte changed" compare big.qcow2 big.raw
oracle "compare -s" compare -s big.qcow2 big.raw
# growing it again: a virtual size near qcow2's limit with 2M clusters
qemu-img create -q -f qcow2 -o cluster_size=2M huge.qcow2 64T
qemu-io -f qcow2 -c "write -P 0xb4 $((64 * T1 - 4096)) 4k" huge.qcow2 > /dev/null
oracle "64 TiB with 2M clusters: info --output=json" info --output=json huge.qcow2
oracle "64 TiB with 2M clusters: map --output=json" map --output=json huge.qcow2
oracle "64 TiB with 2M clusters: check" check huge.qcow2
done_testing
