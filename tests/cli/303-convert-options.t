#!/bin/bash
# convert options with qemu-img's meaning: -n into an existing image (with
# and without --target-is-zero), several sources concatenated, -B (only
# what the source's top layer holds), -p's exact format, and the refusals
# qemu-img makes (bad -S, bad -m, --target-is-zero without -n, -c to raw).
. "$(dirname "$0")/lib.sh"
qemu-img create -q -f raw a.raw 1M
qemu-io -f raw -c 'write -P 0xa1 0 64k' -c 'write -P 0xa2 1020k 4k' a.raw > /dev/null
qemu-img create -q -f raw b.raw 2M
qemu-io -f raw -c 'write -P 0xb1 512k 8k' b.raw > /dev/null

# several sources are concatenated
kimg convert -f raw -O qcow2 a.raw b.raw cat.qcow2
is "$RC" 0 "two sources"
qemu-img convert -f raw -O raw a.raw b.raw qcat.raw
ok "concatenation as qemu-img's" qemu_oracle_compare qcat.raw cat.qcow2

# -n: the target exists and keeps its size; what must read as zero is zeroed
qemu-img create -q -f qcow2 n.qcow2 3M
qemu-io -c 'write -P 0xff 0 3M' n.qcow2 > /dev/null
kimg convert -n -f raw -O qcow2 a.raw b.raw n.qcow2
is "$RC" 0 "-n into an existing qcow2"
ok "-n output reads as the sources (old data zeroed)" qemu_oracle_compare qcat.raw n.qcow2
ok "-n output passes qemu-img check" check_clean n.qcow2
qemu-img create -q -f qcow2 z.qcow2 3M
kimg convert -n --target-is-zero -f raw -O qcow2 a.raw b.raw z.qcow2
is "$RC" 0 "-n --target-is-zero"
ok "--target-is-zero output identical" qemu_oracle_compare qcat.raw z.qcow2

# -B: only the overlay's own clusters are copied; the backing supplies the rest
qemu-img create -q -f qcow2 -b a.raw -F raw ov.qcow2
qemu-io -c 'write -P 0xc1 128k 64k' ov.qcow2 > /dev/null
kimg convert -O qcow2 -B a.raw -F raw ov.qcow2 newov.qcow2
is "$RC" 0 "-B"
ok "-B output reads as the source" qemu_oracle_compare ov.qcow2 newov.qcow2
is "$(qemu-img info --output=json newov.qcow2 | $PY -c 'import json,sys; print(json.load(sys.stdin)["backing-filename"])')" \
   "a.raw" "-B output is backed by the given file"
kimg convert -O qcow2 ov.qcow2 flat.qcow2
alloc_b=$(qemu-img map --output=json newov.qcow2 | $PY -c 'import json,sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["data"] and e["depth"] == 0))')
alloc_f=$(qemu-img map --output=json flat.qcow2 | $PY -c 'import json,sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))')
ok "-B output holds less data than a full copy ($alloc_b < $alloc_f)" test "$alloc_b" -lt "$alloc_f"

# -p: qemu-img's exact progress format on stdout
kimg convert -p -f raw -O raw a.raw p.raw
like "$(tr '\r' '\n' < "$T/out" | head -1)" '^    \(0\.00/100%\)$' "-p starts at 0.00"
like "$(tr '\r' '\n' < "$T/out" | grep -v '^$' | tail -1)" '^    \(100\.00/100%\)$' "-p ends at 100.00"
like "$(tail -c 1 "$T/out" | od -An -c | tr -d ' ')" '\\n' "-p ends with a newline"
kimg convert -q -p -f raw -O raw a.raw q.raw
is "$(wc -c < "$T/out")" 0 "-q silences -p"

# -t none / -T none: O_DIRECT; qcow2 metadata updates are small unaligned
# writes through bounce buffers and must not change the file's length
for fmt in qcow2 raw; do
    kimg convert -t none -T none -f raw -O $fmt a.raw direct.$fmt
    is "$RC" 0 "-t none -T none -> $fmt" || diag "$(< "$T/err")"
    ok "-t none -> $fmt identical" qemu_oracle_compare a.raw direct.$fmt
done
ok "-t none qcow2 output passes qemu-img check" check_clean direct.qcow2
kimg convert -t none -c -f raw -O qcow2 a.raw directc.qcow2
ok "-t none -c output passes qemu-img check" check_clean directc.qcow2
ok "-t none -c output identical" qemu_oracle_compare a.raw directc.qcow2

# -C: copy offloading (copy_file_range) into a raw target, or a clean refusal
kimg convert -C -f raw -O raw a.raw off1.raw
is "$RC" 0 "-C raw -> raw"
ok "-C raw -> raw identical" qemu_oracle_compare a.raw off1.raw
qemu-img convert -f raw -O qcow2 a.raw plainq.qcow2
kimg convert -C -f qcow2 -O raw plainq.qcow2 off2.raw
is "$RC" 0 "-C qcow2 -> raw"
ok "-C qcow2 -> raw identical" qemu_oracle_compare a.raw off2.raw
qemu-img convert -c -f raw -O qcow2 a.raw compq.qcow2
kimg convert -C -f qcow2 -O raw compq.qcow2 off3.raw
err_line "-C refuses compressed data"
ok "-C refusal leaves no output" test ! -e off3.raw
kimg convert -C -f raw -O qcow2 a.raw off4.qcow2
err_line "-C refuses a qcow2 target"
ok "no qcow2 output either" test ! -e off4.qcow2

# refusals, each one clean line
kimg convert -S 1000 -f raw a.raw x.raw;  err_line "-S not a multiple of 512"
kimg convert -m 17 -f raw a.raw x.raw;    err_line "-m out of range"
kimg convert --target-is-zero -f raw a.raw x.raw; err_line "--target-is-zero without -n"
kimg convert -c -O raw -f raw a.raw x.raw; err_line "-c to a format without compression"
kimg convert -O nosuch -f raw a.raw x.raw; err_line "unknown output format"
ok "no output left by the refusals" test ! -e x.raw
done_testing
