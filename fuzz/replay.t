#!/bin/bash
# replay.t — replay every fuzz corpus without libFuzzer (run by prove from
# the repo root in `make check`).  For each target fuzz/fuzz_NAME.c, runs
# $KIMG_BUILD/fuzz/replay_fuzz_NAME over fuzz/corpus/fuzz_NAME (every file,
# sorted) and prints one TAP line: ok if the replay ran every input to the
# end; not ok with the end of its stderr (the sanitizer report, and the
# "replay: FILE" line naming the input) if it crashed, hung or aborted.
# KIMG_FUZZ_TIMEOUT (seconds per input, default 60) is passed through.
set -u
export LC_ALL=C
src=${KIMG_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
build=${KIMG_BUILD:-$src/build}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kimg-replay.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# A failed replay should not leave core files behind; sanitizers report, then die.
ulimit -c 0
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

targets=()
for f in "$src"/fuzz/fuzz_*.c; do
    [ -e "$f" ] || continue
    t=${f##*/}
    targets+=("${t%.c}")
done
if [ ${#targets[@]} -eq 0 ]; then
    echo "1..0 # SKIP no fuzz targets"
    exit 0
fi
echo "1..${#targets[@]}"

n=0
for t in "${targets[@]}"; do
    n=$((n + 1))
    bin=$build/fuzz/replay_$t
    corpus=$src/fuzz/corpus/$t
    if [ ! -x "$bin" ]; then
        echo "not ok $n - $t: $bin not built"
        continue
    fi
    if [ ! -d "$corpus" ]; then
        echo "ok $n - $t # SKIP no corpus in fuzz/corpus/$t"
        continue
    fi
    "$bin" "$corpus" > "$tmp/out" 2> "$tmp/err"
    rc=$?
    plan=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$tmp/out" | head -1)
    oks=$(grep -c '^ok ' "$tmp/out")
    bad=$(grep -c '^not ok' "$tmp/out")
    if [ "$rc" -eq 0 ] && [ -n "$plan" ] && [ "$oks" -eq "$plan" ] && [ "$bad" -eq 0 ]; then
        echo "ok $n - $t: $oks inputs"
    else
        echo "not ok $n - $t: exit $rc after ${oks}/${plan:-?} inputs"
        grep '^not ok' "$tmp/out" | sed 's/^/# /'
        last=$(grep '^replay: ' "$tmp/err" | tail -1)
        [ -n "$last" ] && echo "# last input: ${last#replay: }"
        grep -v '^replay: ' "$tmp/err" | tail -40 | sed 's/^/#   /'
    fi
done
