#!/bin/bash
# amend -o compat, against qemu-img amend on twins: every fixture made by
# qemu-img taken to compat=0.10 (refused with qemu-img's message for what
# v2 cannot hold: other refcount widths, data files, extended L2, zstd
# with compressed clusters, snapshots of another size), v2 images taken
# to 1.1 (with lazy refcounts and another width at once), and made images:
# zero clusters (plain and allocated) over a backing file and shared with
# a snapshot, v2 snapshots without the extra data v3 needs.  Same exit
# code and stdout, kimg's image clean, the same qemu-img info (host
# allocation aside), content and map (host offsets aside).
# make check: a quarter of the fixtures down to v2 (every kind of
# refusal among them) and a third of the v2 images up (lib.sh sampled),
# the made images all; check-slow the rest.
. "$(dirname "$0")/lib.sh"
fixtures

twins_src=$T/src
. "$KIMG_SRC/tests/cli/twins-once.sh"
# amend_case IMG OPTIONS: both tools on twins (images in src/)
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
        # qemu-img's message (its first line, "qemu-img: " off) within
        # kimg's (open errors are worded kimg's way)
        IFS= read -r q1 < qerr || true; q1=${q1#qemu-img: }
        case $q1 in "Could not open"*) ;; *)
            if [[ $(< err) == *"$q1"* ]]; then pass "$name: qemu-img's message"
            else fail "$name: qemu-img's message" "got: $(< err)" "expected within: $q1"; fi ;;
        esac
        ok "$name: image unchanged" cmp -s k/"$img" "src/$img"
        return
    fi
    cd "$T/k"
    ok "$name: qemu-img check clean" check_clean "$img"
    qemu-img info --output=json "$img" > ../ki.json 2> /dev/null
    qemu-img map --output=json "$img" > ../km.json
    cd "$T/q"
    qemu-img info --output=json "$img" > ../qi.json 2> /dev/null
    qemu-img map --output=json "$img" > ../qm.json 2> /dev/null
    cd "$T"
    # (a v2 image has no zero clusters: map's "zero" there is the host
    # file's holes, which the file system decides)
    local drop=actual-size,offset
    case "$o" in *compat=0.10*|*compat=v2*) drop=$drop,zero ;; esac
    PY="$PY -S" json_norm_files $drop qi.json ki.json qm.json km.json   # (json and sys: no site-packages)
    same_text ki.json.norm qi.json.norm "$name: qemu-img info as for qemu-img's amend"
    same_text km.json.norm qm.json.norm "$name: map as for qemu-img's amend (host layout aside)"
    same_content "$name" "$img"
}

mkdir src
ln -s "$FX"/* src/
# (made first: twins links every image of src/ at its first call)
# made images: zero clusters of both kinds over a backing file, in L2
# tables shared with a snapshot; the snapshot of another size; a v2
# snapshot table without extra data
qemu-img create -q -f raw src/zb.raw 4M
qemu-io -f raw -c "write -P 0x11 0 4M" src/zb.raw > /dev/null
qemu-img create -q -f qcow2 -b zb.raw -F raw src/zt.qcow2
qemu-io -f qcow2 -c "write -P 0x22 0 256k" -c "write -z 64k 64k" -c "write -z -u 1M 128k" \
    -c "write -z 3M 64k" src/zt.qcow2 > /dev/null
cp src/zt.qcow2 src/zts.qcow2
qemu-img snapshot -c s1 src/zts.qcow2
qemu-io -f qcow2 -c "write -z -u 2M 64k" src/zts.qcow2 > /dev/null
qemu-img create -q -f qcow2 src/nb.qcow2 4M
qemu-io -f qcow2 -c "write -P 0x33 0 1M" -c "write -z 0 64k" -c "write -z -u 512k 64k" \
    src/nb.qcow2 > /dev/null
qemu-img snapshot -c s1 src/nb.qcow2
cp src/nb.qcow2 src/grown-snap.qcow2
qemu-img resize -q src/grown-snap.qcow2 8M
# v2 snapshot entries cut to no extra data (as older writers left them)
qemu-img create -q -f qcow2 -o compat=0.10 src/v2sn.qcow2 4M
qemu-io -f qcow2 -c "write -P 0x44 0 1M" src/v2sn.qcow2 > /dev/null
qemu-img snapshot -c first src/v2sn.qcow2
qemu-img snapshot -c second src/v2sn.qcow2
$PY - src/v2sn.qcow2 <<'PYEOF'
import struct, sys
p = sys.argv[1]
d = bytearray(open(p, "rb").read())
n, off = struct.unpack(">IQ", d[60:72])
out, pos = bytearray(), off
for i in range(n):
    h = d[pos:pos + 40]
    extra = struct.unpack(">I", h[36:40])[0]
    idl, nl = struct.unpack(">HH", h[12:16])
    rest = d[pos + 40 + extra:pos + 40 + extra + idl + nl]
    e = bytearray(h[:36]) + struct.pack(">I", 0) + rest
    e += b"\0" * (-len(e) % 8)
    out += e
    pos += 40 + extra + idl + nl
    pos += -pos % 8
d[off:off + len(out)] = out
open(p, "wb").write(d)
PYEOF
ok "v2 snapshots without extra data: qemu-img check clean" check_clean src/v2sn.qcow2

# every fixture down to v2 (corrupt-bit: both refuse to open it).
# check: a quarter of the fixtures, check-slow the rest; ordered so that
# check's quarter (this loop's calls 1, 5, 9...: the file's first sampled
# loop) takes a v2 and a v3 image and each kind of refusal or repair
# (refcount width, extended L2, zstd, data file, dirty, corrupt) first
reps_first 4 "v2.qcow2 v3.qcow2 rb4.qcow2 el2.qcow2 zstd.qcow2 datafile.qcow2 lazy-dirty.qcow2 corrupt-bit.qcow2" \
    $(fixture_names qcow2)
for img in "${order[@]}"; do
    sampled 4 || continue
    amend_case "$img" compat=0.10
done
# (the options rotate from one image to the next: a third of the cases
# still takes each image and each option)
up=(compat=1.1 compat=v3,lazy_refcounts=on compat=1.1,refcount_bits=4) r=0
for img in v2.qcow2 chain2-top.qcow2 amend-v2.qcow2; do
    for i in 0 1 2; do
        sampled || continue
        amend_case "$img" "${up[(i + r) % 3]}"
    done
    r=$((r + 1))
done
amend_case v3.qcow2 compat=v2
amend_case zero.qcow2 compat=0.10,lazy_refcounts=off

for img in zt.qcow2 zts.qcow2 nb.qcow2 grown-snap.qcow2; do   # (each the only one of its kind: all)
    amend_case "$img" compat=0.10
done
amend_case v2sn.qcow2 compat=1.1
for sn in first second; do
    qemu-img convert -l "$sn" -O raw q/v2sn.qcow2 q.raw; qemu-img convert -l "$sn" -O raw k/v2sn.qcow2 k.raw
    ok "v2sn.qcow2 up: snapshot '$sn' as in qemu-img's" cmp -s k.raw q.raw
done
done_testing
