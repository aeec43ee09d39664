#!/bin/bash
# compare finds a one-byte difference wherever it is (first byte, unaligned
# middle of data, inside an unallocated or zero cluster, in content that
# comes from a backing file, in a compressed cluster, in the last byte):
# exit 1 and qemu-img's "Content mismatch at offset N!" (N as qemu-img
# reports it: the start of the 512-byte sector holding the difference).
# Sizes: non-strict compares the extra part against zeros ("Warning: Image
# size mismatch!"), -s fails on size and on allocation ("Strict mode: ...").
# -q: same exit codes, no output.
# make check: a third of the changed bytes, over every image, and of the
# size cases (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
fixtures
MiB=$((1024 * 1024))
# changed OFF: d.raw is flat.raw with the byte at OFF changed
changed() {
    local b
    cp flat.raw d.raw
    b=$(od -An -tu1 -j "$1" -N1 d.raw | tr -d ' ')
    poke d.raw "$1" "$(printf %02x $(( (b + 1) % 256 )))"
}
for f in v3.qcow2 cs512.qcow2 el2.qcow2 zlib.qcow2 zero.qcow2 chain-top.qcow2 snap.qcow2 odd.qcow2 holes.raw; do
    qemu-img convert -O raw "$FX/$f" flat.raw
    size=$(stat -c %s flat.raw)
    for off in 0 1 511 512 $((64 * 1024 - 1)) 100000 $((MiB + 12345)) $((size / 2 + 700)) $((2 * MiB + 64 * 1024)) $((size - 1)); do
        [ "$off" -lt "$size" ] || continue
        sampled || continue
        changed "$off"
        ( cd "$FX" && qemu-img compare "$f" "$T/d.raw" > "$T/qout" 2> "$T/qerr" ); QRC=$?
        RC=0; ( cd "$FX" && "$KIMG" compare "$f" "$T/d.raw" > "$T/out" 2> "$T/err" ) || RC=$?
        is "$RC" "$QRC" "$f byte $off changed: exit $QRC as qemu-img's"
        is_file "$T/out" "$T/qout" "$f byte $off changed: $(< "$T/qout")"
    done
    changed $((size - 1))
    ( cd "$FX" && qemu-img compare -q "$f" "$T/d.raw" ); QRC=$?
    RC=0; ( cd "$FX" && "$KIMG" compare -q "$f" "$T/d.raw" > "$T/out" 2>&1 ) || RC=$?
    is "$RC" "$QRC" "$f -q with a difference: exit $QRC"
    is "$(< "$T/out")" "" "$f -q with a difference: no output"
done
# Size mismatch.
cd "$FX"
qemu-img convert -O raw v3.qcow2 "$T/v3.raw"
cp "$T/v3.raw" "$T/bigger.raw"; truncate -s 5M "$T/bigger.raw"
cp "$T/bigger.raw" "$T/bigger-x.raw"; poke "$T/bigger-x.raw" 4500000 58
cp "$T/v3.raw" "$T/smaller.raw"; truncate -s 3M "$T/smaller.raw"
for args in "v3.qcow2 $T/bigger.raw" "$T/bigger.raw v3.qcow2" "v3.qcow2 $T/bigger-x.raw" \
            "$T/bigger-x.raw v3.qcow2" "v3.qcow2 $T/smaller.raw" "-s v3.qcow2 $T/bigger.raw" \
            "-s v3.qcow2 $T/smaller.raw" "-s v3.qcow2 $T/v3.raw" "-s v3.qcow2 v2.qcow2" \
            "-s v3.qcow2 cs4k.qcow2" "-s holes.raw holes.raw" "short-top.qcow2 short-base.qcow2" \
            "-s short-top.qcow2 short-base.qcow2" "chain-top.qcow2 chain-mid.qcow2" \
            "-q v3.qcow2 $T/bigger-x.raw" "-q -s v3.qcow2 $T/bigger.raw"; do
    sampled || continue
    oracle "compare $args" compare $args
done
done_testing
