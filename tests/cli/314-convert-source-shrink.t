#!/bin/bash
# 314-convert-source-shrink.t — a source file truncated while an engine
# reads it in place (img/srcmap.c, one policy for every engine): the run
# ends with a one-line error naming the change, never exits 0 with zeros
# where the data was, and is never killed by SIGBUS.
# Both ways an engine gets source data: read into its buffers (the
# default) and mapped (KIMG_MAP_SOURCES=1, where a shrunk file faults).
# Deterministic part: KIMG_TEST_MAP_PAUSE=FILE stops the first mapping
# made until FILE is removed, KIMG_TEST_OPEN_PAUSE the first image opened;
# the test truncates the source meanwhile.
# Racy part (as 604-checksum-shrink.t): a convert that does succeed must
# have copied the data the source held, byte for byte (before, a source
# truncated mid-run gave exit 0 and zeros, or a "Bad address" write error).
# make check: the deterministic part, and half the racy runs (lib.sh
# sampled: the first, read, and the last, mapped: both ways); check-slow
# the other two racy runs.
. "$(dirname "$0")/lib.sh"
# 26 deterministic tests and a test per racy run (2 of 4 in check and in
# check-slow)
if [ "$KIMG_TEST_PART" = all ]; then plan 30; else plan 28; fi

MiB=$((1024 * 1024))
pattern() { yes kimg-convert-source-data | head -c "$1"; }

# paused NAME CMD...: run CMD with the pause hook (HOOK, default the first
# mapping); truncate the source (src.raw) once the hook is reached; $RC,
# $T/err as `run`
paused() {
    local name=$1; shift
    rm -f pause
    env "${HOOK:-KIMG_TEST_MAP_PAUSE}=$T/pause" timeout 60 "$@" > out 2> err < /dev/null & local pid=$!
    local i=0
    while [ ! -e pause ] && [ $i -lt 1000 ] && kill -0 "$pid" 2> /dev/null; do
        nap 0.01; i=$((i + 1))
    done
    ok "$name: the pause point was reached" test -e pause
    truncate -s 0 src.raw
    rm -f pause
    RC=0; wait "$pid" || RC=$?
}

# mapped: cut once the first mapping is made
export KIMG_MAP_SOURCES=1
for target in raw qcow2; do
    pattern $((16 * MiB)) > src.raw
    rm -f out.$target
    paused "raw -> $target" "$KIMG" convert -f raw -O $target src.raw out.$target
    err_line "raw -> $target, source truncated mid-run"
    like "$(< err)" "changed size" "raw -> $target: the message says the source changed size"
    ok "raw -> $target: no output left behind" test ! -e out.$target
done

# a qcow2 source: its clusters are mapped from the qcow2 file
pattern $((16 * MiB)) > data.raw
qemu-img convert -f raw -O qcow2 data.raw src.qcow2
cp src.qcow2 src.raw        # the file the hook's truncation hits
paused "qcow2 -> raw" "$KIMG" convert -f qcow2 -O raw src.raw out.raw
err_line "qcow2 -> raw, source truncated mid-run"

# checksum takes the same path (one policy)
pattern $((16 * MiB)) > src.raw
paused "checksum" "$KIMG" checksum -U -f raw src.raw
err_line "checksum, source truncated mid-run"
unset KIMG_MAP_SOURCES

# read (the default): cut between the source's open and the copy's start
# (before, the source was then taken as all holes: exit 0 and zeros)
for target in raw qcow2; do
    pattern $((16 * MiB)) > src.raw
    rm -f out.$target
    HOOK=KIMG_TEST_OPEN_PAUSE paused "cut after the open, raw -> $target" \
        "$KIMG" convert -f raw -O $target src.raw out.$target
    err_line "raw -> $target, source cut right after its open"
    like "$(< err)" "changed size" "cut after the open, raw -> $target: the message says the source changed size"
    ok "cut after the open, raw -> $target: no output left behind" test ! -e out.$target
done
cp src.qcow2 src.raw
HOOK=KIMG_TEST_OPEN_PAUSE paused "cut after the open, qcow2 -> raw" \
    "$KIMG" convert -f qcow2 -O raw src.raw out.raw
err_line "qcow2 -> raw, source cut right after its open"
pattern $((16 * MiB)) > src.raw
HOOK=KIMG_TEST_OPEN_PAUSE paused "cut after the open, checksum" "$KIMG" checksum -U -f raw src.raw
err_line "checksum, source cut right after its open"
pattern $((16 * MiB)) > src.raw
HOOK=KIMG_TEST_OPEN_PAUSE paused "cut after the open, compare" \
    "$KIMG" compare -f raw -F raw src.raw data.raw
err_line "compare, source cut right after its open"

# racy: a large source truncated after a while; exit 0 only with the data
# (the 256 MiB pattern made once: each run's source is a copy of it)
pattern $((256 * MiB)) > big.raw
errors=0 bad=0
map=1
for delay in 0.05 0.1 0.15 0.25; do
    map=$((1 - map))        # read, mapped, read, mapped
    sampled || continue
    cp big.raw src.raw
    rm -f out.raw
    KIMG_MAP_SOURCES=$map "$KIMG" convert -U -f raw -O raw src.raw out.raw > out 2> err < /dev/null & pid=$!
    sleep "$delay"
    truncate -s 0 src.raw
    RC=0; wait "$pid" || RC=$?
    if [ "$RC" -eq 0 ]; then
        # finished first (whole copy) or opened after the truncation (empty)
        if [ "$(stat -c %s out.raw)" -eq 0 ] || cmp -s big.raw out.raw; then
            pass "truncated after ${delay}s: exit 0 with the source's data"
        else
            fail "truncated after ${delay}s: exit 0 with the source's data" \
                "exit 0 but out.raw differs from what the source held (zeros copied?)"
            bad=$((bad + 1))
        fi
    else
        # one line, naming the source's change (not a write error on the
        # target: a kernel copy from the shrunk mapping fails EFAULT)
        ok "truncated after ${delay}s: exit $RC, one line saying the source changed size" \
            eval '[ "$RC" -lt 128 ] && [ "$(grep -c "" err)" = 1 ] && grep -q "^kimg: .*changed size" err'
        errors=$((errors + 1))
    fi
done
diag "racy runs: $errors stopped with an error, $bad silently wrong"
rm -f src.raw out.raw data.raw big.raw
done_testing
