#!/bin/bash
# compare reads and compares ranges on every core, several at once, yet
# reports what a walk from the start reports: the first of many
# differences, a difference before a later read error (exit 1, not 4), a
# read error before a later difference (exit 4), each as qemu-img does and
# the same on every run, and a difference before a later strict-mode
# allocation mismatch.
. "$(dirname "$0")/lib.sh"
MiB=$((1024 * 1024))

# 64 MiB of data (compressible: each 4 KiB block names its offset);
# copies that differ in one byte every 3 MiB from FIRST on
$PY -c 'import sys; sys.stdout.buffer.write(b"".join(b"%015d\n" % i * 256 for i in range(16384)))' > a.raw
differ() {
    cp a.raw "$1"
    for ((o = $2; o < 64 * MiB; o += 3 * MiB)); do
        b=$(od -An -tu1 -j "$o" -N1 "$1" | tr -d ' ')
        poke "$1" "$o" "$(printf %02x $(( (b + 1) % 256 )))"
    done
}
differ many.raw $((5 * MiB + 4321))
differ late.raw $((61 * MiB + 99))
for i in 1 2 3 4 5 6; do
    oracle "many differences, run $i: the first is reported" compare -f raw -F raw a.raw many.raw
done
oracle "a difference in the last range" compare -f raw -F raw a.raw late.raw

# compressed: the difference in an early cluster, garbage in a late one
qemu-img convert -c -f raw -O qcow2 a.raw z.qcow2
cp z.qcow2 zbad.qcow2
last=$($Q2 host zbad.qcow2 $((60 * MiB)))
poke zbad.qcow2 "$last" 676172626167652067617262616765
oracle "garbage at 60 MiB, same before it: read error (4)" compare -f qcow2 -F raw zbad.qcow2 a.raw
err_line "read error"
oracle "a difference at 5 MiB comes before garbage at 60 MiB (1)" \
    compare -f qcow2 -F raw zbad.qcow2 many.raw
is "$(< err)" "" "... and no read error is reported"
cp z.qcow2 zbad2.qcow2
poke zbad2.qcow2 "$($Q2 host zbad2.qcow2 $((2 * MiB)))" 676172626167652067617262616765
oracle "garbage at 2 MiB comes before a difference at 61 MiB (4)" \
    compare -f qcow2 -F raw zbad2.qcow2 late.raw

# strict mode: a difference in data before an allocation mismatch
cp many.raw holed.raw
fallocate -p -o $((40 * MiB)) -l $((4 * MiB)) holed.raw
qemu-img convert -f raw -O qcow2 holed.raw holed.qcow2
qemu-img convert -S 0 -f raw -O qcow2 a.raw a.qcow2
# (qemu-img 7.2 says "Offset 0 block status mismatch" here: it compares
# whole status words, which differ in BDRV_BLOCK_EOF when one image's
# first extent reaches its end and the other's does not; kimg now does
# the same, tests/cli/045)
oracle "-s: holed against full, status words as qemu-img's" compare -s -f qcow2 -F qcow2 holed.qcow2 a.qcow2
# the order itself: the same holes on both sides (status words equal up
# to the hole), a difference at 5 MiB before the allocation mismatch
# (the hole in one image written with zeros in the other) at 40 MiB
cp holed.raw holed2.raw
printf 'X' | dd of=holed2.raw bs=1 seek=$((5 * MiB + 4096)) conv=notrunc 2> /dev/null
qemu-img convert -f raw -O qcow2 holed2.raw holed2.qcow2
qemu-io -f qcow2 -c "write -P 0 $((40 * MiB)) 64k" holed2.qcow2 > /dev/null
oracle "-s: a difference at 5 MiB before an allocation mismatch at 40 MiB" \
    compare -s -f qcow2 -F qcow2 holed.qcow2 holed2.qcow2
is "$RC" 1 "-s: a difference at 5 MiB before an allocation mismatch at 40 MiB: exit 1"
is "$(< "$T/out")" "Content mismatch at offset $((5 * MiB + 4096))!" "... the difference is reported"
done_testing
