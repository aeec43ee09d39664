#!/bin/bash
# resize under crashes: KIMG_CRASH_AFTER=N makes kimg die before its
# (N+1)-th file change; for N = 0, 1, 2, ... (then sparser) until it
# completes, the image must pass qemu-img check (clean, or leaked clusters
# only) and read as either the old or the new state: the old size and
# content, or the new ones.  Grows that move the L1 table and grow the
# refcount table (512-byte clusters to 64 GiB, 64 KiB clusters to 8 TiB),
# a grow with metadata preallocation (thousands of L2 tables), a grow that
# zeroes the area a backing file would show through, shrinks (with and
# without snapshots; with small clusters, compressed data and metadata
# interleaved, so that the clusters the shrink frees are punched in many
# runs before the file is cut: crash points in those steps too).
# make check: one scenario of each kind (the 64 GiB grow, falloc growth,
# the shrink with runs punched, the shrink with a snapshot, the overlay),
# at check's crash points (lib.sh crash_next, doubling past 40);
# check-slow: those scenarios' other points, and their twins (the 8 TiB
# grow, metadata preallocation, the 4k shrink, the punched shrink with a
# snapshot) at every point (slow_case).
. "$(dirname "$0")/lib.sh"

# the virtual size: the header's field (what qemu-img info reports for a
# qcow2, read without starting a qemu-img at each crash point)
vsize() { get_be 8 "$1" 24; }

# crash_loop NAME TEMPLATE RESIZE-ARGS...: TEMPLATE is the old state;
# "img" stands for the image in RESIZE-ARGS.
crash_loop() {
    local name=$1 tpl=$2; shift 2
    local args=("$@") n=0 rc bad=0 crashes=0 a
    cp "$tpl" new.qcow2
    "$KIMG" resize -q "${args[@]/#img/new.qcow2}" > /dev/null 2>&1 || { fail "$name: kimg resize failed"; return; }
    local old_size new_size
    old_size=$(vsize "$tpl"); new_size=$(vsize new.qcow2)
    while :; do
        cp "$tpl" img
        rc=0; KIMG_CRASH_AFTER=$n "$KIMG" resize -q "${args[@]/#img/img}" > /dev/null 2> err || rc=$?
        [ "$rc" -eq 0 ] && break
        if [ "$rc" -ne 222 ]; then
            fail "$name: crash point $n: exit $rc, not the injected crash" "$(< err)"; return
        fi
        crashes=$((crashes + 1))
        local crc=0; qemu-img check -q img > /dev/null 2>&1 || crc=$?
        if [ "$crc" -ne 0 ] && [ "$crc" -ne 3 ]; then
            bad=1; diag "crash point $n: qemu-img check exits $crc"; qemu-img check img 2>&1 | head -5 | while read -r l; do diag "  $l"; done
            break
        fi
        local sz; sz=$(vsize img)
        if [ "$sz" = "$new_size" ] && qemu_oracle_compare img new.qcow2; then :
        elif [ "$sz" = "$old_size" ] && qemu_oracle_compare img "$tpl"; then :
        else
            bad=1; diag "crash point $n: size $sz, content neither the old nor the new state"; break
        fi
        if [ $n -lt 40 ]; then n=$(crash_next $n)
        elif [ "$KIMG_TEST_PART" = quick ]; then n=$((n * 2))   # check: sparser past 40
        else n=$((n + n / 4)); fi
        [ $n -gt 100000 ] && { bad=1; diag "no end after $n changes"; break; }
    done
    if [ $bad -eq 0 ]; then pass "$name: $crashes crash points, each clean (or leaks) and old or new"
    else fail "$name: a crash left a bad image"; fi
    ok "$name: completed run clean" check_clean img
    ok "$name: completed run as the uninterrupted one" qemu_oracle_compare img new.qcow2
}
# slow_case NAME TEMPLATE RESIZE-ARGS...: a scenario whose twin (a
# scenario of the same kind) make check runs: check-slow runs it whole,
# every crash point, check none of it (a template only it uses is made
# only in check-slow too)
slow_case() { slow_part || return 0; KIMG_TEST_PART=all crash_loop "$@"; }

qemu-img create -q -f qcow2 -o cluster_size=512 c512.qcow2 1M
qemu-io -f qcow2 -c "write -P 0x11 0 256k" -c "write -P 0x12 $((1024 * 1024 - 4096)) 4096" c512.qcow2 > /dev/null
crash_loop "512-byte clusters grown to 64G (L1 16 MiB, refcount table grows)" c512.qcow2 img 64G

if slow_part; then
    qemu-img create -q -f qcow2 c64.qcow2 1M
    qemu-io -f qcow2 -c "write -P 0x21 0 1M" c64.qcow2 > /dev/null
    slow_case "64k clusters grown to 8T (L1 moves)" c64.qcow2 img 8T
fi

slow_case "512-byte clusters, metadata preallocation to 5M" c512.qcow2 --preallocation=metadata img 5M

qemu-img create -q -f qcow2 -o cluster_size=4k c4k.qcow2 4M
qemu-io -f qcow2 -c "write -P 0x31 0 4M" c4k.qcow2 > /dev/null
slow_case "4k clusters shrunk 4M to 1M+1536" c4k.qcow2 --shrink img $((1024 * 1024 + 1536))
crash_loop "4k clusters, falloc growth to 6M" c4k.qcow2 --preallocation=falloc img 6M

cp c4k.qcow2 c4ks.qcow2
qemu-img snapshot -c s1 c4ks.qcow2
qemu-io -f qcow2 -c "write -P 0x32 1M 2M" c4ks.qcow2 > /dev/null
crash_loop "shrink of an image with a snapshot" c4ks.qcow2 --shrink img 512k

# guest data below and above the new end written in turns: the host
# clusters kept and freed alternate (64 runs to punch)
qemu-img create -q -f qcow2 -o cluster_size=512 c512m.qcow2 2M
cmds=()
for ((i = 0; i < 64; i++)); do
    cmds+=(-c "write -P $((i + 1)) $((i * 8192)) 4k")
    if ((i % 4)); then cmds+=(-c "write -P 0x55 $((1024 * 1024 + i * 8192)) 4k")
    else cmds+=(-c "write -c -P 0x56 $((1024 * 1024 + i * 8192)) 4k"); fi
done
qemu-io -f qcow2 "${cmds[@]}" c512m.qcow2 > /dev/null
crash_loop "512-byte clusters, kept and freed clusters in turns: shrunk 2M to 1M-512 (runs punched)" \
    c512m.qcow2 --shrink img $((1024 * 1024 - 512))
if slow_part; then
    qemu-img snapshot -c s1 c512m.qcow2
    qemu-io -f qcow2 -c "write -P 0x57 1536k 64k" c512m.qcow2 > /dev/null
    slow_case "the same with a snapshot" c512m.qcow2 --shrink img 1M
fi

qemu-img create -q -f raw base.raw 8M
qemu-io -f raw -c "write -P 0x41 0 8M" base.raw > /dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw -o cluster_size=4k top.qcow2 $((1024 * 1024 + 1536))
qemu-io -f qcow2 -c "write -P 0x42 0 4k" top.qcow2 > /dev/null
crash_loop "overlay grown over its larger backing file (zeroed)" top.qcow2 img 6M
done_testing
