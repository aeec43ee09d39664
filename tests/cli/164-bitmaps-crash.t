#!/bin/bash
# A crash at every file change of a write into an image with persistent
# dirty bitmaps (KIMG_CRASH_AFTER=N, N = 0, 1, ... until the command
# finishes; then the power-failure model KIMG_CRASH_LOSE with seeds 1 and
# 2) never leaves a consistent-looking bitmap that misses a write: after
# each crash qemu-img check exits 0 or 3 (leaks only) and opens the bitmaps,
# every sector reads as before or as after, and each enabled bitmap is
# either marked in-use (inconsistent, qemu ignores its data) or consistent
# and then dirty wherever the content changed, still dirty where it was
# before, and dirty nowhere the finished command leaves clean.  The
# disabled bitmap stays consistent and unchanged, the in-use one in use.
# Commands: convert -n --target-is-zero -t writeback (default bitmap memory, and
# KIMG_BITMAP_MEM=1: the bitmaps are stored after every write, so crashes
# also fall inside stores between writes) and commit -d into a base.
# crash-model: power-failure
. "$(dirname "$0")/lib.sh"

cat > check.py <<'EOF'
# check.py ORIG.qcow2 ORIG.raw FINAL.qcow2 FINAL.raw CRASHED.qcow2 CRASHED.raw
# prints one line per problem
import sys
sys.path.insert(0, sys.argv[7])
from qcow2_bitmaps import Image

def bitset(img, e):
    gran = 1 << e["gran"]
    nbits = (img.size + gran - 1) // gran
    per = img.cs * 8
    out = set()
    for i, t in enumerate(img.table(e)):
        off = t & 0x00FFFFFFFFFFFE00
        for b in range(min(per, nbits - i * per)):
            if off:
                p = off + b // 8
                v = (img.d[p] >> (b % 8)) & 1 if p < len(img.d) else 0
            else:
                v = t & 1
            if v:
                out.add(i * per + b)
    return out

def entries(path):
    img = Image(path)
    return img, {e["name"]: e for e in img.entries()}

oi, oe = entries(sys.argv[1])
fi, fe = entries(sys.argv[3])
ci, ce = entries(sys.argv[5])
old, new, got = (open(sys.argv[i], "rb").read() for i in (2, 4, 6))
if len(got) != len(old):
    print("size", len(got))
for s in range(0, len(old), 512):
    g = got[s:s + 512]
    if g != old[s:s + 512] and g != new[s:s + 512]:
        print("sector %d neither old nor new" % s)
for name, e in ce.items():
    o = oe[name]
    if o["flags"] & 1:
        if not e["flags"] & 1:
            print(name, "in-use bitmap became consistent")
        continue
    if not o["flags"] & 2:
        if e["flags"] != o["flags"] or bitset(ci, e) != bitset(oi, o):
            print(name, "disabled bitmap changed")
        continue
    if e["flags"] & 1:
        continue                        # in use: inconsistent, fine
    bits, was, fin = bitset(ci, e), bitset(oi, o), bitset(fi, fe[name])
    g = 1 << e["gran"]
    changed = set(s // g for s in range(0, len(old), 512)
                  if got[s:s + 512] != old[s:s + 512])
    if changed - bits:
        print(name, "consistent but misses", sorted(changed - bits)[:5])
    if was - bits:
        print(name, "lost bits", sorted(was - bits)[:5])
    if bits - fin:
        print(name, "bits the finished command does not set", sorted(bits - fin)[:5])
EOF

# mk IMG: bitmaps "used" (in use), "off" (disabled), "b0", "g512", "g1M"
mk() {
    rm -f "$1"
    qemu-img create -q -f qcow2 "$1" 4M &&
    qemu-img bitmap --add "$1" used &&
    { ( qemu-io -f qcow2 -c "write -P 0x11 0 64k" -c abort "$1" || true ) > /dev/null 2>&1; } &&
    qemu-img bitmap --add "$1" off &&
    qemu-io -f qcow2 -c "write -P 0x12 128k 4k" "$1" > /dev/null &&
    qemu-img bitmap --disable "$1" off &&
    qemu-img bitmap --add "$1" b0 &&
    qemu-img bitmap --add -g 512 "$1" g512 &&
    qemu-img bitmap --add -g 1M "$1" g1M &&
    qemu-io -f qcow2 -c "write -P 0x13 2M 64k" -c "write -P 0x14 1000 100" "$1" > /dev/null
}

