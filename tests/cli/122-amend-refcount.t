#!/bin/bash
# amend -o refcount_bits, against qemu-img amend on twins: small-cluster
# images at several widths, the 4-bit fixture at every width, a choice of
# 64k-cluster ones; refused with qemu-img's message where a cluster's
# refcount does not fit (snapshots, compressed clusters sharing a host
# cluster) or on v2.  Same exit code and stdout, kimg's image clean, the
# same qemu-img info (refcount bits included), content and map (host
# offsets aside).  qemu-img takes a second per 64k-cluster image (minutes
# for 2M clusters), so every other fixture goes to 1 and 64 bits checked
# against itself: clean, the new width, the same content.
# make check: a third of the width matrix (each of its images once) and a
# fifth of the kimg-alone fixture cases (lib.sh sampled), the refusals and
# single cases all; check-slow the rest.
. "$(dirname "$0")/lib.sh"
fixtures
. "$KIMG_SRC/tests/cli/twins.sh"

. "$KIMG_SRC/tests/cli/twins-once.sh"

amend_case() {
    local img=$1 o=$2 name="amend -o $2 $1" q1
    twins "$img"
    # (each tool from inside its folder, where qemu opens a data file;
    # cd by the shell itself: a subshell's fork costs ~5 ms here)
    cd "$T/q"; QRC=0; qemu-img amend -o "$o" "$img" > ../qout 2> ../qerr || QRC=$?
    cd "$T/k"; RC=0; "$KIMG" amend -o "$o" "$img" > ../out 2> ../err || RC=$?
    cd "$T"
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || { diag "kimg: $(< err) qemu-img: $(< qerr)"; return; }
    same_text out qout "$name: stdout as qemu-img's"
    if [ "$QRC" -ne 0 ]; then
        err_line "$name"
        # qemu-img's message (its first line, "qemu-img: " off) within kimg's
        IFS= read -r q1 < qerr || true; q1=${q1#qemu-img: }
        case $q1 in "Could not open"*) ;; *)
            if [[ $(< err) == *"$q1"* ]]; then pass "$name: qemu-img's message"
            else fail "$name: qemu-img's message" "got: $(< err)" "expected within: $q1"; fi ;;
        esac
        ok "$name: image unchanged" cmp -s k/"$img" "$FX/$img"
        return
    fi
    cd "$T/k"
    ok "$name: qemu-img check clean" check_clean "$img"
    qemu-img info --output=json "$img" > ../ki.json 2> /dev/null
    qemu-img map --output=json "$img" > ../km.json
    cd "$T/q"
    qemu-img info --output=json "$img" > ../qi.json 2> /dev/null
    qemu-img map --output=json "$img" > ../qm.json
    cd "$T"
    local drop=actual-size,offset
    [ -e "q/${img%.qcow2}.data" ] && drop=$drop,zero   # the data file's holes: host layout
    PY="$PY -S" json_norm_files $drop qi.json ki.json qm.json km.json   # (json and sys: no site-packages)
    same_text ki.json.norm qi.json.norm "$name: qemu-img info as for qemu-img's amend"
    same_text km.json.norm qm.json.norm "$name: map as for qemu-img's amend (host layout aside)"
    # (qemu-img compare, or of the flattened images for a data file;
    # the virtual size is info's)
    same_content "$name" "$img"
}
# self_case IMG BITS: kimg alone (qemu-img is too slow there)
self_case() {
    local img=$1 bits=$2 name="amend -o refcount_bits=$2 $1 (kimg alone)"
    twins "$img"
    cd "$T/k"; RC=0; "$KIMG" amend -o refcount_bits="$bits" "$img" > ../out 2> ../err || RC=$?
    is "$RC" 0 "$name: exit 0" || diag "$(< ../err)"
    ok "$name: qemu-img check clean" check_clean "$img"
    cd "$T"
    like "$(qemu-img info --output=json k/"$img")" "\"refcount-bits\": $bits," "$name: refcount bits $bits"
    if [ -e "k/${img%.qcow2}.data" ]; then
        # (qemu opens a data file relative to the cwd: flattened apart)
        (cd k && qemu-img convert -O raw "$img" ../k.raw); (cd "$FX" && qemu-img convert -O raw "$img" "$T/o.raw")
        ok "$name: content unchanged" cmp -s k.raw o.raw
        rm -f k.raw o.raw
    else
        # (not "Warning: Image size mismatch!" either)
        is "$(qemu-img compare k/"$img" "$FX/$img" 2>&1)" "Images are identical." "$name: content unchanged"
    fi
}

# against qemu-img: the small-cluster images at several widths, and a
# choice of 64k-cluster ones (qemu-img takes a second for each of those)
for img in cs512.qcow2 cs4k.qcow2 zlib-4k.qcow2 amend-rb4.qcow2 grown.qcow2; do
    for bits in 1 2 8 64; do
        sampled || continue     # check: a third of the cases; check-slow: the rest
        amend_case "$img" refcount_bits=$bits
    done
done
for bits in 4 16 32; do
    sampled || continue
    amend_case amend-rb4.qcow2 refcount_bits=$bits
done
amend_case v3.qcow2 refcount_bits=1
amend_case snap.qcow2 refcount_bits=1       # refused: shared clusters
amend_case snap.qcow2 refcount_bits=2
amend_case zlib.qcow2 refcount_bits=1       # refused: compressed clusters share
amend_case wcomp.qcow2 refcount_bits=1
amend_case lazy-dirty.qcow2 refcount_bits=8
amend_case v2.qcow2 refcount_bits=16
amend_case v2.qcow2 refcount_bits=8          # refused: v2
# every other fixture: kimg alone, to 1 and 64 bits
for img in $(fixture_names qcow2); do
    case " cs512.qcow2 cs4k.qcow2 zlib-4k.qcow2 amend-rb4.qcow2 grown.qcow2 v2.qcow2 zlib.qcow2 \
          zstd.qcow2 wcomp.qcow2 snap.qcow2 chain2-base.qcow2 chain2-top.qcow2 amend-v2.qcow2 \
          corrupt-bit.qcow2 " in
    *" $img "*) continue ;;
    esac
    for bits in 1 64; do
        # check: a fifth of this long list of like cases (an odd stride:
        # both widths, every 5th fixture); check-slow: the rest
        sampled 5 || continue
        self_case "$img" "$bits"
    done
done
done_testing
