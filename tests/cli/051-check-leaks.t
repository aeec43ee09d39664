#!/bin/bash
# Leaked clusters made with byte patches are reported as qemu-img check
# reports them (exit 3, "N leaked clusters", JSON "leaks", the "Leaked
# cluster N refcount=R reference=0" lines), for several refcount widths,
# cluster sizes and compat 0.10; `check -r leaks` and `-r all` repair them
# with qemu-img's output and exit code, leaving an image qemu-img finds
# clean and whose content equals the qemu-img-repaired twin.
. "$(dirname "$0")/lib.sh"
fixtures
# unref: drop the L2 entry of guest offset 2M+512 (written by fill; its data
# cluster keeps refcount 1 and nothing points at it).
# tail: grow the file by one cluster and give it refcount 1.
# meta: refcount 2 on the L1 table's cluster (not with refcount_bits=1).
n=0
scenario() {
    local kind=$1 fx=$2 img
    n=$((n + 1)); img=d$n.qcow2
    cp "$FX/$fx" "$img"
    eval "$($Q2 header "$img" | grep -E '^(cluster_size|l1_table_offset)=')"
    case $kind in
    unref) $Q2 set-l2 "$img" $((2 * 1024 * 1024 + 512)) 0 ;;
    tail)  local end; end=$($Q2 free "$img")
           truncate -s $((end + cluster_size)) "$img"; $Q2 set-rc "$img" "$end" 1 ;;
    meta)  $Q2 set-rc "$img" "$l1_table_offset" 2 ;;
    esac
    is "$(qemu-img check "$img" > /dev/null 2>&1; echo $?)" 3 "$kind leak in $fx: qemu-img check exits 3 (the damage is a leak)"
    check_oracle "$kind leak in $fx: check" "$img"
    check_oracle "$kind leak in $fx: check --output=json" "$img" --output=json
    for r in leaks all; do
        check_oracle "$kind leak in $fx: check -r $r" "$img" -r $r
        ok "$kind leak in $fx: clean after kimg check -r $r" check_clean "ck/$img"
        ok "$kind leak in $fx: content after -r $r as qemu-img's repair" qemu_oracle_compare "ck/$img" "cq/$img"
    done
    check_oracle "$kind leak in $fx: check -r leaks --output=json" "$img" -r leaks --output=json
}
for fx in v3.qcow2 v2.qcow2 rb1.qcow2 rb2.qcow2 rb4.qcow2 rb8.qcow2 rb32.qcow2 rb64.qcow2 cs512.qcow2 cs4k.qcow2; do
    scenario unref $fx
done
for fx in v3.qcow2 rb1.qcow2 rb64.qcow2 cs2M.qcow2; do
    scenario tail $fx
done
for fx in v3.qcow2 rb2.qcow2 rb64.qcow2 cs2M.qcow2; do
    scenario meta $fx
done
done_testing
