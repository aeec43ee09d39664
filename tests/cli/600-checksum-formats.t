#!/bin/bash
# checksum: the digest depends only on the guest content.  One content
# (data, holes, zeros written as data, a zeroed range, a size that is not
# a multiple of the 64 KiB block) as raw, qcow2 (several cluster sizes,
# extended L2), zlib- and zstd-compressed qcow2 and an overlay chain whose
# layers each hold part of it, all made by qemu-img: one digest, for every
# thread count; qemu-img compare confirms the content is the same.
. "$(dirname "$0")/lib.sh"
size=$((6 * 1024 * 1024 + 1536))
truncate -s $size src.raw
qemu-io -f raw -c 'write -P 0x11 0 100k' -c 'write -P 0x22 1000k 200k' \
    -c 'write -P 0 2M 256k' -c 'write -P 0x33 3000k 4k' \
    -c "write -P 0x44 $((size - 1536)) 1536" src.raw > /dev/null
qemu-img convert -f raw -O qcow2 src.raw plain.qcow2
qemu-img convert -f raw -O qcow2 -o cluster_size=4k src.raw cs4k.qcow2
qemu-img convert -f raw -O qcow2 -o cluster_size=2M src.raw cs2M.qcow2
qemu-img convert -f raw -O qcow2 -o extended_l2=on src.raw el2.qcow2
qemu-img convert -f raw -O qcow2 -c -o compression_type=zlib src.raw zlib.qcow2
qemu-img convert -f raw -O qcow2 -c -o compression_type=zstd src.raw zstd.qcow2
qemu-img convert -f raw -O qcow2 -S 0 src.raw full.qcow2
cp --sparse=never src.raw dense.raw
# a chain: the base differs from src in two ranges, the overlay puts them back
cp src.raw base.raw
qemu-io -f raw -c 'write -P 0x77 1000k 64k' -c 'write -P 0x66 4M 300k' base.raw > /dev/null
qemu-img convert -f raw -O qcow2 base.raw base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
qemu-io -f qcow2 -c 'write -P 0x22 1000k 64k' mid.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
qemu-io -f qcow2 -c 'write -z 4M 300k' top.qcow2 > /dev/null

images="dense.raw plain.qcow2 cs4k.qcow2 cs2M.qcow2 el2.qcow2 zlib.qcow2 zstd.qcow2 full.qcow2 top.qcow2"
for i in $images; do
    ok "$i: same content as src.raw (qemu-img compare)" qemu_oracle_compare src.raw "$i"
done
isnt "$(sha base.qcow2)" "$(sha top.qcow2)" "the chain's layers differ"

kimg checksum -f raw src.raw
is "$RC" 0 "checksum src.raw: exit 0"
want=$(cut -d' ' -f1 "$T/out")
like "$want" '^[0-9a-f]{64}$' "a sha256-sized hex digest"
is "$(< "$T/out")" "$want  src.raw" "sha256sum's line shape"
for i in $images; do
    for t in 1 2 5; do
        kimg checksum --threads $t "$i"
        is "$(< "$T/out")" "$want  $i" "$i, $t threads: the same digest"
    done
done
kimg checksum -f qcow2 base.qcow2
isnt "$(cut -d' ' -f1 "$T/out")" "$want" "the base alone: another digest"
kimg checksum -f qcow2 mid.qcow2
isnt "$(cut -d' ' -f1 "$T/out")" "$want" "base + mid: another digest"

# one changed byte changes the digest; a new block of zeros does not
cp plain.qcow2 changed.qcow2
qemu-io -f qcow2 -c 'write -P 0x55 5M 1' changed.qcow2 > /dev/null
kimg checksum changed.qcow2
isnt "$(cut -d' ' -f1 "$T/out")" "$want" "one byte changed: another digest"
cp plain.qcow2 zeroed.qcow2
qemu-io -f qcow2 -c 'write -P 0 5M 128k' zeroed.qcow2 > /dev/null
kimg checksum zeroed.qcow2
is "$(cut -d' ' -f1 "$T/out")" "$want" "zeros written over zeros: the same digest"

# other block sizes and digests: still format-independent
for opt in "--block-size 4k" "--block-size 1M" "-a sha512" "-a blake2b512"; do
    kimg checksum $opt -f raw src.raw; a=$(cut -d' ' -f1 "$T/out")
    kimg checksum $opt --threads 3 top.qcow2; b=$(cut -d' ' -f1 "$T/out")
    kimg checksum $opt zstd.qcow2; c=$(cut -d' ' -f1 "$T/out")
    ok "$opt: raw, chain and zstd agree" test -n "$a" -a "$a" = "$b" -a "$a" = "$c"
    isnt "$a" "$want" "$opt: not the default digest"
done
done_testing
