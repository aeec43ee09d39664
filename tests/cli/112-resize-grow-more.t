#!/bin/bash
# resize: growing qcow2 fixtures by an unaligned amount (the old last
# cluster partial) and to 3 TiB (L1 growth), against qemu-img on twins as
# in 111; a grown image takes qemu-io writes in the new area and stays
# clean; an image with persistent bitmaps is resized as qemu-img resizes it.
. "$(dirname "$0")/lib.sh"
fixtures

# twins IMG: q/ and k/ hold links to every fixture (backing files) and
# their own copies of IMG and of the data file it writes.
twins() {
    rm -rf q k; mkdir q k
    ln -s "$FX"/* q/; ln -s "$FX"/* k/
    local f
    for f in "$1" "${1%.qcow2}.data"; do
        [ -e "$FX/$f" ] || continue
        cp --remove-destination "$FX/$f" q/"$f"; cp --remove-destination "$FX/$f" k/"$f"
    done
}

# grow IMG SIZE [OPTS...]
grow() {
    local img=$1 size=$2; shift 2
    local name="resize $* $img $size"
    twins "$img"
    QRC=0; (cd q && qemu-img resize "$@" "$img" "$size") > qout 2> qerr || QRC=$?
    RC=0; (cd k && "$KIMG" resize "$@" "$img" "$size") > out 2> err || RC=$?
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || { diag "kimg: $(cat err) qemu-img: $(cat qerr)"; return; }
    is_file out qout "$name: stdout as qemu-img's"
    [ "$QRC" -eq 0 ] || return 0
    # (from inside the folders: qemu opens a data file relative to the cwd)
    ok "$name: qemu-img check clean" eval '(cd k && check_clean "$img")'
    (cd q && qemu-img info --output=json "$img") > qi.json
    (cd k && qemu-img info --output=json "$img") > ki.json
    (cd q && qemu-img map --output=json "$img") > qm.json
    (cd k && qemu-img map --output=json "$img") > km.json
    # (a data file's holes decide map's "zero" there: host layout, dropped)
    local drop=actual-size,offset
    [ -e "q/${img%.qcow2}.data" ] && drop=$drop,zero
    json_norm_files $drop qi.json ki.json qm.json km.json
    is_file ki.json.norm qi.json.norm "$name: qemu-img info as for qemu-img's resize"
    is_file km.json.norm qm.json.norm "$name: map as for qemu-img's resize (host layout aside)"
    same_content "$name" "$img"
}

# same_content NAME IMG: k/IMG reads as q/IMG.  An image with a data file
# is flattened inside its folder first (qemu opens the data file relative
# to the cwd, so the two cannot be opened side by side).
same_content() {
    if [ -e "q/${2%.qcow2}.data" ]; then
        (cd q && qemu-img convert -O raw "$2" ../q.raw) && (cd k && qemu-img convert -O raw "$2" ../k.raw)
        ok "$1: content as qemu-img's" qemu_oracle_compare k.raw q.raw
        rm -f q.raw k.raw
    else
        ok "$1: content as qemu-img's" qemu_oracle_compare k/"$2" q/"$2"
    fi
}

# unaligned growth (the old last cluster is partial), a big jump, and
# growth past the L1 table's range for the small cluster sizes
for img in v2.qcow2 v3.qcow2 cs512.qcow2 cs2M.qcow2 el2.qcow2 el2-2M.qcow2 zlib.qcow2 \
           odd.qcow2 odd-2M.qcow2 snap.qcow2 datafile.qcow2 datafile-raw.qcow2 empty.qcow2; do
    grow "$img" +1536
done
for img in v3.qcow2 cs512.qcow2 el2.qcow2 snap.qcow2 rb1.qcow2 rb64.qcow2; do
    grow "$img" 3T
done

# kimg's grown image takes writes in the new area (qemu-io) and stays clean
twins cs4k.qcow2
"$KIMG" resize -q k/cs4k.qcow2 +100M
qemu-io -f qcow2 -c "write -P 0x77 $((100 * 1024 * 1024)) 64k" -c "write -P 0x78 4M 4k" k/cs4k.qcow2 > /dev/null
ok "grown image: clean after qemu-io writes" check_clean k/cs4k.qcow2
qemu-io -f qcow2 -c "read -P 0x77 $((100 * 1024 * 1024)) 64k" -c "read -P 0x11 0 4k" \
    k/cs4k.qcow2 > io.out 2>&1
is "$(grep -c 'Pattern verification failed' io.out)" 0 "grown image: data reads back"

# persistent bitmaps are resized along, as qemu-img does (details: 165)
twins bitmaps.qcow2
kimg resize k/bitmaps.qcow2 +1M
qimg resize q/bitmaps.qcow2 +1M
is "$RC:$QRC" "0:0" "bitmaps: resized by both"
ok "bitmaps: qemu-img check clean" check_clean k/bitmaps.qcow2
same_content "bitmaps" bitmaps.qcow2
done_testing
