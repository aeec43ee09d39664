#!/bin/bash
# compare across formats and through backing chains: every pair of images
# with the same content compares identical (exit 0) whatever their format,
# cluster size or chain; different ones report qemu-img's first mismatch.
. "$(dirname "$0")/lib.sh"
fixtures
cd "$FX"
same=(v2.qcow2 v3.qcow2 cs512.qcow2 cs4k.qcow2 rb1.qcow2 rb64.qcow2 el2.qcow2 lazy-clean.qcow2
      datafile.qcow2 datafile-raw.qcow2 prealloc-metadata.qcow2 holes.raw)
for a in "${same[@]}"; do
    for b in v3.qcow2 holes.raw; do
        oracle "compare $a $b" compare "$a" "$b"
    done
done
for pair in "chain-top.qcow2 chain-mid.qcow2" "chain-mid.qcow2 chain-base.raw" \
            "chain-top.qcow2 chain-base.raw" "chain2-top.qcow2 chain2-base.qcow2" \
            "noformat-top.qcow2 chain-base.raw" "short-top.qcow2 v3.qcow2" \
            "zlib.qcow2 zstd.qcow2" "zlib.qcow2 zlib-4k.qcow2" "snap.qcow2 v3.qcow2" \
            "zero.qcow2 v3.qcow2" "cs2M.qcow2 el2-2M.qcow2" "odd.qcow2 odd-2M.qcow2"; do
    oracle "compare $pair" compare $pair
done
# A chain against its flattening.
for top in chain-top.qcow2 chain2-top.qcow2 short-top.qcow2 noformat-top.qcow2; do
    qemu-img convert -O qcow2 "$top" "$T/$top.flat.qcow2"
    oracle "compare $top with its flattened copy" compare "$top" "$T/$top.flat.qcow2"
done
done_testing
