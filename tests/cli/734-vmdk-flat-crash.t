#!/bin/bash
# convert into flat and split VMDKs (descriptor + extent files) appears
# whole or not at all: a crash at every change point (KIMG_CRASH_AFTER;
# the renames of a multi-file output are points too) never leaves a
# descriptor, before or among the extents' renames; over an existing image
# the old descriptor stays whole with its old extents or is gone, never
# names new ones; failures midway (a file size limit, a full filesystem, a
# source read error, SIGTERM) leave no file at all, temporary or final.
# make check: the crash points of a new twoGbMaxExtentFlat output, every
# one (the renames come last: a sample of points would miss them); the
# other two subformats' crash loops are check-slow's (lib.sh sampled).
. "$(dirname "$0")/lib.sh"
require vmdkinfo
MiB=$((1024 * 1024)); GiB=$((1024 * MiB))

size=$((4 * GiB + 3 * MiB))
truncate -s $size src.raw
qemu-io -f raw -c 'write -P 0x11 0 4k' -c "write -P 0x22 $((2 * GiB - 1000)) 5000" \
    -c "write -P 0x44 $((size - 512)) 512" src.raw > /dev/null
truncate -s $((3 * GiB)) full.raw
head -c $((4 * MiB)) /dev/urandom | dd of=full.raw bs=1M seek=2047 conv=notrunc status=none
qemu-img create -q -f qcow2 old.qcow2 $((40 * MiB))
qemu-io -c 'write -P 0x55 0 1M' -c "write -P 0x66 $((39 * MiB)) 1M" old.qcow2 > /dev/null
truncate -s $((24 * MiB)) new.raw
qemu-io -f raw -c 'write -P 0x77 0 2M' new.raw > /dev/null

# every crash point of a new output: no descriptor at any of them; the
# points between the extents' renames and the descriptor's leave extents
# that no descriptor names (the rename order made visible).  A subformat
# is the case (lib.sh sampled): check takes the first, twoGbMaxExtentFlat
# (several extents renamed before the descriptor), check-slow the others.
for sub in twoGbMaxExtentFlat monolithicFlat twoGbMaxExtentSparse; do
    sampled || continue
    n=0 bad=0 between=0
    while [ $n -lt 300 ]; do
        rm -rf c; mkdir c
        rc=0; KIMG_CRASH_AFTER=$n "$KIMG" convert -O vmdk -o subformat=$sub src.raw c/d.vmdk \
            > /dev/null 2>&1 || rc=$?
        [ $rc = 0 ] && break
        if [ $rc != 222 ] || [ -e c/d.vmdk ]; then
            bad=$((bad + 1)); diag "$sub, crash after $n: exit $rc, $(ls -A c | tr '\n' ' ')"
        fi
        ls c | grep -q '^d-' && between=$((between + 1))
        n=$((n + 1))
    done
    is "$rc" 0 "$sub: the run without a crash succeeds ($n change points)"
    ok "$sub: and reads as the source" qemu_oracle_compare c/d.vmdk src.raw
    is "$bad" 0 "$sub: no crash point leaves a descriptor"
    ok "$sub: crashes among the renames leave extents without a descriptor ($between)" \
        test "$between" -gt 0
done

# over an existing image: the old descriptor with its old extent, or none
# (qemu-img makes the old image once, each point starts from a copy)
mkdir o0
qemu-img convert -f qcow2 -O vmdk -o subformat=monolithicFlat old.qcow2 o0/d.vmdk
n=0 bad=0 old=0 gone=0
while [ $n -lt 100 ]; do
    rm -rf c; cp -r o0 c
    rc=0; KIMG_CRASH_AFTER=$n "$KIMG" convert -f raw -O vmdk -o subformat=monolithicFlat \
        new.raw c/d.vmdk > /dev/null 2>&1 || rc=$?
    [ $rc = 0 ] && break
    if [ ! -e c/d.vmdk ]; then
        gone=$((gone + 1))
    elif qemu_oracle_compare c/d.vmdk old.qcow2; then
        old=$((old + 1))
    else
        bad=$((bad + 1)); diag "over an image, crash after $n: the descriptor reads neither"
    fi
    n=$((n + 1))
