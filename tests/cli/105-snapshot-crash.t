#!/bin/bash
# Crash safety of snapshot -c, -a and -d: the command is killed just
# before its 1st, 2nd, 3rd, ... file change (KIMG_CRASH_AFTER=N, see
# img/file.c) until it completes.  After every crash qemu-img check must
# exit 0 or 3 (clean or leaks only), the active image must read as before
# or as after the command (content and size), and every snapshot listed
# must read as it did (a new one: as the image before -c).  Scenarios:
# qemu-made snapshots (-a, -d; -c next to one), extended L2 and
# compressed clusters (-c), -a to a snapshot of another size, -d of a
# VM-state snapshot, -d of a kimg-made snapshot after writes; and -c under
# power failures (KIMG_CRASH_LOSE: changes not yet synced may be lost).
. "$(dirname "$0")/lib.sh"
fixtures
cd "$T"

# size_of FILE: $SZ, the header's virtual size (one od, no subshell)
size_of() { od -An -tu8 --endian=big -j24 -N8 "$1" > "$T/sz"; read -r SZ < "$T/sz"; SZ=$((SZ)); }
# names_of FILE: $NAMES, the snapshots' names as qemu-img snapshot -l
# lists them (its output read by bash, not awk)
names_of() {
    local l=0 a b rest; NAMES=()
    qemu-img snapshot -l "$1" > "$T/snl"
    while read -r a b rest; do l=$((l + 1)); [ $l -gt 2 ] && NAMES+=("$b"); done < "$T/snl"
    return 0
}

# crash_loop NAME IMAGE ARGS...: snapshot ARGS on copies of IMAGE, crashed
# at every file change in turn
crash_loop() {
    local name=$1 img=$2; shift 2
    local n=0 rc c bad_check=0 bad_content=0 bad_sn=0 st sn
    qemu-img convert -O raw "$img" old.raw
    local old_size; size_of "$img"; old_size=$SZ
    rm -f sn-*.raw
    names_of "$img"
    for sn in ${NAMES[@]+"${NAMES[@]}"}; do qemu-img convert -O raw -l "$sn" "$img" "sn-$sn.raw"; done
    cp "$img" done.qcow2
    "$KIMG" snapshot "$@" done.qcow2 || { fail "$name: the command itself failed"; return; }
    qemu-img convert -O raw done.qcow2 new.raw
    local new_size; size_of done.qcow2; new_size=$SZ
    while :; do
        cp "$img" w.qcow2
        # (no env and timeout a point: a hang is the file watchdog's)
        rc=0
        if [ -n "${LOSE:-}" ]; then KIMG_CRASH_LOSE=$LOSE KIMG_CRASH_AFTER=$n "$KIMG" snapshot "$@" w.qcow2 2> /dev/null || rc=$?
        else KIMG_CRASH_AFTER=$n "$KIMG" snapshot "$@" w.qcow2 2> /dev/null || rc=$?; fi
        c=0; qemu-img check w.qcow2 > /dev/null 2>&1 || c=$?
        if [ "$c" != 0 ] && [ "$c" != 3 ]; then
            bad_check=$((bad_check + 1)); diag "$name: crash after $n changes: qemu-img check exit $c"
        fi
        size_of w.qcow2; st=$SZ
        if ! { [ "$st" = "$old_size" ] && qemu_oracle_compare w.qcow2 old.raw; } &&
           ! { [ "$st" = "$new_size" ] && qemu_oracle_compare w.qcow2 new.raw; }; then
            bad_content=$((bad_content + 1)); diag "$name: crash after $n changes: neither old nor new content"
        fi
        names_of w.qcow2
        for sn in ${NAMES[@]+"${NAMES[@]}"}; do
            # (convert -l gives the image's current size: when the size
            # changed, compare the content only)
            local want=old.raw; [ -f "sn-$sn.raw" ] && want=sn-$sn.raw
            qemu-img convert -O raw -l "$sn" w.qcow2 x.raw
            cmp -s x.raw "$want" || qemu_oracle_compare x.raw "$want" ||
                { bad_sn=$((bad_sn + 1)); diag "$name: crash after $n changes: snapshot $sn changed"; }
        done
        [ "$rc" = 222 ] || break
        crash_next $n > "$T/next"; n=$(< "$T/next")
        [ $n -le 300 ] || break
    done
    is "$rc" 0 "$name: completes once no crash comes (after $n crash points)"
    like "$n" "^([5-9]|[1-9][0-9]+)$" "$name: at least 5 crash points exercised"
    is "$bad_check" 0 "$name: qemu-img check clean or leaks only after every crash"
    is "$bad_content" 0 "$name: the image reads as before or after the command after every crash"
    is "$bad_sn" 0 "$name: every snapshot reads as it did after every crash"
}

cp "$FX/snap.qcow2" s.qcow2
crash_loop "-a first" s.qcow2 -a first
crash_loop "-d second" s.qcow2 -d second
cp "$FX/el2.qcow2" e.qcow2
crash_loop "-c, extended L2" e.qcow2 -c x
cp "$FX/zlib.qcow2" z.qcow2
qemu-img snapshot -c before z.qcow2
crash_loop "-c, qemu-made snapshot, compressed clusters shared with it" z.qcow2 -c x

qemu-img create -q -f qcow2 rs.qcow2 1M
qemu-io -c "write -P 0xb1 0 64k" rs.qcow2 > /dev/null
"$KIMG" snapshot -c small rs.qcow2
qemu-img resize -q rs.qcow2 3M
qemu-io -c "write -P 0xb2 2M 64k" rs.qcow2 > /dev/null
crash_loop "-a to a smaller snapshot" rs.qcow2 -a small

qemu-img create -q -f qcow2 -o cluster_size=4k vm.qcow2 4M
qemu-io -c "write -P 0x11 0 64k" vm.qcow2 > /dev/null
qemu-img resize -q vm.qcow2 6M
qemu-io -c "write -P 0x99 4M 64k" vm.qcow2 > /dev/null
qemu-img snapshot -c vmsnap vm.qcow2
qemu-io -c "discard 4M 64k" -c "write -P 0x12 0 4k" vm.qcow2 > /dev/null
so=$(get_be 8 vm.qcow2 64)
put_be 8 vm.qcow2 24 $((4 << 20)); put_be 4 vm.qcow2 $((so + 32)) 65536
put_be 8 vm.qcow2 $((so + 40)) 65536; put_be 8 vm.qcow2 $((so + 48)) $((4 << 20))
crash_loop "-d of a VM-state snapshot" vm.qcow2 -d vmsnap

cp "$FX/v3.qcow2" k.qcow2
"$KIMG" snapshot -c mine k.qcow2
qemu-io -c "write -P 0xc1 0 128k" -c "write -z 1M 64k" k.qcow2 > /dev/null
crash_loop "-d of a kimg-made snapshot after writes" k.qcow2 -d mine

# power failures: what was not synced may be lost, in any subset
# (check-slow only: make check covers the kill model above, and test 190
# reruns this whole file under power failures there too)
slow_part && for LOSE in 1 2; do
    crash_loop "power failure (seed $LOSE): -c on qemu-made snapshots" s.qcow2 -c third
done
done_testing
