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
for fx in v3.qcow2 v2.qcow2 rb1.qcow2 rb64.qcow2 cs4k.qcow2; do
    for kind in rc-low l2-eof l2-overlap l2-shared; do scenario $kind $fx; done
done
for kind in l2-unaligned l1-eof rcblock-0; do scenario $kind v3.qcow2; done
scenario l2-eof el2.qcow2
scenario rc-low el2.qcow2
scenario rc-low zlib.qcow2
scenario rc-low wcomp.qcow2
scenario shared-1 snap.qcow2
done_testing
