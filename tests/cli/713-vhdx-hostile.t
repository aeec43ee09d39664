#!/bin/bash
# Hostile VHDXs from tests/images/make-vhdx.py: damaged headers and region
# tables, overlapping regions, BAT and blocks outside the file or over
# metadata, impossible sizes, metadata items outside their region.  Each
# goes through info, map, compare, checksum, convert and check: one
# "kimg: " line, non-zero exit, no output file, never a crash or a hang,
# the source unchanged.  Where qemu-img opens such an image anyway (a BAT
# past the end of the file, blocks over each other or over the headers)
# kimg refuses: a deliberate difference.
# make check: a third of the damaged images and of the random-bytes
# offsets (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
KIMG_TIMEOUT=30     # hostile input: each command under timeout, a hang fails on its own
MK="$PY $KIMG_SRC/tests/images/make-vhdx.py"
MiB=$((1024 * 1024))
D="--size $((6 * MiB)) --data 0:100000 --data 1100000:100000 --data 3000000:200000"
# name | damage | expected message (a regex) | does qemu-img 7.2 open it (1/0)
cases=(
    "both headers damaged|hdrs-crc|No valid VHDX header found|0"
    "headers with equal sequence numbers, different|hdrs-equal-seq|No valid VHDX header found|0"
    "both region tables damaged|rts-crc|no valid VHDX region table|0"
    "BAT and metadata regions overlap|regions-overlap|regions 0 and 1 overlap|0"
    "metadata region over the log|region-log-overlap|overlaps the log|0"
    "BAT region past the end of the file|bat-past-eof|lies past the end of the file|1"
    "BAT region of 0 bytes|bat-small|1 MiB boundaries|0"
    "BAT entry past the end of the file|block-past-eof|points after end of file|0"
    "two BAT entries on one block|block-overlap|BAT entries overlap|1"
    "BAT entry on the metadata region|block-in-meta|points into the image's metadata|0"
    "BAT entry on the headers|block-in-header|points into the image's metadata|1"
    "virtual size over 64 TiB|size-huge|invalid VHDX virtual size|0"
    "virtual size not in whole sectors|size-unaligned|invalid VHDX virtual size|1"
    "block size 3 MiB|block-size-bad|invalid VHDX block size|0"
    "logical sector size 1024|sector-size-bad|invalid VHDX sector sizes|0"
    "metadata item past its region|meta-outside|outside the metadata region|1"
    "metadata items overlapping|meta-overlap|overlaps another item|0"
    "required metadata item missing|meta-missing|has no page 83 data item|0"
    "log version 1|log-version|log version|0"
)
for c in "${cases[@]}"; do
    sampled || continue         # check: a third of the cases; check-slow: the rest
    IFS='|' read -r name dmg want qopens <<< "$c"
    $MK h.vhdx $D --damage "$dmg"
    sum=$(md5sum < h.vhdx)
    for cmd in "info" "map --output=json" "compare" "checksum" "convert" "convert -O qcow2"; do
        rm -f out.raw
        case $cmd in
        compare) kimg compare h.vhdx h.vhdx ;;
        convert) kimg convert -O raw h.vhdx out.raw ;;
        "convert -O qcow2") kimg convert -O qcow2 h.vhdx out.raw ;;
        *) kimg $cmd h.vhdx ;;
        esac
        err_line "$name: $cmd"
    done
    ok "$name: no output file" test ! -e out.raw
    like "$(< "$T/err")" "$want" "$name: the reason"
    kimg check h.vhdx
    ok "$name: check fails (exit $RC)" test "$RC" -ne 0 -a "$RC" -ne 124 -a "$RC" -lt 128
    is "$(md5sum < h.vhdx)" "$sum" "$name: the source is unchanged"
    qimg info h.vhdx
    if [ "$qopens" = 1 ]; then
        is "$QRC" 0 "$name: qemu-img 7.2 opens it (kimg refuses: deliberate)"
    else
        isnt "$QRC" 0 "$name: qemu-img 7.2 refuses it too"
    fi
done

# check reports what an open would refuse, in qemu-img's wording and exits
$MK h.vhdx $D --damage block-past-eof
oracle "BAT entry past the end: check" check h.vhdx
is "$(< "$T/err")" "$(sed 's/^qemu-img:/kimg:/' "$T/qerr")" \
    "BAT entry past the end: check's line as qemu-img's"
oracle "BAT entry past the end: check json" check --output=json h.vhdx
$MK h.vhdx $D
truncate -s -1000000 h.vhdx
oracle "file cut inside a block: check" check h.vhdx
is "$(< "$T/err")" "$(sed 's/^qemu-img:/kimg:/' "$T/qerr")" \
    "file cut inside a block: check's line as qemu-img's"
oracle "file cut inside a block: info" info h.vhdx
is "$(head -1 "$T/err")" "$(head -1 "$T/qerr" | sed "s/^qemu-img: /kimg: Could not open 'h.vhdx': /")" \
    "file cut inside a block: the open's reason in qemu-img's wording"
$MK h.vhdx $D --damage block-overlap
kimg check h.vhdx
is "$RC" 2 "two BAT entries on one block: check finds a corruption (exit 2)"
like "$(< "$T/err")" "BAT entries overlap" "two BAT entries on one block: the line"

# random bytes over each structure: never a crash or a hang
for off in 0 65536 131072 196608 262144 $((2 * MiB)) $((3 * MiB)); do
    sampled || continue
    $MK h.vhdx $D
    $PY -c 'import os,sys; f=open("h.vhdx","r+b"); f.seek(int(sys.argv[1])); f.write(os.urandom(4096))' $off
    kimg convert -O raw h.vhdx out.raw
    ok "random bytes at $off: no crash, no hang (exit $RC)" test "$RC" -lt 124
    rm -f out.raw
done
done_testing
