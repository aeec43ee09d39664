#!/bin/bash
# Corruptions made with byte patches are reported as qemu-img check reports
# them (exit 2, "N errors were found", JSON "corruptions"/"leaks", the
# ERROR lines): a data cluster's refcount too low, an L2 entry past the end
# of the file, an L2 entry pointing at the refcount table (overlap), two L2
# entries sharing a cluster, an unaligned L2 entry, an L1 entry past EOF, a
# refcount block with refcount 0, a compressed cluster with refcount 0, a
# snapshot-shared cluster with refcount 1 — on several refcount widths,
# compat 0.10 and extended L2.  `check -r leaks` / `-r all` as repair_oracle
# (lib.sh): qemu-img's exit code, output and resulting cleanliness (or a
# full repair where qemu-img's fails), the same content when both are clean.
# make check: a third of the scenarios, every kind and fixture among them
# (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
fixtures
MiB=$((1024 * 1024))
n=0
scenario() {
    local kind=$1 fx=$2 img h
    n=$((n + 1)); img=c$n.qcow2
    cp "$FX/$fx" "$img"
    eval "$($Q2 header "$img" | grep -E '^(cluster_size|l1_table_offset|refcount_table_offset)=')"
    case $kind in
    rc-low)     $Q2 set-rc "$img" "$($Q2 host "$img" 0)" 0 ;;
    l2-eof)     $Q2 set-l2 "$img" 0 0x8000000100000000 ;;
    l2-overlap) $Q2 set-l2 "$img" $((2 * MiB + 512)) $((0x8000000000000000 | refcount_table_offset)) ;;
    l2-shared)  $Q2 set-l2 "$img" $((2 * MiB + 512)) "0x$($Q2 l2 "$img" 0 | cut -d' ' -f2)" ;;
    l2-unaligned) h=$($Q2 host "$img" 0); $Q2 set-l2 "$img" 0 $((0x8000000000000000 | (h + 512))) ;;
    l1-eof)     put_be 8 "$img" "$l1_table_offset" $((0x8000000100000000)) ;;
    rcblock-0)  $Q2 set-rc "$img" "$(( $(get_be 8 "$img" "$refcount_table_offset") ))" 0 ;;
    shared-1)   $Q2 set-rc "$img" "$($Q2 host "$img" $((2 * MiB + 512)))" 1 ;;
    esac
    qrc=0; qemu-img check "$img" > /dev/null 2>&1 || qrc=$?
    is "$qrc" 2 "$kind in $fx: qemu-img check exits 2 (the damage is a corruption)"
    check_oracle "$kind in $fx: check" "$img"
    check_oracle "$kind in $fx: check --output=json" "$img" --output=json
    for r in leaks all; do
        repair_oracle "$kind in $fx: check -r $r" "$img" -r $r
        if check_clean "cq/$img" && check_clean "ck/$img"; then
            ok "$kind in $fx: content after -r $r as qemu-img's repair" qemu_oracle_compare "ck/$img" "cq/$img"
        fi
    done
    repair_oracle "$kind in $fx: check -r all --output=json" "$img" -r all --output=json
}
# Three scenarios a row: make check takes each row's first (lib.sh
# sampled), check-slow the other two; the first column has every kind of
# damage and every fixture but wcomp.qcow2 (compressed, as zlib.qcow2).
scenarios=(
    "l2-unaligned v3.qcow2"     "rc-low v3.qcow2"        "l2-eof v3.qcow2"
    "l1-eof v3.qcow2"           "l2-overlap v3.qcow2"    "l2-shared v3.qcow2"
    "rcblock-0 v3.qcow2"        "l2-eof v2.qcow2"        "l2-overlap v2.qcow2"
    "rc-low v2.qcow2"           "l2-shared v2.qcow2"     "rc-low rb1.qcow2"
    "l2-eof rb1.qcow2"          "l2-overlap rb1.qcow2"   "l2-shared rb1.qcow2"
    "l2-overlap rb64.qcow2"     "rc-low rb64.qcow2"      "l2-eof rb64.qcow2"
    "l2-shared cs4k.qcow2"      "rc-low cs4k.qcow2"      "l2-eof cs4k.qcow2"
    "rc-low el2.qcow2"          "l2-eof el2.qcow2"       "l2-overlap cs4k.qcow2"
    "rc-low zlib.qcow2"         "rc-low wcomp.qcow2"     "l2-shared rb64.qcow2"
    "shared-1 snap.qcow2"
)
for s in "${scenarios[@]}"; do
    sampled || continue
    scenario $s
done
done_testing
