#!/bin/bash
# What kimg refuses to read in a VHDX, each in one clear line: differencing
# disks (.avhdx: HasParent and a parent locator; qemu-img 7.2 refuses them
# with "Operation not supported"), metadata items and regions of a kind
# kimg does not know that are marked required (the specification forbids
# opening those), a partially present block outside a differencing disk,
# and tables over kimg's memory limits (a BAT over 24 MiB; qemu-img
# reads it).
. "$(dirname "$0")/lib.sh"
MK="$PY $KIMG_SRC/tests/images/make-vhdx.py"
MiB=$((1024 * 1024))

# refused IMAGE NAME REGEX: every reading command fails in one line, no output
refused() {
    for cmd in "info" "map --output=json" "compare" "checksum" "convert" "check"; do
        rm -f out.raw
        case $cmd in
        compare) kimg compare "$1" "$1" ;;
        convert) kimg convert -O raw "$1" out.raw ;;
        *) kimg $cmd "$1" ;;
        esac
        err_line "$2: $cmd"
    done
    ok "$2: no output file" test ! -e out.raw
    like "$(< "$T/err")" "$3" "$2: the reason"
}

$MK diff.avhdx --parent --size $((4 * MiB)) --data 0:512
refused diff.avhdx "differencing" "differencing VHDX images \(.avhdx\) are not supported"
qimg info diff.avhdx
isnt "$QRC" 0 "differencing: qemu-img 7.2 refuses it too"
$MK u.vhdx --size $MiB --data 0:512 --unknown-meta 1
refused u.vhdx "unknown required metadata item" "marked required, but kimg does not know it"
$MK u.vhdx --size $MiB --data 0:512 --unknown-region 1
refused u.vhdx "unknown required region" "unknown type and is marked required"
$MK p.vhdx --size $((4 * MiB)) --data 0:$((4 * MiB)) --state 2=7
kimg info p.vhdx
err_line "partially present block: info"
like "$(< "$T/err")" "partially present" "partially present block: the reason"
kimg check p.vhdx
is "$RC" 2 "partially present block: check counts a corruption"

# a BAT past kimg's 24 MiB limit: 3 TiB at 1 MiB blocks
$MK big.vhdx --size $(((3 * MiB + 8) * MiB)) --data 0:4096
refused big.vhdx "BAT over the limit" "larger than kimg's limit"
qimg info big.vhdx
is "$QRC" 0 "BAT over the limit: qemu-img 7.2 reads it (kimg refuses)"
# under it: 2 TiB at 1 MiB blocks opens
$MK big.vhdx --size $((2 * MiB * MiB)) --data 0:4096 --data $((2 * MiB * MiB - 4096)):4096
oracle "2 TiB at 1 MiB blocks: info json" info --output=json big.vhdx
oracle "2 TiB at 1 MiB blocks: check" check big.vhdx
rm -f big.vhdx
done_testing
