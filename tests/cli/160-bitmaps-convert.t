#!/bin/bash
# convert -n into qcow2 images with persistent dirty bitmaps keeps them as
# qemu-img convert -n does: on twins (kimg, qemu-img) of a target holding
# an in-use bitmap, a disabled one and enabled ones of granularity 512, 64k
# (default), 1M and 2G, the same convert -n (full, --target-is-zero,
# compressed, qcow2 source; 64k, 512-byte and 2M clusters, extended L2, a
# raw external data file, a 1 GiB target whose bitmap spans many bitmap
# clusters, 20 bitmaps whose directory spans two clusters) leaves the dirty regions qemu
# exports (qemu-nbd -B, nbdinfo --map) equal to those after qemu-img's, the
# bitmap list (names, granularities, flags: no new "in-use") as qemu-img
# info shows it after qemu-img's, the disabled bitmap's regions and the
# in-use bitmap's table untouched, qemu-img check clean, the content equal.
# Then qemu-io writes on kimg's result (qemu reads, rewrites and frees
# kimg's bitmap clusters) and a second kimg convert -n (kimg reads its own):
# still clean, regions as expected.
# make check: a third of the convert -n matrix (full, qcow2 source,
# extended L2; lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/bitmap-nbd.sh"
require qemu-nbd nbdinfo
BMPY="$PY $KIMG_SRC/tests/cli/qcow2_bitmaps.py"

