#!/bin/bash
# convert of every fixture (all qcow2 variants, chains, raw) to raw and to
# qcow2: the output compares identical in qemu-img, qcow2 outputs pass
# qemu-img check, and the source is not modified.
# make check: a third of the fixtures (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
fixtures
# qemu-img opens an external data file relative to the working directory
# (kimg: relative to the image), so the comparisons run from the fixtures
cd "$FX"
for f in $(fixture_names); do
    sampled || continue         # check: a third of the fixtures; check-slow: the rest
    src=$FX/$f
    before=$(sha "$src")
    kimg convert -O raw "$src" "$T/out.raw"
    is "$RC" 0 "convert $f -O raw" || diag "$(head -3 "$T/err")"
    ok "$f -O raw compares identical (qemu-img)" qemu_oracle_compare "$src" "$T/out.raw"
    kimg convert -O qcow2 "$src" "$T/out.qcow2"
    is "$RC" 0 "convert $f -O qcow2" || diag "$(head -3 "$T/err")"
    ok "$f -O qcow2 passes qemu-img check" check_clean "$T/out.qcow2"
    ok "$f -O qcow2 compares identical (qemu-img)" qemu_oracle_compare "$src" "$T/out.qcow2"
    is "$(sha "$src")" "$before" "$f unchanged by convert"
    rm -f "$T/out.raw" "$T/out.qcow2"
done
done_testing
