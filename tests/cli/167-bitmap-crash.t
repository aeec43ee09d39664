#!/bin/bash
# kimg bitmap is crash-safe: each operation (add, remove, clear, enable,
# merge across granularities, merge from another file, the last bitmap
# removed, the first one added) killed before each of its file changes in
# turn (KIMG_CRASH_AFTER=N, N = 0, 1, ... until it finishes), then under
# the power-failure model (KIMG_CRASH_LOSE, unsynced changes lost in any
# subset): every crashed image passes qemu-img check (leaks allowed), its
# content is untouched, and its bitmaps are exactly the old set or the new
# one (names, flags, granularities and dirty regions, decoded
# independently by tests/cli/qcow2_bitmaps.py).
# make check: each operation once, alternately under kills and under power
# failures (seed 1), with check's crash points (lib.sh crash_next);
# check-slow: those cases' other crash points, and each operation under
# its other model(s) with every crash point.
. "$(dirname "$0")/lib.sh"
# (qcow2_bitmaps.py needs no site-packages: python -S starts sooner)
BMPY="$PY -S $KIMG_SRC/tests/cli/qcow2_bitmaps.py"
SEEDS=${KIMG_CRASH_SEED:-1}

mk() {
    rm -f "$1"
    qemu-img create -q -f qcow2 "$1" 4M &&
    qemu-img bitmap --add "$1" b0 &&
    qemu-img bitmap --add -g 512 "$1" fine &&
    qemu-io -f qcow2 -c "write -P 0x12 128k 4k" -c "write -P 0x13 3M 70k" "$1" > /dev/null &&
    qemu-img bitmap --add -g 1M --disable "$1" off &&
    qemu-io -f qcow2 -c "write -P 0x14 1000 100" "$1" > /dev/null
}
mk base.qcow2 || { echo "Bail out! qemu-img made no base"; exit 1; }
qemu-img create -q -f qcow2 src.qcow2 4M
qemu-img bitmap --add src.qcow2 sb
qemu-io -f qcow2 -c "write -P 0x21 512k 8k" src.qcow2 > /dev/null
qemu-img create -q -f qcow2 one.qcow2 4M
qemu-img bitmap --add one.qcow2 only
qemu-io -f qcow2 -c "write -P 0x31 1M 1k" one.qcow2 > /dev/null
qemu-img create -q -f qcow2 none.qcow2 4M

# crashes NAME IMG ENV... -- KIMG-ARGS...
crashes() {
    local name=$1 img=$2 envs=() n=0 bad= rc r h seen=" " uniq=0
    shift 2
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    cp "$img" "$img.orig"
    local before after
    before=$($BMPY all "$img" 2>&1)
    env "${envs[@]}" "$KIMG" "$@" > /dev/null 2>&1 || { fail "$name: the command itself"; return; }
    after=$($BMPY all "$img" 2>&1)
    isnt "$after" "$before" "$name: the operation changes the bitmaps"
    while [ $n -lt 300 ]; do
        cp "$img.orig" "$img"
        rc=0; env "${envs[@]}" KIMG_CRASH_AFTER=$n "$KIMG" "$@" > /dev/null 2> err || rc=$?
        [ $rc -eq 0 ] && break
        if [ $rc -ne 222 ]; then bad+=" [$n: exit $rc $(head -1 err)]"; break; fi
        # (a state's digest: one md5sum, not sha's sha256sum and cut; the
        # next point through a file, not a subshell)
        h=$(md5sum < "$img"); h=${h%% *}
        if [[ $seen == *" $h "* ]]; then crash_next $n > next; n=$(< next); continue; fi
        seen+="$h "; uniq=$((uniq + 1))
        r=0; qemu-img check "$img" > chk 2>&1 || r=$?
        if [ $r -ne 0 ] && [ $r -ne 3 ]; then
            bad+=" [$n: check exit $r: $(grep -v -e '^Leaked' -e '^$' chk | head -2 | tr '\n' ' ')]"
        elif ! qemu_oracle_compare "$img" "$img.orig"; then
            bad+=" [$n: content changed]"
        else
            r=$($BMPY all "$img" 2>&1)
            [ "$r" != "$before" ] && [ "$r" != "$after" ] &&
                bad+=" [$n: bitmaps neither old nor new: $(head -2 <<< "$r" | tr '\n' ' ')]"
        fi
        crash_next $n > next; n=$(< next)
    done
    is "$bad" "" "$name: crash points to $n ($uniq states): clean or leaks, old or new set"
    ok "$name: finishes after the last crash point" test "$rc" -eq 0
    is "$($BMPY all "$img" 2>&1)" "$after" "$name: finished as the uninterrupted run"
}

# model_case M NAME IMG ENV... -- ARGS: an operation under its M-th crash
# model (0: kills, 1: KIMG_CRASH_LOSE with the first seed, ...).  make
# check runs it (its crash points; check-slow the others) when M is the
# operation's number (ops) modulo 2; otherwise check-slow runs it, every
# crash point (no part of it in check)
ops=0
model_case() {
    local m=$1; shift
    if [ "$m" = $((ops % 2)) ]; then crashes "$@"
    elif [ "$KIMG_TEST_PART" != quick ]; then KIMG_TEST_PART=all crashes "$@"; fi
}
# op TEMPLATE NAME KIMG-ARGS...: the operation on a copy of TEMPLATE
# (t.qcow2), under each crash model
op() {
    local m=0 seed lose s tpl=$1; shift
    for seed in "" $SEEDS; do
        lose=(); [ -n "$seed" ] && lose=(KIMG_CRASH_LOSE=$seed)
        s=${seed:+, lose seed $seed}
        cp "$tpl" t.qcow2; model_case $m "$1$s" t.qcow2 "${lose[@]}" -- "${@:2}"
        m=$((m + 1))
    done
    ops=$((ops + 1))
}
op base.qcow2 "add" bitmap --add -g 4k t.qcow2 new
op base.qcow2 "remove" bitmap --remove t.qcow2 fine
op base.qcow2 "clear" bitmap --clear t.qcow2 b0
op base.qcow2 "enable" bitmap --enable t.qcow2 off
op base.qcow2 "merge fine into 1M" bitmap --merge fine t.qcow2 off
op base.qcow2 "merge from another file" bitmap --merge sb -b src.qcow2 t.qcow2 fine
op one.qcow2 "remove the last bitmap" bitmap --remove t.qcow2 only
op none.qcow2 "add the first bitmap" bitmap --add t.qcow2 first
done_testing
