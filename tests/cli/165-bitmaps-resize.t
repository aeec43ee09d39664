#!/bin/bash
# resize of an image with persistent dirty bitmaps, as qemu-img 7.2: the
# bitmaps follow the new size (a grown area clean, bits past a shrunk end
# dropped, tables of the new size), checked on twins (kimg in k.qcow2,
# qemu-img in q.qcow2; 4 KiB clusters so tables span several clusters;
# granularity 512, 64k, 1M and a disabled bitmap) for grow, shrink to an
# unaligned size and shrink then grow back: qemu-img check clean, content
# and dirty regions (qemu-nbd -B, nbdinfo --map) and bitmap list as
# qemu-img's.  An in-use bitmap is refused as qemu-img refuses it.  Crashes
# at every file change of a grow and of a shrink (KIMG_CRASH_AFTER=N, then
# KIMG_CRASH_LOSE seeds 1 and 2): qemu-img check exits 0 or 3, the image
# reads as before (old size) or as after (new size), and the bitmaps are
# either all marked in-use or consistent with regions as before or as
# after.  commit -d into a smaller base with bitmaps grows the base and
# keeps its bitmaps (regions as qemu-img's).
# crash-model: power-failure
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/bitmap-nbd.sh"
require qemu-nbd nbdinfo

dirty() {
    nbdinfo --map="qemu:dirty-bitmap:$2" -- [ qemu-nbd -r -f qcow2 -B "$2" "$1" ] 2>&1 |
        awk '$3 == 1 { print $1, $2; next } $3 != 0 { print "?", $0 }'
}
bitmaps() {
    qemu-img info --output=json "$1" | $PY -c 'import json,sys; d=json.load(sys.stdin)
bm=d.get("format-specific",{}).get("data",{}).get("bitmaps",[])
print(" ".join("%s:%s:%s" % (b["name"], b["granularity"], ",".join(b["flags"])) for b in bm))'
}
NAMES="b0 g512 g1M off"

qemu-img create -q -f qcow2 -o cluster_size=4096 orig.qcow2 40M &&
qemu-io -f qcow2 -c "write -P 0x61 0 1M" orig.qcow2 > /dev/null &&
qemu-img bitmap --add orig.qcow2 off &&
qemu-io -f qcow2 -c "write -P 0x62 30M 64k" orig.qcow2 > /dev/null &&
qemu-img bitmap --disable orig.qcow2 off &&
qemu-img bitmap --add orig.qcow2 b0 &&
qemu-img bitmap --add -g 512 orig.qcow2 g512 &&
qemu-img bitmap --add -g 1M orig.qcow2 g1M &&
qemu-io -f qcow2 -c "write -P 0x63 2M 64k" -c "write -P 0x64 5000 10" \
    -c "write -P 0x65 17M 3M" -c "write -P 0x66 22020608 4096" \
    -c "write -P 0x67 40956k 4k" orig.qcow2 > /dev/null ||
    { fail "qemu-img made the image"; done_testing; }
like "$(bitmaps orig.qcow2)" "^off:4096: b0:4096:auto g512:512:auto g1M:1048576:auto$" \
    "the image has the four bitmaps"

twin() {    # twin NAME ARGS...: kimg and qemu-img resize copies of orig
    local name=$1; shift
    cp orig.qcow2 k.qcow2; cp orig.qcow2 q.qcow2
    kimg resize -q k.qcow2 "$@"
    is "$RC" 0 "$name: exit 0"
    qemu-img resize -q q.qcow2 "$@"
    ok "$name: qemu-img check clean" check_clean k.qcow2
    ok "$name: content as qemu-img's" qemu_oracle_compare -s k.qcow2 q.qcow2
    state k.qcow2 > k.state; state q.qcow2 > q.state
    is_file k.state q.state "$name: bitmaps and dirty regions as qemu-img's"
}
twin "grow +20M" +20M
twin "shrink to 21000192" --shrink 21000192
twin "shrink to 1M" --shrink 1M
cp orig.qcow2 k.qcow2; cp orig.qcow2 q.qcow2
kimg resize -q --shrink k.qcow2 17M; kimg resize -q k.qcow2 60M
is "$RC" 0 "shrink then grow: exit 0"
qemu-img resize -q --shrink q.qcow2 17M; qemu-img resize -q q.qcow2 60M
ok "shrink then grow: qemu-img check clean" check_clean k.qcow2
ok "shrink then grow: content as qemu-img's" qemu_oracle_compare -s k.qcow2 q.qcow2
state k.qcow2 > k.state; state q.qcow2 > q.state
is_file k.state q.state "shrink then grow: nothing past the old end comes back dirty"

# an in-use bitmap: refused, as qemu-img refuses it
cp orig.qcow2 u.qcow2
( qemu-io -f qcow2 -c "write -P 0x71 0 4k" -c abort u.qcow2 || true ) > /dev/null 2>&1
like "$(bitmaps u.qcow2)" "^off:4096:in-use b0:4096:in-use,auto" "u.qcow2 has in-use bitmaps"
sum=$(sha u.qcow2)
kimg resize -q u.qcow2 +1M
qimg resize -q u.qcow2 +1M
is "$RC:$QRC" "1:1" "in-use bitmap: both refuse"
like "$(< "$T/err")" "$(head -1 "$T/qerr" | sed 's/^qemu-img: //')" "in-use bitmap: qemu-img's message"
is "$(sha u.qcow2)" "$sum" "in-use bitmap: image unchanged"

