#!/bin/bash
# make-seeds-luks.sh — seeds for fuzz_luks: LUKS1 volumes with passphrase
# "fuzz" and the fewest PBKDF2 iterations (iter-time=1) made by qemu-img
# and kimg in several cipher setups, cut after key slot 0's material (the
# target reads zeros past the input), plus a few hostile variants.
# Usage: fuzz/make-seeds-luks.sh [KIMG]  (writes fuzz/corpus/fuzz_luks)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
kimg=${1:-$src/build/kimg}
out=$src/fuzz/corpus/fuzz_luks
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
printf fuzz > "$tmp/key"
n=0
for opts in "" "cipher-alg=aes-128,cipher-mode=ecb,ivgen-alg=plain,hash-alg=sha1" \
            "cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv" \
            "cipher-alg=aes-256,cipher-mode=ctr,hash-alg=sha512"; do
    n=$((n + 1))
    for tool in qemu-img "$kimg"; do
        t=$(basename "$tool")
        rm -f "$tmp/v"
        "$tool" create -q -f luks --object secret,id=s,file="$tmp/key" \
            -o key-secret=s,iter-time=1${opts:+,$opts} "$tmp/v" 64k
        # slot 0 ends at 4096 + key bytes * 4000, rounded to sectors
        kb=$(( $(od -An -tu1 -j108 -N4 "$tmp/v" | awk '{print $1*16777216+$2*65536+$3*256+$4}') ))
        head -c $(( 4096 + (kb * 4000 + 511) / 512 * 512 )) "$tmp/v" > "$out/seed-$t-$n"
    done
done
rm -f "$out/seed-$(basename "$kimg")-1"   # the default layout: qemu-img's seed has it
# hostile variants of the first: header only, overlapping slots, bad names
head -c 592 "$out/seed-qemu-img-1" > "$out/seed-header-only"
cp "$out/seed-header-only" "$out/seed-overlap"
printf '\x00\x00\x02\x00' | dd of="$out/seed-overlap" bs=1 seek=248 conv=notrunc status=none
cp "$out/seed-header-only" "$out/seed-essiv-nohash"
printf 'cbc-essiv\0\0\0\0' | dd of="$out/seed-essiv-nohash" bs=1 seek=40 conv=notrunc status=none