# dirty IMG NAME: the dirty ranges qemu exports, "start length" per line
dirty() {
    nbdinfo --map="qemu:dirty-bitmap:$2" -- [ qemu-nbd -r -f qcow2 -B "$2" "$1" ] 2>&1 |
        awk '$3 == 1 { print $1, $2; next } $3 != 0 { print "?", $0 }'
}
# same_dirty NAME-PREFIX BITMAP...: k.qcow2's regions as q.qcow2's, each
same_dirty() {
    local pre=$1 n; shift
    dirty_each k.qcow2 dk "$@"; dirty_each q.qcow2 dq "$@"
    for n; do is "$(< "dk.${n// /_}")" "$(< "dq.${n// /_}")" "$pre '$n' $SUFFIX"; done
}
# bitmaps2 A B: the bitmap lists of A and B as bitmaps prints them, into
# $T/bl.a and $T/bl.b (two qemu-img info, one python)
bitmaps2() {
    qemu-img info --output=json "$1" > "$T/i.a"
    qemu-img info --output=json "$2" > "$T/i.b"
    $PY -S -c 'import json,sys
for t in "ab":
    try:
        d = json.load(open(sys.argv[1] + "/i." + t))
        bm = d.get("format-specific",{}).get("data",{}).get("bitmaps",[])
        out = " ".join("%s:%s:%s" % (b["name"].replace(" ","_"), b["granularity"], ",".join(b["flags"])) for b in bm)
    except ValueError as e:
        out = "INVALID JSON: %s" % e
    open(sys.argv[1] + "/bl." + t, "w").write(out)' "$T"
}
# bitmaps IMG: "name:granularity:flags" per bitmap as qemu-img info lists them
bitmaps() {
    qemu-img info --output=json "$1" | $PY -c 'import json,sys; d=json.load(sys.stdin)
bm=d.get("format-specific",{}).get("data",{}).get("bitmaps",[])
print(" ".join("%s:%s:%s" % (b["name"].replace(" ","_"), b["granularity"], ",".join(b["flags"])) for b in bm))'
}
ENABLED=("b0" "g 512" "g1M" "g2G")

# mk IMG SIZE [CREATE-OPTS]: an in-use bitmap "used", a disabled "off" with
# content, the enabled ones, data written by qemu-io after each step
mk() {
    local img=$1 size=$2
    rm -f "$img"
    qemu-img create -q -f qcow2 ${3:+-o "$3"} "$img" "$size" &&
    qemu-img bitmap --add "$img" used &&
    { ( qemu-io -f qcow2 -c "write -P 0x11 0 64k" -c abort "$img" || true ) > /dev/null 2>&1; } &&
    qemu-img bitmap --add "$img" off &&
    qemu-io -f qcow2 -c "write -P 0x12 128k 4k" "$img" > /dev/null &&
    qemu-img bitmap --disable "$img" off &&
    qemu-img bitmap --add "$img" b0 &&
    qemu-img bitmap --add -g 512 "$img" "g 512" &&
    qemu-img bitmap --add -g 1M "$img" g1M &&
    qemu-img bitmap --add -g 2G "$img" g2G &&
    qemu-io -f qcow2 -c "write -P 0x13 2M 64k" -c "write -P 0x14 1000 100" "$img" > /dev/null
}

# twins NAME IMG-SIZE CREATE-OPTS SOURCE CONVERT-ARGS...: the same convert -n
# into copies of one target by both tools, then compare.  twins is one case
# of the sampled matrix; twins_each runs in each part.
twins() {
    sampled || return 0         # check: a third of the matrix; check-slow: the rest
    twins_each "$@"
}
twins_each() {
    local name=$1 size=$2 copts=$3 src=$4; shift 4
    local base="base-$size-$copts.qcow2"
    [ -f "$base" ] || mk "$base" "$size" "$copts" || { fail "$name: qemu-img made the target"; return; }
    cp "$base" base.qcow2; cp base.qcow2 k.qcow2; cp base.qcow2 q.qcow2
    local used0 n
    dirty_each base.qcow2 d0 off; used0=$($BMPY table base.qcow2 used)
    kimg convert -n "$@" "$src" k.qcow2
    is "$RC" 0 "$name: kimg convert -n exits 0" || diag "$(head -3 "$T/err")"
    qemu-img convert -n "$@" "$src" q.qcow2 || { fail "$name: qemu-img convert -n"; return; }
    ok "$name: content as after qemu-img's" qemu_oracle_compare k.qcow2 q.qcow2
    ok "$name: qemu-img check clean" check_clean k.qcow2
    bitmaps2 k.qcow2 q.qcow2
    is "$(< "$T/bl.a")" "$(< "$T/bl.b")" "$name: bitmap list and flags as after qemu-img's"
    like "$(< "$T/bl.a")" "^used:[0-9]+:in-use,auto off:[0-9]+: b0:[0-9]+:auto g_512:512:auto g1M:1048576:auto g2G:2147483648:auto$" \
        "$name: only 'used' is in use"
    # (k.qcow2's server exports the disabled bitmap too)
    dirty_each k.qcow2 dk "${ENABLED[@]}" off; dirty_each q.qcow2 dq "${ENABLED[@]}"
    for n in "${ENABLED[@]}"; do
        is "$(< "dk.${n// /_}")" "$(< "dq.${n// /_}")" "$name: '$n' dirty regions as after qemu-img's"
    done
    is "$(< dk.off)" "$(< d0.off)" "$name: disabled bitmap unchanged"
    is "$($BMPY table k.qcow2 used)" "$used0" "$name: in-use bitmap's table unchanged"
}

truncate -s 4M src.raw
qemu-io -f raw -c "write -P 0x21 1M 4k" -c "write -P 0x22 3000 10" -c "write -P 0x23 3M 300k" \
    -c "write -P 0x24 4190000 4304" src.raw > /dev/null
qemu-img create -q -f qcow2 src.qcow2 4M
qemu-io -f qcow2 -c "write -P 0x31 64k 64k" -c "write -P 0x32 1500k 1k" -c "write -z 2M 64k" \
    src.qcow2 > /dev/null

twins "full" 4M "" src.raw -f raw -O qcow2
twins "target-is-zero" 4M "" src.raw --target-is-zero -f raw -O qcow2
# (compressed writes go to clusters the target does not hold yet: qemu-img
# fails on the others)
truncate -s 4M srcz.raw
qemu-io -f raw -c "write -P 0x25 1M 4k" -c "write -P 0x26 3M 300k" srcz.raw > /dev/null
twins "compressed" 4M "" srcz.raw -c --target-is-zero -f raw -O qcow2
twins "qcow2 source" 4M "" src.qcow2 -f qcow2 -O qcow2
twins "512-byte clusters" 4M cluster_size=512 src.raw -f raw -O qcow2
twins "2M clusters" 4M cluster_size=2M src.raw --target-is-zero -f raw -O qcow2
twins "extended L2" 4M extended_l2=on,cluster_size=128k src.raw --target-is-zero -f raw -O qcow2

# qemu takes over kimg's result (the matrix's last case run): reads
# kimg's tables (all-ones entries too), writes, stores, frees kimg's clusters
qemu-io -f qcow2 -c "write -P 0x41 3968k 4k" k.qcow2 > /dev/null
qemu-io -f qcow2 -c "write -P 0x41 3968k 4k" q.qcow2 > /dev/null
ok "qemu-io after kimg: check clean" check_clean k.qcow2
SUFFIX="as after qemu-img's" same_dirty "qemu-io after kimg:" "${ENABLED[@]}"

# kimg twice in a row (kimg reads what it stored) against qemu-img twice
twins_each "first of two" 4M "" src.qcow2 -f qcow2 -O qcow2
kimg convert -n --target-is-zero -f raw -O qcow2 src.raw k.qcow2
is "$RC" 0 "second kimg convert -n exits 0"
qemu-img convert -n --target-is-zero -f raw -O qcow2 src.raw q.qcow2
ok "second kimg convert -n: check clean" check_clean k.qcow2
bitmaps2 k.qcow2 q.qcow2
is "$(< "$T/bl.a")" "$(< "$T/bl.b")" "second kimg convert -n: bitmaps as qemu-img's"
SUFFIX="as after qemu-img's" same_dirty "second kimg convert -n:" "${ENABLED[@]}"
check_oracle "kimg check of kimg's result" k.qcow2

# a raw external data file (one per twin)
for t in k q; do
    rm -f $t.qcow2 $t-data.raw
    qemu-img create -q -f qcow2 -o data_file=$t-data.raw,data_file_raw=on $t.qcow2 4M
    qemu-img bitmap --add -g 4k $t.qcow2 b4k
    qemu-img bitmap --add $t.qcow2 b0
done
kimg convert -n --target-is-zero -f raw -O qcow2 src.raw k.qcow2
is "$RC" 0 "external data file: kimg convert -n exits 0"
qemu-img convert -n --target-is-zero -f raw -O qcow2 src.raw q.qcow2
ok "external data file: check clean" check_clean k.qcow2
ok "external data file: content as after qemu-img's" qemu_oracle_compare k.qcow2 q.qcow2
SUFFIX="as after qemu-img's" same_dirty "external data file:" b4k b0

# a 1 GiB target with 512-byte clusters: the 512-byte-granularity bitmap
# takes 512 bitmap clusters and an 8-cluster table; scattered writes
rm -f big.raw; truncate -s 1G big.raw
qemu-io -f raw -c "write -P 0x51 0 512" -c "write -P 0x52 300M 64k" -c "write -P 0x53 700M 1536" \
    -c "write -P 0x54 1073741312 512" big.raw > /dev/null
for t in k q; do
    rm -f $t.qcow2
    qemu-img create -q -f qcow2 -o cluster_size=512 $t.qcow2 1G
    qemu-img bitmap --add -g 512 $t.qcow2 fine
    qemu-img bitmap --add $t.qcow2 b0
done
is "$($BMPY table k.qcow2 fine | wc -l)" 512 "1 GiB target: 512 bitmap table entries"
kimg convert -n --target-is-zero -f raw -O qcow2 big.raw k.qcow2
is "$RC" 0 "1 GiB target: kimg convert -n exits 0"
qemu-img convert -n --target-is-zero -f raw -O qcow2 big.raw q.qcow2
ok "1 GiB target: check clean" check_clean k.qcow2
ok "1 GiB target: content as after qemu-img's" qemu_oracle_compare k.qcow2 q.qcow2
SUFFIX="as after qemu-img's" same_dirty "1 GiB target:" fine b0
is "$(bitmaps k.qcow2)" "fine:512:auto b0:4096:auto" "1 GiB target: bitmaps consistent"

# 20 bitmaps on 512-byte clusters: the directory spans two clusters
for t in k q; do
    rm -f $t.qcow2
    qemu-img create -q -f qcow2 -o cluster_size=512 $t.qcow2 4M
done
for i in $(seq 10 29); do qemu-img bitmap --add -g $((512 << (i % 7))) k.qcow2 bitmap-$i; done
cp k.qcow2 q.qcow2
is "$($BMPY ext k.qcow2 | cut -d' ' -f1-2)" "20 800" "20 bitmaps: an 800-byte directory"
kimg convert -n --target-is-zero -f raw -O qcow2 src.raw k.qcow2
is "$RC" 0 "20 bitmaps: kimg convert -n exits 0"
qemu-img convert -n --target-is-zero -f raw -O qcow2 src.raw q.qcow2
ok "20 bitmaps: check clean" check_clean k.qcow2
is "$($BMPY all k.qcow2)" "$($BMPY all q.qcow2)" "20 bitmaps: all flags and regions as after qemu-img's"
is "$(dirty k.qcow2 bitmap-17)" "$(dirty q.qcow2 bitmap-17)" "20 bitmaps: one read back through qemu-nbd"
done_testing