# crashes
crash_loop() {  # crash_loop NAME SEED ARGS...
    local name=$1 seed=$2; shift 2
    cp orig.qcow2 q.qcow2; qemu-img resize -q q.qcow2 "$@"
    local oldsz newsz n=0 rc bad=0 lose=()
    state orig.qcow2 > old.state; oldsz=$SZ; state q.qcow2 > new.state; newsz=$SZ
    [ -n "$seed" ] && lose=(KIMG_CRASH_LOSE=$seed)
    while [ $n -lt 400 ]; do
        cp orig.qcow2 c.qcow2
        rc=0; env ${lose[@]+"${lose[@]}"} KIMG_CRASH_AFTER=$n "$KIMG" resize -q c.qcow2 "$@" > /dev/null 2> err || rc=$?
        [ "$rc" -eq 0 ] && break
        if [ "$rc" -ne 222 ]; then diag "N=$n: exit $rc: $(< err)"; bad=1; break; fi
        local crc=0; qemu-img check c.qcow2 > chk 2>&1 || crc=$?
        if [ "$crc" -ne 0 ] && [ "$crc" -ne 3 ]; then diag "N=$n: check exit $crc"; diag "$(< chk)"; bad=1; break; fi
        local sz want bl
        info_of c.qcow2; sz=$SZ; bl=$BL
        if [ "$sz" = "$oldsz" ]; then want=orig.qcow2; else want=q.qcow2; fi
        if [ "$sz" != "$oldsz" ] && [ "$sz" != "$newsz" ]; then diag "N=$n: size $sz"; bad=1; break; fi
        if ! qemu-img compare -q c.qcow2 $want; then diag "N=$n: content differs from $want"; bad=1; break; fi
        if [[ "$bl" == *in-use* ]]; then
            local iu=${bl//in-use/@}; iu=${iu//[^@]/}
            if [ "${#iu}" -ne 4 ]; then diag "N=$n: some in use: $bl"; bad=1; break; fi
        else
            state_known c.qcow2 > c.state
            if ! cmp -s c.state old.state && ! cmp -s c.state new.state; then
                diag "N=$n: consistent bitmaps neither old nor new"; diag "$(diff c.state new.state)"; bad=1; break
            fi
            if [ "$sz" = "$oldsz" ] && [ "$oldsz" != "$newsz" ] && ! cmp -s c.state old.state; then
                diag "N=$n: new bitmaps at the old size"; bad=1; break
            fi
            if [ "$sz" = "$newsz" ] && [ "$oldsz" != "$newsz" ] && ! cmp -s c.state new.state; then
                diag "N=$n: old bitmaps at the new size"; bad=1; break
            fi
        fi
        if [ "$every" = 1 ]; then n=$((n + 1)); else n=$(crash_next $n); fi
    done
    [ "$rc" -eq 0 ] || bad=1
    if [ $bad -eq 0 ]; then
        check_clean c.qcow2 && state c.qcow2 > c.state && cmp -s c.state new.state || bad=1
    fi
    is "$bad" 0 "$name${seed:+ (lose seed $seed)}: $n crash points, each old or new; finished as qemu-img"
}
every=0
if [ "$KIMG_TEST_PART" = quick ]; then
    # make check: each direction once, one under each crash model
    crash_loop "crash: grow +20M" "" +20M
    crash_loop "crash: shrink to 21000192" 1 --shrink 21000192
else
    # check-slow: both directions, three models; what check ran at the
    # points check skips, the rest at every point
    for seed in "" 1 2; do
        every=1; [ "$KIMG_TEST_PART" = rest ] && [ -z "$seed" ] && every=0
        crash_loop "crash: grow +20M" "$seed" +20M
        every=1; [ "$KIMG_TEST_PART" = rest ] && [ "$seed" = 1 ] && every=0
        crash_loop "crash: shrink to 21000192" "$seed" --shrink 21000192
    done
fi

# commit into a smaller base with bitmaps: the base grows, bitmaps kept
mkdir k q
for d in k q; do
    cp orig.qcow2 $d/base.qcow2
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 $d/top.qcow2 48M
    qemu-io -f qcow2 -c "write -P 0x81 44M 1M" -c "write -P 0x82 4M 4k" $d/top.qcow2 > /dev/null
done
cd k; kimg commit -q -d top.qcow2; cd "$T"; is "$RC" 0 "commit -d into a smaller base: exit 0"
(cd q && qemu-img commit -q -d top.qcow2)
ok "commit: base check clean" check_clean k/base.qcow2
ok "commit: base content as qemu-img's" qemu_oracle_compare -s k/base.qcow2 q/base.qcow2
state k/base.qcow2 > k.state; state q/base.qcow2 > q.state
is_file k.state q.state "commit: base bitmaps and dirty regions as qemu-img's"
done_testing
