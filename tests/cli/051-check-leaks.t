#!/bin/bash
# Leaked clusters made with byte patches are reported as qemu-img check
# reports them (exit 3, "N leaked clusters", JSON "leaks", the "Leaked
# cluster N refcount=R reference=0" lines), for several refcount widths,
# cluster sizes and compat 0.10; `check -r leaks` and `-r all` repair them
# with qemu-img's output and exit code, leaving an image qemu-img finds
# clean and whose content equals the qemu-img-repaired twin.
# make check: a third of the scenarios, every kind of leak among them
# (lib.sh sampled); check-slow the rest.
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
# Three scenarios a row: make check takes each row's first (lib.sh
# sampled), check-slow the other two; the first column has every kind of
# leak, compat 0.10, narrow and wide refcounts, small and 2M clusters.
scenarios=(
    "unref v2.qcow2"        "unref v3.qcow2"        "unref rb1.qcow2"
    "unref cs512.qcow2"     "unref rb2.qcow2"       "unref rb4.qcow2"
    "tail rb1.qcow2"        "unref rb8.qcow2"       "unref rb32.qcow2"
    "tail cs2M.qcow2"       "unref rb64.qcow2"      "unref cs4k.qcow2"
    "meta rb2.qcow2"        "tail v3.qcow2"         "tail rb64.qcow2"
    "meta rb64.qcow2"       "meta v3.qcow2"         "meta cs2M.qcow2"
)
for s in "${scenarios[@]}"; do
    sampled || continue
    scenario $s
done
done_testing
