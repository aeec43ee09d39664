#!/bin/bash
# convert -c -o compression_level=N (a kimg addition): zlib 1-9, zstd
# 1-22; outputs read identically in qemu-img and check clean; a higher
# level is not larger; nothing about the level is stored (the header is the
# default's); the default is qemu-img's level (same size as its output);
# refusals: out of range, not a number, without -c.
. "$(dirname "$0")/lib.sh"
qemu-img create -q -f raw src.raw 6M
# compressible text-like data: levels make a difference on it
$PY -c '
import random, sys
random.seed(7)
words = [bytes(random.choice(b"abcdefghij klmnop") for _ in range(random.randint(2, 9))) for _ in range(400)]
out = b" ".join(random.choice(words) for _ in range(700000))[:4 << 20]
sys.stdout.buffer.write(out)' > text.bin
dd if=text.bin of=src.raw conv=notrunc status=none
hdr() { head -c 512 "$1" | sha256sum | cut -d' ' -f1; }
for ct in zlib zstd; do
    [ $ct = zlib ] && levels="1 9" || levels="1 19"
    kimg convert -c -o compression_type=$ct -f raw -O qcow2 src.raw def.qcow2
    is "$RC" 0 "$ct default level"
    qemu-img convert -c -o compression_type=$ct -f raw -O qcow2 src.raw q.qcow2
    # (qemu-img pads its file to a whole sector)
    is "$(( ($(stat -c %s def.qcow2) + 511) / 512 ))" "$(( ($(stat -c %s q.qcow2) + 511) / 512 ))" \
       "$ct: the default level is qemu-img's (same size in sectors)"
    sizes=()
    for l in $levels; do
        kimg convert -c -o compression_type=$ct,compression_level=$l -f raw -O qcow2 src.raw l$l.qcow2
        is "$RC" 0 "$ct level $l: exit 0" || diag "$(< "$T/err")"
        ok "$ct level $l: reads identically (qemu-img)" qemu_oracle_compare src.raw l$l.qcow2
        ok "$ct level $l: qemu-img check clean" check_clean l$l.qcow2
        is "$(hdr l$l.qcow2)" "$(hdr def.qcow2)" "$ct level $l: nothing stored (header as the default's)"
        sizes+=("$(stat -c %s l$l.qcow2)")
    done
    ok "$ct: the higher level is not larger (${sizes[1]} <= ${sizes[0]})" test "${sizes[1]}" -le "${sizes[0]}"
    ok "$ct: level 1 differs from the default" bash -c "! cmp -s l1.qcow2 def.qcow2"
    rm -f l*.qcow2 def.qcow2 q.qcow2
done
kimg convert -c -o compression_level=0 -f raw -O qcow2 src.raw x.qcow2;  err_line "zlib level 0 refused"
kimg convert -c -o compression_level=10 -f raw -O qcow2 src.raw x.qcow2; err_line "zlib level 10 refused"
kimg convert -c -o compression_type=zstd,compression_level=23 -f raw -O qcow2 src.raw x.qcow2
err_line "zstd level 23 refused"
kimg convert -c -o compression_level=fast -f raw -O qcow2 src.raw x.qcow2; err_line "not a number"
kimg convert -o compression_level=5 -f raw -O qcow2 src.raw x.qcow2;    err_line "without -c"
ok "no output left by the refusals" test ! -e x.qcow2
is "$(ls -A | grep -c kimg-)" 0 "no temporary file left"
# -n into an existing zstd image: the level is checked against its type
qemu-img create -q -f qcow2 -o compression_type=zstd n.qcow2 6M
kimg convert -n -c -o compression_level=15 -f raw -O qcow2 src.raw n.qcow2
is "$RC" 0 "-n: zstd level 15 into an existing zstd image" || diag "$(< "$T/err")"
ok "-n: reads identically" qemu_oracle_compare src.raw n.qcow2
done_testing