done
is "$rc" 0 "over an existing image: the run without a crash succeeds ($n points)"
ok "over an existing image: the new content" qemu_oracle_compare c/d.vmdk new.raw
is "$bad" 0 "over an existing image: no crash leaves a descriptor naming new extents"
ok "over an existing image: the old image whole at the early points ($old)" test "$old" -gt 0
ok "over an existing image: then none until the new one ($gone)" test "$gone" -gt 0

# failures midway leave nothing
left() { ls -A "$1" | tr '\n' ' '; }
for sub in monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat; do
    rm -rf f; mkdir f
    (ulimit -f 1024; exec "$KIMG" convert -O vmdk -o subformat=$sub full.raw f/d.vmdk) \
        > /dev/null 2> err && rc=0 || rc=$?
    isnt "$rc" 0 "$sub, file size limit: fails"
    is "$(wc -l < err)" 1 "$sub, file size limit: one line on stderr"
    is "$(left f)" "" "$sub, file size limit: no file left"
done

# a source read error after data was written (a damaged compressed cluster
# in the second extent's range)
qemu-img create -q -f qcow2 bad.qcow2 $((3 * GiB))
qemu-io -c 'write -P 0x11 0 1M' -c "write -c -P 0x22 $((2 * GiB)) 64k" \
    -c "write -P 0x33 $((2 * GiB + 100 * MiB)) 1M" bad.qcow2 > /dev/null
host=$($Q2 host bad.qcow2 $((2 * GiB)))
printf '\377%.0s' $(seq 1 16) | dd of=bad.qcow2 bs=1 seek="$host" conv=notrunc status=none
for sub in monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat; do
    rm -rf f; mkdir f
    KIMG_CONVERT_SERIAL=1 kimg convert -f qcow2 -O vmdk -o subformat=$sub bad.qcow2 f/d.vmdk
    err_line "$sub, a source read error midway"
    is "$(left f)" "" "$sub, a source read error midway: no file left"
done

# a full filesystem (root: a small tmpfs)
if [ "$(id -u)" = 0 ] && mkdir -p small && mount -t tmpfs -o size=3m tmpfs small 2> /dev/null
then
    trap 'umount "$T/small"; _tap_cleanup' EXIT
    for sub in monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat; do
        kimg convert -f raw -O vmdk -o subformat=$sub full.raw small/d.vmdk
        err_line "$sub, a full filesystem"
        like "$(< "$T/err")" "space" "$sub, a full filesystem: says so"
        is "$(left small)" "" "$sub, a full filesystem: no file left"
    done
else
    for i in 1 2 3 4 5 6 7 8 9; do skip "full filesystem" "needs root to mount a tmpfs"; done
fi

# SIGTERM while the extents are written (a slow NBD source)
if command -v nbdkit > /dev/null && nbdkit --dump-plugin file > /dev/null 2>&1; then
    truncate -s $((3 * GiB)) slow.raw
    # "data" every 48 MiB (one process, not 64 dd)
    $PY -c '
import sys
with open(sys.argv[1], "r+b") as f:
    for i in range(64):
        f.seek(i * 48 << 20); f.write(b"data")' slow.raw
    nbdkit -U "$T/s.sock" -P "$T/nbd.pid" --filter=delay file slow.raw rdelay=200ms
    trap 'kill "$(< "$T/nbd.pid")" 2> /dev/null; umount "$T/small" 2> /dev/null; _tap_cleanup' EXIT
    rm -rf g; mkdir g
    "$KIMG" convert -f raw -O vmdk -o subformat=twoGbMaxExtentSparse \
        "nbd+unix:///?socket=$T/s.sock" g/d.vmdk > /dev/null 2>&1 &
    pid=$!
    for i in $(seq 1 200); do
        [ "$(ls -A g | grep -c kimg-)" -ge 3 ] && break
        nap 0.01
    done
    sleep 0.3
    kill -TERM $pid; rc=0; wait $pid || rc=$?
    if [ $rc = 0 ]; then
        skip "SIGTERM midway" "the copy ended first"; skip "x" "ended first"
    else
        is "$rc" 143 "SIGTERM midway: ends by the signal"
        is "$(left g)" "" "SIGTERM midway: no file left"
    fi
else
    skip "SIGTERM midway" "no nbdkit"; skip "x" "no nbdkit"
fi

done_testing