# crashes NAME IMG ENV... -- KIMG-ARGS...: IMG (in $T) as the target; orig
# copy in IMG.orig; runs until the command succeeds
crashes() {
    local name=$1 img=$2 envs=() n=0 bad= rc r h seen=" " uniq=0
    shift 2
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    cp "$img" "$img.orig"
    qemu-img convert -O raw "$img.orig" orig.raw
    env "${envs[@]}" "$KIMG" "$@" > /dev/null 2>&1 || { fail "$name: the command itself"; return; }
    cp "$img" final.qcow2; qemu-img convert -O raw final.qcow2 final.raw
    while [ $n -lt 400 ]; do
        cp "$img.orig" "$img"
        rc=0; env "${envs[@]}" KIMG_CRASH_AFTER=$n "$KIMG" "$@" > /dev/null 2> err || rc=$?
        [ $rc -eq 0 ] && break
        if [ $rc -ne 222 ]; then bad+=" [$n: exit $rc $(head -1 err)]"; break; fi
        # a state already checked (a crash right after a sync, say) once
        # (the digest: one md5sum, not sha's sha256sum and cut; the next
        # point through a file, not a subshell)
        h=$(md5sum < "$img"); h=${h%% *}
        if [[ $seen == *" $h "* ]]; then step $n > next; n=$(< next); continue; fi
        seen+="$h "; uniq=$((uniq + 1))
        r=0; qemu-img check "$img" > chk 2>&1 || r=$?
        if [ $r -ne 0 ] && [ $r -ne 3 ]; then
            bad+=" [$n: check exit $r: $(grep -v -e '^Leaked' -e '^$' chk | head -2 | tr '\n' ' ')]"
        elif ! qemu-img convert -O raw "$img" crashed.raw 2> err; then
            bad+=" [$n: unreadable: $(head -1 err)]"
        else
            # (check.py's first three lines, read by bash: no head and tr;
            # python -S: it needs no site-packages)
            $PY -S check.py "$img.orig" orig.raw final.qcow2 final.raw "$img" crashed.raw \
                "$KIMG_SRC/tests/cli" > cpy.out 2>&1
            local l i=0; r=
            while [ $i -lt 3 ] && { IFS= read -r l || [ -n "$l" ]; }; do r+="$l "; i=$((i + 1)); done < cpy.out
            [ -n "$r" ] && bad+=" [$n: $r]"
        fi
        step $n > next; n=$(< next)
    done
    is "$bad" "" "$name: crash points to $n ($uniq states): check clean or leaks, bitmaps in use or complete"
    ok "$name: finishes after the last crash point" test "$rc" -eq 0
    ok "$name: finished image clean" check_clean "$img"
}

truncate -s 4M src.raw
qemu-io -f raw -c "write -P 0x21 1M 4k" -c "write -P 0x22 3000 10" -c "write -P 0x23 3M 300k" \
    src.raw > /dev/null
mk t.qcow2 || { fail "qemu-img made the target"; done_testing; }
cp t.qcow2 t0.qcow2
# (-t writeback: convert's default cache=unsafe never syncs, so a power
# failure may lose anything, as with qemu-img)
CONV=(convert -n --target-is-zero -t writeback -f raw -O qcow2 src.raw t.qcow2)
# make check: each command once, the plain one under kills, the others
# under power failures (seed 1); check-slow every command under every model
# (a case check leaves out runs at every crash point in check-slow, not
# only at the points check skips: step)
quick() { [ "$KIMG_TEST_PART" = quick ]; }
every=0
step() { if [ $every = 1 ]; then echo $(($1 + 1)); else crash_next "$1"; fi; }
in_check() { every=0; [ "$KIMG_TEST_PART" = rest ] && [ "$1" = no ] && every=1; true; }
for seed in "" 1 2; do
    lose=(); [ -n "$seed" ] && lose=(KIMG_CRASH_LOSE=$seed)
    cp t0.qcow2 t.qcow2
    in_check "$([ -n "$seed" ] && echo no || echo yes)"
    quick && [ -n "$seed" ] ||
        crashes "convert -n${seed:+, lose seed $seed}" t.qcow2 "${lose[@]}" -- "${CONV[@]}"
    [ "$seed" = 2 ] && continue
    in_check "$([ "$seed" != 1 ] && echo no || echo yes)"
    quick && [ "$seed" != 1 ] && continue
    cp t0.qcow2 t.qcow2
    crashes "convert -n, a store per write${seed:+, lose seed $seed}" t.qcow2 KIMG_BITMAP_MEM=1 \
        "${lose[@]}" -- "${CONV[@]}"
done

# commit -d of an overlay into a base with bitmaps
mk base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -f qcow2 -c "write -P 0x31 100k 1k" -c "write -P 0x32 3M 64k" -c "write -z 1500k 8k" \
    top.qcow2 > /dev/null
cp base.qcow2 base0.qcow2
for seed in "" 1; do
    in_check "$([ "$seed" != 1 ] && echo no || echo yes)"
    quick && [ "$seed" != 1 ] && continue
    lose=(); [ -n "$seed" ] && lose=(KIMG_CRASH_LOSE=$seed)
    cp base0.qcow2 base.qcow2
    crashes "commit -d${seed:+, lose seed $seed}" base.qcow2 "${lose[@]}" -- \
        commit -d top.qcow2
done
done_testing
