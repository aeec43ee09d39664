#!/bin/bash
# Writing through nbdkit-kimg-plugin (readonly=false): qemu-io's writes,
# FUA writes, zero writes with and without unmap, discards and flushes
# into raw and qcow2 images (v3 over a backing file, v2, extended L2)
# give what the same qemu-io commands give on a twin written by qemu
# itself (qemu-img compare, qemu-img check clean); zeros with unmap and
# trims leave holes (zero clusters, punched raw ranges), not written
# zeros; nbdcopy uploads a file into raw and qcow2 exports with many
# requests in flight, and no write is lost when nbdkit exits after an
# unflushed upload.  Writable only when asked and only where kimg
# writes in place: a VHD, a probed raw image and nbdkit -r stay read-only.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/nbdkit.sh"
MiB=$((1024 * 1024))

ops=(-c 'write -P 0x41 100k 300k' -c 'write -f -P 0x42 3M 64k' -c 'write -z 1M 512k'
     -c 'write -z -u 4M 2M' -c 'discard 8M 1M' -c 'write -P 0x43 0 4k' -c 'flush'
     -c 'write -P 0x44 31M 1M' -c 'write -z -u 12M 1k')
qio_ops() { printf '%q ' "${ops[@]}"; }

# twin NAME FILE FMT: FILE written through the export, FILE.twin by qemu-io
twin() {
    local name=$1 f=$2 fmt=$3
    cp "$f" "$f.twin"
    qemu-io -f "$fmt" "${ops[@]}" "$f.twin" > /dev/null
    nbd_run file="$f" format="$fmt" readonly=false -- "qemu-io -f raw $(qio_ops) \"\$uri\""
    is "$RC" 0 "$name: qemu-io's writes through the export"
    [ "$RC" = 0 ] || diag "$(< "$T/err")"
    ok "$name: the image reads as qemu-io's twin" qemu-img compare -q -f "$fmt" -F "$fmt" "$f" "$f.twin"
    if [ "$fmt" = qcow2 ]; then ok "$name: qemu-img check is clean" check_clean "$f"; fi
}

qemu-img create -q -f qcow2 base.qcow2 32M
qemu-io -f qcow2 -c 'write -P 0x11 0 16M' base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
twin "qcow2 over a backing file" top.qcow2 qcow2
qemu-img create -q -f qcow2 plain.qcow2 32M
twin "qcow2" plain.qcow2 qcow2
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 32M
twin "qcow2 v2" v2.qcow2 qcow2
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=128k el2.qcow2 32M
twin "qcow2 extended L2" el2.qcow2 qcow2
truncate -s 32M a.raw
qemu-io -f raw -c 'write -P 0x11 0 16M' a.raw > /dev/null
twin "raw" a.raw raw

# zeros with unmap and trims are holes, not written zeros (the plugin's
# zero and trim, not nbdkit writing zero buffers)
map_range() {   # map_range FMT FILE START: "zero data" of the extent at START
    qemu-img map --output=json -f "$1" "$2" |
        python3 -c 'import json,sys; s=int(sys.argv[1])
for e in json.load(sys.stdin):
    if e["start"] <= s < e["start"] + e["length"]: print(e["zero"], e["data"])' "$3"
}
is "$(map_range qcow2 plain.qcow2 $((4 * MiB)))" "True False" "qcow2: write -z -u left a zero range"
is "$(map_range qcow2 plain.qcow2 $((1 * MiB)))" "True False" "qcow2: write -z left a zero range"
is "$(map_range raw a.raw $((8 * MiB + 4096)))" "True False" "raw: a discard punched a hole"
is "$(map_range raw a.raw $((5 * MiB)))" "True False" "raw: write -z -u punched a hole"

# nbdcopy uploads (many requests in flight, zero requests for holes)
truncate -s 40M src.raw
qemu-io -f raw -c 'write -P 0x21 0 5M' -c 'write -P 0x22 7777777 3M' -c 'write -P 0 20M 1M' \
    -c 'write -P 0x23 39M 1M' src.raw > /dev/null
qemu-img create -q -f qcow2 up.qcow2 40M
nbd_run file=up.qcow2 readonly=false -- 'nbdcopy --requests=16 src.raw "$uri"'
is "$RC" 0 "nbdcopy into a qcow2 export"
ok "  it reads as the source" qemu-img compare -q -f raw -F qcow2 src.raw up.qcow2
ok "  qemu-img check is clean" check_clean up.qcow2
# nbdcopy sends no flush; nbdkit --run may unload the plugin without
# closing the connection (its client gone): the writes are kept anyway
head -c 8M src.raw > s8.raw
lost=0
for i in $(seq 10); do
    rm -f u8.qcow2; qemu-img create -q -f qcow2 u8.qcow2 8M
    nbd_run file=u8.qcow2 readonly=false -- 'nbdcopy s8.raw "$uri"'
    qemu-img compare -q -f raw -F qcow2 s8.raw u8.qcow2 || lost=$((lost + 1))
done
is "$lost" 0 "10 unflushed uploads, each ended by nbdkit --run: no write lost"
truncate -s 40M up.raw
qemu-io -f raw -c "write -P 0x77 0 40M" up.raw > /dev/null
nbd_run file=up.raw format=raw readonly=false -- 'nbdcopy src.raw "$uri"'
is "$RC" 0 "nbdcopy into a raw export"
ok "  it reads as the source" cmp -s src.raw up.raw

# writable only when asked, and where kimg writes in place
expect_ro() {   # expect_ro NAME FILE ARGS...
    local name=$1 f=$2; shift 2
    local sum; sum=$(sha "$f")
    nbd_run file="$f" "$@" -- 'nbdinfo --json "$uri"'
    like "$(< "$T/out")" '"is_read_only": true' "$name: served read-only"
    nbd_run file="$f" "$@" -- 'qemu-io -f raw -c "write -P 1 0 4k" "$uri"'
    isnt "$RC" 0 "$name: a write through it fails"
    is "$(sha "$f")" "$sum" "$name: the image is unchanged"
}
# a streamOptimized VMDK that holds data: kimg writes its grains once, so
# it is served read-only
qemu-img create -q -f qcow2 s.qcow2 8M
qemu-io -f qcow2 -c "write -P 7 0 1M" s.qcow2 > /dev/null
qemu-img convert -O vmdk -o subformat=streamOptimized s.qcow2 d.vmdk
expect_ro "stream VMDK holding data (kimg writes it once), readonly=false" d.vmdk readonly=false
expect_ro "probed raw, readonly=false" a.raw readonly=false
expect_ro "qcow2 without readonly=false" plain.qcow2
expect_ro "qcow2, readonly=false under nbdkit -r" plain.qcow2 readonly=false -r
nbd_run file=a.raw format=raw readonly=false -- 'nbdinfo --json "$uri"'
like "$(< "$T/out")" '"is_read_only": false' "raw with format=raw, readonly=false: writable"
like "$(< "$T/out")" '"can_zero": true' "  it takes zero requests"
like "$(< "$T/out")" '"can_trim": true' "  and trims"
done_testing
