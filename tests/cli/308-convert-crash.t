#!/bin/bash
# Crashes (KIMG_CRASH_AFTER=N: the process dies before its (N+1)-th file
# change) at every point of a convert:
# - a new target: no file ever appears under the final name, and an
#   existing file of that name keeps its content;
# - -n into an existing qcow2 with parallel data writes (-m 16): the image
#   checks clean or with leaks only (a cluster is linked only after its
#   data is written), and every cluster reads as its old or its new
#   content;
# - -n into an overlay whose backing file has data everywhere, every L2
#   table present, and the data writes held back (KIMG_CONVERT_WRITE_LAG)
#   while the main thread writes L2 tables back: a cluster linked before
#   its data is written would read as zeros, neither old nor new (a build
#   that links first fails here; without the overlay it passed).
# crash-model: kill-only (the -n runs use cache=unsafe, which never syncs)
. "$(dirname "$0")/lib.sh"
size=$((6 * 1024 * 1024))
qemu-img create -q -f raw src.raw $size
qemu-io -f raw -c 'write -P 0x61 0 1M' -c 'write -P 0x62 2M 64k' -c 'write -P 0x63 3M 1536k' \
    -c 'write -P 0x64 5M 100k' src.raw > /dev/null
head -c 300000 /dev/urandom | dd of=src.raw bs=4096 seek=300 conv=notrunc status=none
echo "keep me" > keep.qcow2
crashes=0 bad_name=0 bad_keep=0 final=""
for n in $(crash_points 400); do
    RC=0; KIMG_CRASH_AFTER=$n "$KIMG" convert -m 16 -f raw -O qcow2 src.raw new.qcow2 2> /dev/null || RC=$?
    RC2=0; KIMG_CRASH_AFTER=$n "$KIMG" convert -m 16 -f raw -O qcow2 src.raw keep.qcow2 2> /dev/null || RC2=$?
    if [ "$RC" = 222 ]; then
        crashes=$((crashes + 1))
        [ -e new.qcow2 ] && bad_name=$((bad_name + 1))
    fi
    if [ "$RC2" = 222 ] && [ "$(< keep.qcow2)" != "keep me" ]; then bad_keep=$((bad_keep + 1)); fi
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
# old.qcow2: no backing file; ov.qcow2: the same old data over a backing
# file with data everywhere, so a cluster linked before its data is
# written reads as zeros there, which is neither its old content (the
# backing file's) nor its new one (data), plus a cluster at the start of
# every L2 table's range so the tables that get fresh clusters are on
# disk already (a new table is reachable only once the run links it)
qemu-img create -q -f raw bk.raw $size
qemu-io -f raw -c "write -P 0xb5 0 $size" bk.raw > /dev/null
qemu-img create -q -f qcow2 -o cluster_size=512 old.qcow2 $size
qemu-img create -q -f qcow2 -o cluster_size=512 -b bk.raw -F raw ov.qcow2 $size
# (old data right after fresh clusters: zeroing it frees clusters and
# writes L2 tables back while the fresh clusters' data is still pending;
# the freed clusters, stale data in them, are reused for the fresh ones)
every=()
for i in $(seq 64 159); do every+=(-c "write -P 0xf4 $((i * 32768)) 512"); done
qemu-io -c 'write -P 0xf1 0 2M' -c 'write -P 0xf2 2176k 64k' -c 'write -P 0xf3 3M 1M' \
    old.qcow2 > /dev/null
qemu-io -c 'write -P 0xf1 0 2M' -c 'write -P 0xf2 2176k 64k' -c 'write -P 0xf3 3M 1M' \
    "${every[@]}" ov.qcow2 > /dev/null
for img in old ov; do qemu-img convert -O raw $img.qcow2 $img.raw; done
# points FIRST STEP: every point up to FIRST, then every STEP-th (the run
# makes several hundred file changes; each point costs a check and a
# comparison)
# (make check: lib.sh crash_points' sample, 0 to 3, 12 and doubling;
# make check-slow, KIMG_TEST_PART=rest or all: as given)
points() {
    local first=$1 step=$2
    if [ "$KIMG_TEST_PART" = quick ]; then crash_points 5000; return; fi
    seq 0 $first; seq $((first + step)) $step 5000
}
# same.py runs once per scenario (a coprocess): for each line "OLD NEW GOT"
# it answers "ok" if every 512-byte cluster of GOT is OLD's or NEW's, or "bad"
cat > same.py <<'PYEOF'
import sys
cs = 512
for line in sys.stdin:
    old, new, got = (open(f, "rb").read() for f in line.split())
    bad = any(got[i:i + cs] != old[i:i + cs] and got[i:i + cs] != new[i:i + cs]
              for i in range(0, len(got), cs))
    print("bad" if bad else "ok", flush=True)
PYEOF
# crash_n IMAGE M LAG FIRST STEP: crash convert -n -m M into a copy of IMAGE
# at the points, parallel data writes held back until LAG more jobs are
# planned
crash_n() {
    local img=$1 m=$2 lag=$3 name="-n -m $2 into ${1%.qcow2}" crashes=0 bad_check=0 bad_data=0 final=""
    [ "$lag" = 0 ] || name+=" (writes lag $lag jobs)"
    coproc SAME { $PY -u same.py; }
    for n in $(points $4 $5); do
        cp $img t.qcow2
        RC=0; KIMG_CONVERT_WRITE_LAG=$lag KIMG_CRASH_AFTER=$n "$KIMG" convert -n -m $m -f raw -O qcow2 \
            nsrc.raw t.qcow2 2> /dev/null || RC=$?
        if [ "$RC" != 222 ]; then final=$RC; break; fi
        crashes=$((crashes + 1))
        QRC=0; qemu-img check -q t.qcow2 > /dev/null 2>&1 || QRC=$?
        if [ "$QRC" != 0 ] && [ "$QRC" != 3 ]; then bad_check=$((bad_check + 1)); diag "$name N=$n: check exit $QRC"; fi
        qemu-img convert -O raw t.qcow2 t.raw
        echo "${img%.qcow2}.raw nsrc.raw t.raw" >&"${SAME[1]}"
        verdict=; read -r verdict <&"${SAME[0]}"
        [ "$verdict" = ok ] || { bad_data=$((bad_data + 1)); diag "$name N=$n: a cluster neither old nor new ($verdict)"; }
    done
    exec {SAME[1]}>&-
    wait "$SAME_PID"
    ok "$name: the convert has $n change points (crashed at $crashes) before it finished" test "$n" -ge 50
    is "$final" 0 "$name: the run without a crash succeeds"
    is "$bad_check" 0 "$name: after every crash qemu-img check reports clean or leaks only"
    is "$bad_data" 0 "$name: after every crash each cluster holds its old or its new content"
    ok "$name: the finished image reads as the source" qemu_oracle_compare nsrc.raw t.qcow2
    ok "$name: and checks clean" check_clean t.qcow2
}
crash_n old.qcow2 1 0 60 7
crash_n old.qcow2 16 0 30 17
crash_n ov.qcow2 16 8 30 9
done_testing
