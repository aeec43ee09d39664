#!/bin/bash
# O_DIRECT (-t none / -T none) goes through libaio batches (img/aio.c):
# raw and qcow2 in both directions, sources and targets, an image size
# that is not a multiple of 4 KiB and -S 512 runs (unaligned requests are
# finished synchronously through bounce buffers); outputs read as the
# source and check clean; io_submit is really used (when strace exists).
. "$(dirname "$0")/lib.sh"
size=$((24 * 1024 * 1024 + 512))
truncate -s $size src.raw
head -c $((5 * 1024 * 1024)) /dev/urandom | dd of=src.raw bs=4096 seek=256 conv=notrunc status=none
qemu-io -f raw -c 'write -P 0x3c 12M 3M' -c 'write -P 0x11 20M 512' -c 'write -P 0x12 24M 512' \
    src.raw > /dev/null
qemu-img convert -f raw -O qcow2 src.raw src.qcow2
for sfmt in raw qcow2; do
    for dfmt in raw qcow2; do
        for c in "-t none" "-T none" "-t none -T none" "-t none -S 512"; do
            name="$sfmt -> $dfmt $c"
            kimg convert $c -m 8 -f $sfmt -O $dfmt src.$sfmt out.$dfmt
            is "$RC" 0 "$name: exit 0" || diag "$(< "$T/err")"
            ok "$name: reads as the source" qemu_oracle_compare src.raw out.$dfmt
            [ $dfmt = qcow2 ] && { ok "$name: check clean" check_clean out.$dfmt; }
            rm -f out.$dfmt
        done
    done
done
# -n into an existing raw file with -t none: zeros where the source has none
head -c $size /dev/urandom > n.raw
kimg convert -n -t none -f raw -O raw src.raw n.raw
is "$RC" 0 "-n -t none into a raw file full of data"
ok "-n -t none: identical to the source" cmp -s n.raw src.raw
if command -v strace > /dev/null; then
    strace -f -qq -e trace=io_submit -o trace.txt "$KIMG" convert -t none -f raw -O raw src.raw s.raw
    ok "-t none: data written with io_submit" grep -q 'io_submit' trace.txt
    ok "-t none: several requests in one submission" grep -Eq 'io_submit\([^,]+, [2-9]' trace.txt
    strace -f -qq -e trace=io_submit -o trace2.txt "$KIMG" convert -T none -f raw -O raw src.raw s2.raw
    ok "-T none: data read with io_submit" grep -q 'io_submit' trace2.txt
    strace -f -qq -e trace=io_submit -o trace3.txt "$KIMG" convert -f raw -O raw src.raw s3.raw
    ok "buffered files: no libaio" bash -c '! grep -q io_submit trace3.txt'
else
    skip "io_submit checks" "strace not installed"
fi
done_testing
