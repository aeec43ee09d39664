#!/bin/bash
# More damage qemu-img check diagnoses (exit 2) rather than refusing to
# open: a corrupted subcluster bitmap (extended L2), a compressed cluster
# past EOF, a snapshot whose L1 table is past EOF or unaligned, a refcount
# table entry with reserved bits / pointing at an L2 table, an L1 entry
# with reserved bits, an L1 entry pointing at the L1 table itself.  kimg
# check must report them as qemu-img does (exit code, stdout, per-problem
# lines), JSON too; -r leaks / -r all as repair_oracle (lib.sh): qemu-img's
# outcome, or a full repair where qemu-img's own repair fails.
# make check: a third of the cases (lib.sh sampled), each damage under
# each of the five modes a case: the modes rotate over the damages, so
# each damage has one or two modes in check and each mode two or three
# damages; check-slow: the others.
. "$(dirname "$0")/lib.sh"
fixtures
put8() { put_be 8 "$1" "$2" "$3"; }
n=0
scenario() {
    local kind=$1 fx=$2 img pos so
    n=$((n + 1)); img=m$n.qcow2
    cp "$FX/$fx" "$img"
    case $kind in
    subcluster-bitmap) pos=$($Q2 l2 "$img" 0 | cut -d' ' -f1); put8 "$img" $((pos + 8)) $((0x0000000100000001)) ;;
    compressed-eof)    pos=$($Q2 l2 "$img" 0 | cut -d' ' -f1); put8 "$img" "$pos" $(( (1 << 62) | 0x10000000000 )) ;;
    snapshot-l1-eof)   so=$($Q2 header "$img" | sed -n 's/^snapshots_offset=//p'); put8 "$img" "$so" $((0x100000000)) ;;
    snapshot-l1-unaligned) so=$($Q2 header "$img" | sed -n 's/^snapshots_offset=//p'); put8 "$img" "$so" $((0x10001)) ;;
    reftable-reserved) put8 "$img" 65536 $((0x20001)) ;;
    reftable-on-l2)    put8 "$img" 65536 $((0x40000)) ;;
    l1-reserved)       put8 "$img" 196608 $((0x8000000000040100)) ;;
    l1-on-l1)          put8 "$img" 196608 $((0x8000000000030000)) ;;
    esac
    local m
    for m in check json leaks all all-json; do
        sampled || continue
        case $m in
        check) check_oracle "$kind in $fx: check" "$img" ;;
        json) check_oracle "$kind in $fx: check --output=json" "$img" --output=json ;;
        leaks) repair_oracle "$kind in $fx: check -r leaks" "$img" -r leaks ;;
        all) repair_oracle "$kind in $fx: check -r all" "$img" -r all ;;
        all-json) repair_oracle "$kind in $fx: check -r all --output=json" "$img" -r all --output=json ;;
        esac
    done
}
scenario subcluster-bitmap el2.qcow2
scenario compressed-eof zlib.qcow2
scenario snapshot-l1-eof snap.qcow2
scenario snapshot-l1-unaligned snap.qcow2
scenario reftable-reserved v3.qcow2
scenario reftable-on-l2 v3.qcow2
scenario l1-reserved v3.qcow2
scenario l1-on-l1 v3.qcow2
done_testing
