#!/bin/bash
# Crashes (KIMG_CRASH_AFTER=N: the process dies before its (N+1)-th file
# change) at every point of a convert:
# - a new target: no file ever appears under the final name, and an
#   existing file of that name keeps its content;
# - -n into an existing qcow2 with parallel data writes (-m 16): the image
#   checks clean or with leaks only (a cluster is linked only after its
#   data is written), and every cluster reads as its old or its new
#   content.
# crash-model: kill-only (the -n runs use cache=unsafe, which never syncs)
. "$(dirname "$0")/lib.sh"
size=$((6 * 1024 * 1024))
qemu-img create -q -f raw src.raw $size
qemu-io -f raw -c 'write -P 0x61 0 1M' -c 'write -P 0x62 2M 64k' -c 'write -P 0x63 3M 1536k' \
    -c 'write -P 0x64 5M 100k' src.raw > /dev/null
head -c 300000 /dev/urandom | dd of=src.raw bs=4096 seek=300 conv=notrunc status=none
echo "keep me" > keep.qcow2
crashes=0 bad_name=0 bad_keep=0 final=""
for n in $(seq 0 400); do
    RC=0; KIMG_CRASH_AFTER=$n "$KIMG" convert -m 16 -f raw -O qcow2 src.raw new.qcow2 2> /dev/null || RC=$?
    RC2=0; KIMG_CRASH_AFTER=$n "$KIMG" convert -m 16 -f raw -O qcow2 src.raw keep.qcow2 2> /dev/null || RC2=$?
    if [ "$RC" = 222 ]; then
        crashes=$((crashes + 1))
        [ -e new.qcow2 ] && bad_name=$((bad_name + 1))
    fi
    if [ "$RC2" = 222 ] && [ "$(cat keep.qcow2)" != "keep me" ]; then bad_keep=$((bad_keep + 1)); fi
    if [ "$RC" != 222 ]; then final=$RC; break; fi
    rm -f .new.qcow2.kimg-* .keep.qcow2.kimg-*   # what a crash leaves behind
done
ok "new target: the convert crashed at $crashes points before it finished" test "$crashes" -ge 5
is "$final" 0 "new target: the run without a crash succeeds"
is "$bad_name" 0 "new target: no file under the final name after any crash"
is "$bad_keep" 0 "an existing file of the target's name is untouched after any crash"
ok "the finished target reads as the source" qemu_oracle_compare src.raw new.qcow2

# -n: an existing image with old data in some of the clusters; 512-byte
# clusters and data spread over 5 MiB touch 160 L2 tables, more than the
# L2 cache holds, so tables are written back in the middle of the run
size=$((5 * 1024 * 1024))
qemu-img create -q -f raw nsrc.raw $size
cmds=()
for i in $(seq 0 159); do cmds+=(-c "write -P $((i % 200 + 1)) $((i * 32768 + 8192)) 4096"); done
qemu-io -f raw "${cmds[@]}" -c 'write -P 0x71 1M 1M' nsrc.raw > /dev/null
head -c 100000 /dev/urandom | dd of=nsrc.raw bs=4096 seek=700 conv=notrunc status=none
qemu-img create -q -f qcow2 -o cluster_size=512 old.qcow2 $size
# (old data right after fresh clusters: zeroing it frees clusters and
# writes L2 tables back while the fresh clusters' data is still pending;
# the freed clusters, stale data in them, are reused for the fresh ones)
qemu-io -c 'write -P 0xf1 0 2M' -c 'write -P 0xf2 2176k 64k' -c 'write -P 0xf3 3M 1M' \
    old.qcow2 > /dev/null
qemu-img convert -O raw old.qcow2 old.raw
# every point up to 60, then every 7th (the run makes several hundred
# file changes; each point costs a check and a comparison)
points() { seq 0 60; seq 67 7 5000; }
cat > same.py <<'PYEOF'
import sys
old, new, got = (open(f, "rb").read() for f in sys.argv[1:4])
cs = 512
for i in range(0, len(got), cs):
    g = got[i:i + cs]
    if g != old[i:i + cs] and g != new[i:i + cs]:
        sys.exit(1)
PYEOF
for m in 1 16; do
    crashes=0 bad_check=0 bad_data=0 final=""
    for n in $(points); do
        cp old.qcow2 t.qcow2
        RC=0; KIMG_CRASH_AFTER=$n "$KIMG" convert -n -m $m -f raw -O qcow2 nsrc.raw t.qcow2 2> /dev/null || RC=$?
        if [ "$RC" != 222 ]; then final=$RC; break; fi
        crashes=$((crashes + 1))
        QRC=0; qemu-img check -q t.qcow2 > /dev/null 2>&1 || QRC=$?
        if [ "$QRC" != 0 ] && [ "$QRC" != 3 ]; then bad_check=$((bad_check + 1)); diag "-m $m N=$n: check exit $QRC"; fi
        qemu-img convert -O raw t.qcow2 t.raw
        $PY same.py old.raw nsrc.raw t.raw || { bad_data=$((bad_data + 1)); diag "-m $m N=$n: a cluster neither old nor new"; }
    done
    ok "-n -m $m: the convert crashed at $crashes points before it finished" test "$crashes" -ge 20
    is "$final" 0 "-n -m $m: the run without a crash succeeds"
    is "$bad_check" 0 "-n -m $m: after every crash qemu-img check reports clean or leaks only"
    is "$bad_data" 0 "-n -m $m: after every crash each cluster holds its old or its new content"
    ok "-n -m $m: the finished image reads as the source" qemu_oracle_compare nsrc.raw t.qcow2
    ok "-n -m $m: and checks clean" check_clean t.qcow2
done
done_testing
