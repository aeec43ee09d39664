#!/bin/bash
# compare's error exit codes as qemu-img's: 2 when an image cannot be
# opened (missing file, wrong -f/-F, unknown format), 3 when allocation
# cannot be determined (an unaligned L2 entry), 4 when reading fails (a
# compressed cluster holding garbage); each with one "kimg: " line on
# stderr and nothing on stdout; -q keeps the exit codes.  Wrong usage
# (one or three file names) exits 1.
. "$(dirname "$0")/lib.sh"
fixtures
cp "$FX/v3.qcow2" v3.qcow2
qemu-img convert -O raw v3.qcow2 v3.raw
# 3: unaligned data cluster offset in an L2 entry
cp v3.qcow2 unaligned.qcow2
$Q2 set-l2 unaligned.qcow2 0 $((0x8000000000000000 | ($($Q2 host v3.qcow2 0) + 512)))
# 4: garbage in a compressed cluster
cp "$FX/zlib.qcow2" garbage.qcow2
qemu-img convert -O raw garbage.qcow2 zlib.raw
poke garbage.qcow2 "$($Q2 host garbage.qcow2 0)" 676172626167652067617262616765
for args in "v3.qcow2 nosuch.raw" "nosuch.qcow2 v3.raw" "-f qcow2 v3.raw v3.raw" \
            "-F qcow2 v3.qcow2 v3.raw" "-f bogus v3.raw v3.raw" "unaligned.qcow2 v3.raw" \
            "garbage.qcow2 zlib.raw" "zlib.raw garbage.qcow2" "-q unaligned.qcow2 v3.raw" \
            "-q garbage.qcow2 zlib.raw" "-q v3.qcow2 nosuch.raw"; do
    before=$(sha unaligned.qcow2)
    oracle "compare $args" compare $args
    case $RC in 2|3|4) err_line "compare $args" ;; esac
    is "$(sha unaligned.qcow2)" "$before" "compare $args: images unchanged (read-only)"
done
kimg compare v3.qcow2;                 is "$RC" 1 "one file name: exit 1"
kimg compare v3.qcow2 v3.raw v3.raw;   is "$RC" 1 "three file names: exit 1"
done_testing
