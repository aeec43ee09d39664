#!/bin/bash
# NBD names as image names, read-only: info (human and JSON, byte for byte
# as qemu-img: the name qemu shows, raw with no dirty-flag, a qcow2 file
# served as plain bytes probed as qcow2, "disk size: unavailable") and map
# (base:allocation block status) over qemu-nbd and nbdkit exports, in the
# URI forms and qemu's legacy "nbd:unix:" forms.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/nbd.sh"

qemu-img create -q -f qcow2 q.qcow2 64M
qemu-io -c 'write -P 0x11 0 1M' -c 'write -P 0x22 10M 64k' -c 'write -z 20M 1M' q.qcow2 > /dev/null
qemu-img convert -O raw q.qcow2 r.raw
qnbd raw.sock raw r.raw -x exp
qnbd q.sock raw q.qcow2
kitnbd kit.sock memory 8M

names=(
    "$(nuri raw.sock exp)" "nbd:unix:$T/raw.sock:exportname=exp"
    "$(nuri q.sock)" "nbd+unix://?socket=$T/q.sock" "nbd:unix:$T/q.sock"
    "$(nuri kit.sock)"
)
for n in "${names[@]}"; do
    for out in human json; do
        oracle "info --output=$out $n" info --output=$out "$n"
    done
    oracle "map --output=json $n" map --output=json "$n"
    oracle "map $n" map "$n"
done
oracle "info -f raw on the qcow2 export" info --output=json -f raw "$(nuri q.sock)"
oracle "info -f qcow2 on the raw export" info -f qcow2 "$(nuri raw.sock exp)"
kimg info -f qcow2 "$(nuri raw.sock exp)"
err_line "info -f qcow2 on the raw export"

# the same through nbdkit's filters: no block status (all data), a
# minimum block size
kitnbd noext.sock --filter=noextents file r.raw
oracle "map, no block status (noextents)" map --output=json "$(nuri noext.sock)"
kitnbd bs.sock --filter=blocksize file r.raw minblock=4096
oracle "info through the blocksize filter" info --output=json "$(nuri bs.sock)"
oracle "map through the blocksize filter" map --output=json "$(nuri bs.sock)"

# a local file whose name looks like an NBD name: ./NAME
cp r.raw 'nbd:unix:x'
oracle "./nbd:unix:x is a local file" info --output=json ./nbd:unix:x
kimg info file:nbd:unix:x
err_line "file:nbd:... is refused (ambiguous)"
done_testing
