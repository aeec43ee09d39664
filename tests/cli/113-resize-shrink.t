#!/bin/bash
# resize --shrink on qcow2, against qemu-img on twins: every fixture shrunk
# (cluster-aligned and not) keeps exit code, stdout, qemu-img info, map
# (host offsets aside) and content of qemu-img's result, is clean, and its
# file is no longer than qemu-img's (the clusters past the new end, the L2
# tables and refcount blocks left unused are freed and the file is cut, as
# qemu does; kimg allocates no L2 table to discard nothing, so it may end
# sooner).  v3 images with snapshots shrink and keep their snapshots; v2
# images with snapshots are refused as qemu-img refuses them.  Growing
# again reads zeros where the dropped data was.
# make check: a quarter of the fixtures shrunk to 1M (one of each kind)
# and a third of those shrunk to an unaligned size (lib.sh sampled);
# check-slow the rest.
. "$(dirname "$0")/lib.sh"
fixtures
. "$KIMG_SRC/tests/cli/twins.sh"
. "$KIMG_SRC/tests/cli/twins-once.sh"

# shrink IMG SIZE: both tools, then compare
shrink() {
    local img=$1 size=$2 name="resize --shrink $1 $2"
    twins "$img"
    # (each tool from inside its folder, where qemu opens a data file;
    # cd by the shell itself: a subshell's fork costs ~5 ms here)
    cd "$T/q"; QRC=0; qemu-img resize --shrink "$img" -- "$size" > ../qout 2> ../qerr || QRC=$?
    cd "$T/k"; RC=0; "$KIMG" resize --shrink "$img" -- "$size" > ../out 2> ../err || RC=$?
    cd "$T"
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || { diag "kimg: $(< err) qemu-img: $(< qerr)"; return; }
    same_text out qout "$name: stdout as qemu-img's"
    [ "$QRC" -eq 0 ] || return 0
    local drop=actual-size,offset
    [ -e "q/${img%.qcow2}.data" ] && drop=$drop,zero
    twin_state "$name" "$img" "$drop" resize     # (kimg's image's check in kcheck)
    local qe ke sz
    cd "$T/q"; qemu-img check "$img" > ../qcheck 2> /dev/null; cd "$T"
    end_offset qe qcheck; end_offset ke kcheck
    ok "$name: image ends at $ke, not after qemu-img's $qe" test "${ke:-0}" -le "${qe:-0}"
    sz=($(stat -c %s k/"$img" q/"$img"))
    ok "$name: file no longer than qemu-img's" test "${sz[0]}" -le "${sz[1]}"
}

skip_list=" bitmaps.qcow2 bitmap-inuse.qcow2 corrupt-bit.qcow2 "
imgs=()
for img in $(fixture_names qcow2); do
    case "$skip_list" in *" $img "*) ;; *) imgs+=("$img") ;; esac
done
# check: a quarter of the fixtures, check-slow the rest; ordered so that
# check's quarter (the file's first sampled loop) takes one of each kind:
# v2, 512-byte and 2M clusters, 1-bit refcounts, dirty lazy refcounts,
# extended L2, compressed, snapshots, a backing file, preallocated, an
# odd size, a data file
reps_first 4 "v2.qcow2 cs512.qcow2 cs2M.qcow2 rb1.qcow2 lazy-dirty.qcow2 el2.qcow2 zlib.qcow2 snap.qcow2 \
    chain-top.qcow2 prealloc-full.qcow2 odd-2M.qcow2 datafile.qcow2" "${imgs[@]}"
for img in "${order[@]}"; do
    sampled 4 || continue
    shrink "$img" 1M
done
for img in v3.qcow2 v2.qcow2 cs512.qcow2 cs2M.qcow2 el2.qcow2 el2-2M.qcow2 zlib.qcow2 wcomp.qcow2 \
           grown.qcow2 snap.qcow2 datafile.qcow2 rb1.qcow2; do
    sampled || continue
    shrink "$img" $((2 * 1024 * 1024 + 1536))
done
shrink grown.qcow2 -63M
shrink v3.qcow2 512

# v3 with snapshots: the snapshots keep their content
twins snap.qcow2
"$KIMG" resize -q --shrink k/snap.qcow2 512k
qemu-img resize -q --shrink q/snap.qcow2 512k
for sn in first second; do
    qemu-img convert -l "$sn" -O raw q/snap.qcow2 q.raw
    qemu-img convert -l "$sn" -O raw k/snap.qcow2 k.raw
    ok "snap.qcow2 shrunk: snapshot '$sn' intact" cmp -s k.raw q.raw
done
rm -f q.raw k.raw

# v2 with snapshots: refused, unchanged, as qemu-img
qemu-img create -q -f qcow2 -o compat=0.10 v2snap.qcow2 4M
qemu-io -f qcow2 -c "write -P 0x11 0 1M" v2snap.qcow2 > /dev/null
qemu-img snapshot -c s1 v2snap.qcow2
cp v2snap.qcow2 v2snap.before
for args in "--shrink v2snap.qcow2 1M" "v2snap.qcow2 8M"; do
    oracle "v2 with snapshots: resize $args" resize $args
    err_line "v2 with snapshots: resize $args"
    like "$(< "$T/err")" "Can't resize a v2 image which has snapshots" "v2 with snapshots: qemu-img's message"
    ok "v2 with snapshots: unchanged" cmp -s v2snap.qcow2 v2snap.before
done

# shrunk and grown back: the dropped data reads as zeros (a whole cluster
# dropped: as qemu-img; the part of the last cluster past the new end:
# qemu-img shows the old bytes again, kimg zeros, as a raw file would)
qemu-img create -q -f qcow2 sg.qcow2 1M
qemu-io -f qcow2 -c "write -P 0x55 0 1M" sg.qcow2 > /dev/null
cp sg.qcow2 sgq.qcow2
"$KIMG" resize -q --shrink sg.qcow2 $((512 * 1024 - 512)); "$KIMG" resize -q sg.qcow2 1M
qemu-img resize -q --shrink sgq.qcow2 $((512 * 1024 - 512)); qemu-img resize -q sgq.qcow2 1M
ok "shrink+grow: clean" check_clean sg.qcow2
qemu-io -f qcow2 -c "read -P 0x55 0 $((512 * 1024 - 512))" -c "read -P 0 $((512 * 1024 - 512)) $((512 * 1024 + 512))" \
    sg.qcow2 > io.out 2>&1
# (read by bash: no "Pattern verification failed" line)
ok "shrink+grow: kept data intact, the rest zeros" eval '[[ $(< io.out) != *"Pattern verification failed"* ]]'
qemu-io -f qcow2 -c "read -P 0 512k 512k" sgq.qcow2 > io.out 2>&1
ok "shrink+grow: whole dropped clusters read zeros in qemu-img's too" eval '[[ $(< io.out) != *"Pattern verification failed"* ]]'
done_testing
