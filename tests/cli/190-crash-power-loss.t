#!/bin/bash
# The crash tests again under the power-failure model: KIMG_CRASH_LOSE
# (img/crash.c) makes every simulated crash also lose a random subset of
# the changes not yet synced, so an update whose ordering relies on
# unflushed writes landing in order fails here even when a plain kill
# (the crash tests' own model) cannot show it.  Each *-crash.t test runs
# whole with one seed; its own assertions (check clean or leaks only, old
# or new content) must all hold.  A crash test whose command runs with
# cache=unsafe (no syncs, so no promise across a power failure, as with
# qemu-img) says so with a line "# crash-model: kill-only" and is skipped;
# one that already runs seeds of its own says "# crash-model: power-failure".
# It reruns every crash test, two at a time (KIMG_CRASH_JOBS), at the
# crash points KIMG_TEST_PART gives (lib.sh crash_next), so it belongs to
# `make check-slow`, which runs it with KIMG_CRASH_SEED set for each of
# SLOW_SEEDS, check's points under the first seed and the rest under the
# second; `make check` (and its sanitizer run) skips it.
. "$(dirname "$0")/lib.sh"
[ -n "${KIMG_CRASH_SEED:-}" ] || skip_all "make check-slow runs it (KIMG_CRASH_SEED=N)"
seed=$KIMG_CRASH_SEED
diag "KIMG_CRASH_LOSE=$seed (set KIMG_CRASH_SEED to choose)"
jobs=${KIMG_CRASH_JOBS:-2}
mkdir res
for t in "$KIMG_SRC"/tests/cli/*-crash.t; do
    grep -q -e '^# crash-model: kill-only' -e '^# crash-model: power-failure' "$t" && continue
    name=$(basename "$t")
    # each test in its own folder: lib.sh makes a fresh $T under $TMPDIR
    ( rc=0; KIMG_CRASH_LOSE=$seed bash "$t" > "res/$name.out" 2>&1 || rc=$?
      echo "$rc" > "res/$name.rc" ) &
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
done
wait
for t in "$KIMG_SRC"/tests/cli/*-crash.t; do
    name=$(basename "$t")
    if grep -q '^# crash-model: kill-only' "$t"; then
        skip "$name" "cache=unsafe: no promise across a power failure"
        continue
    fi
    if grep -q '^# crash-model: power-failure' "$t"; then
        skip "$name" "runs power-failure seeds itself"
        continue
    fi
    if [ "$(cat "res/$name.rc")" = 0 ] && ! grep -q '^not ok' "res/$name.out"; then
        pass "$name under power-failure crashes (seed $seed, $KIMG_TEST_PART points)"
    else
        fail "$name under power-failure crashes (seed $seed, $KIMG_TEST_PART points)" \
            "$(grep -E '^(not ok|#)' "res/$name.out" | head -20)"
    fi
done
done_testing
