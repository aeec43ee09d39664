#!/bin/bash
# make-seeds-vhdx.sh — regenerate fuzz/corpus/fuzz_vhdx/seed-*: VHDX images
# made by qemu-img and tests/images/make-vhdx.py, packed into fuzz_vhdx's
# sparse input format (flags byte, file size in 64 KiB units as le16, then
# records of le32 offset, le16 length, bytes: the file's non-zero 4 KiB
# pages).  Run from anywhere (make-seeds.sh calls it); writes only
# fuzz/corpus/fuzz_vhdx/seed-*.  Images up to 16 MiB (the target's cap).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$here/corpus/fuzz_vhdx
mk="python3 $here/../tests/images/make-vhdx.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
rm -f "$out"/seed-*
cd "$tmp"
MiB=$((1024 * 1024))

# pack IMAGE NAME [FLAGS]: the seed (FLAGS: the target's reseal bits)
pack() {
    python3 - "$1" "$out/seed-$2" "${3:-0}" <<'PY'
import struct, sys
d = open(sys.argv[1], 'rb').read()
size = (len(d) + 65535) // 65536
out = bytearray([int(sys.argv[3])]) + struct.pack('<H', min(size, 256))
p = 0
while p < len(d):
    if not any(d[p:p + 4096]):
        p += 4096
        continue
    q = p
    while q < len(d) and any(d[q:q + 4096]) and q - p < 60 * 1024:
        q += 4096
    chunk = d[p:q].rstrip(b'\0')
    out += struct.pack('<IH', p, len(chunk)) + chunk
    p = q
open(sys.argv[2], 'wb').write(out)
PY
}

qemu-img create -q -f vhdx a.vhdx 8M
qemu-io -f vhdx -c 'write -P 0x11 0 4k' -c 'write -P 0x22 3M 1k' a.vhdx > /dev/null
pack a.vhdx qemu-dynamic
qemu-img create -q -f vhdx -o subformat=fixed,block_size=1M a.vhdx 3M
pack a.vhdx qemu-fixed
qemu-img create -q -f vhdx -o block_size=1M a.vhdx 0
pack a.vhdx qemu-empty
D="--size $((4 * MiB)) --data 0:5000 --data 1100000:3000 --data 3000000:3000"
$mk a.vhdx $D; pack a.vhdx gen-dynamic
$mk a.vhdx $D --logical 4096 --type fixed; pack a.vhdx gen-4k-fixed
$mk a.vhdx $D --reverse --state 1=2 --state 2=3; pack a.vhdx gen-states
$mk a.vhdx $D --dirty-log; pack a.vhdx gen-dirty-log
$mk a.vhdx $D --dirty-log; pack a.vhdx gen-dirty-log-reseal 7
$mk a.vhdx $D --dirty-log --logical 4096; pack a.vhdx gen-dirty-log-4k
$mk a.vhdx $D --unknown-meta 0 --unknown-region 0; pack a.vhdx gen-unknown-optional
$mk a.vhdx $D --unknown-meta 1; pack a.vhdx gen-unknown-required
$mk a.vhdx --parent --size $MiB --data 0:512; pack a.vhdx gen-parent
for d in hdrs-equal-seq rt1-crc regions-overlap block-overlap block-in-meta \
         meta-overlap; do
    $mk a.vhdx $D --damage $d; pack a.vhdx "gen-$d"
done
for d in log-desc-seq log-tail-stale log-writes-header; do
    $mk a.vhdx $D --dirty-log --damage $d; pack a.vhdx "gen-$d"
done
ls -l "$out" | awk '{ s += $5 } END { print "fuzz_vhdx seeds: " s " bytes" }'
