#!/bin/bash
# map --start-offset / --max-length (sizes with suffixes, unaligned, past
# the end, zero length; invalid values exit 1), and map of images whose host
# file has holes inside allocated clusters (punched with fallocate, as a
# sparse copy or a thin-provisioning tool leaves them): qemu-img reports
# those ranges as "zero": true, "data": true; kimg must agree, JSON and
# human, and compare/info must be unaffected.
. "$(dirname "$0")/lib.sh"
fixtures
cd "$FX"
for r in "--start-offset=65536 --max-length=1M" "--start-offset=100000 --max-length=3000" \
         "--start-offset=1k" "--start-offset=5M" "--max-length=0" "--max-length=1" \
         "--start-offset=4194303" "--start-offset=2M --max-length=64k" "--max-length=100G"; do
    for f in v3.qcow2 chain-top.qcow2 el2.qcow2 holes.raw; do
        oracle "map --output=json $r $f" map --output=json $r "$f"
    done
    oracle "map $r chain-top.qcow2" map $r chain-top.qcow2
done
for bad in "--start-offset=-1" "--start-offset=1x" "--max-length=-5" "--max-length=KiB"; do
    oracle "map $bad" map $bad v3.qcow2
done
# Host holes inside allocated clusters.
cd "$T"
command -v fallocate > /dev/null || skip_all "fallocate not installed"
qemu-img create -q -f qcow2 h.qcow2 4M
qemu-io -f qcow2 -c "write -P 0x11 0 256k" -c "write -P 0x22 1M 128k" -c "write -P 0x33 4M-64k 64k" h.qcow2 > /dev/null
d0=$($Q2 host h.qcow2 0); d1=$($Q2 host h.qcow2 $((1024 * 1024)))
fallocate -p -o $((d0 + 4096)) -l 8192 h.qcow2 &&
fallocate -p -o $((d0 + 65536)) -l 65536 h.qcow2 &&
fallocate -p -o $((d1 + 32768)) -l 32768 h.qcow2 || skip_all "cannot punch holes here"
qemu-io -f qcow2 -c "write -P 0x44 8k 4k" h.qcow2 > /dev/null   # data again inside a hole
cp --sparse=always "$FX/v3.qcow2" sparse-copy.qcow2
cp --sparse=always "$FX/el2.qcow2" sparse-el2.qcow2
for f in h.qcow2 sparse-copy.qcow2 sparse-el2.qcow2; do
    oracle "map --output=json $f (host holes)" map --output=json "$f"
    oracle "map $f (host holes)" map "$f"
done
qemu-img convert -O raw h.qcow2 h.raw
kimg compare h.qcow2 h.raw; is "$RC" 0 "compare with host holes: identical"
done_testing
