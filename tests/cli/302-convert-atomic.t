#!/bin/bash
# A new target appears only when complete: a failing convert leaves no
# target and keeps an existing file of that name; SIGINT and SIGTERM in the
# middle of a copy remove the partial output; no temporary file remains.
. "$(dirname "$0")/lib.sh"
leftovers() { ls -A "$T" | grep -c 'kimg-' || true; }
qemu-img create -q -f raw big.raw 2G
echo "keep me" > existing.raw
# a source that fails to open: nothing created, existing file untouched
kimg convert -f raw -O raw nonexistent.raw existing.raw
err_line "missing source"
is "$(< existing.raw)" "keep me" "existing target untouched after a failed open"
kimg convert -f raw -O raw big.raw /nonexistent-dir/out.raw
err_line "target folder missing"
is "$(leftovers)" 0 "no temporary file left"
# a job that cannot finish quickly: zlib on 96 MiB of incompressible data
head -c $((96 * 1024 * 1024)) /dev/urandom > rnd.raw
echo "keep me" > existing.img
for sig in INT TERM; do
    # (a script's background job starts with SIGINT ignored, and kimg
    # keeps an ignored signal ignored: give it the default back)
    env --default-signal=INT "$KIMG" convert -c -f raw -O qcow2 rnd.raw existing.img & pid=$!
    # signal only once the temporary output exists (the copy is under way)
    for i in $(seq 500); do
        ls -A "$T" | grep -q '^\.existing\.img\.kimg-' && break
        nap 0.01
    done
    kill -$sig $pid
    RC=0; wait $pid || RC=$?
    ok "SIG$sig ends convert by the signal (exit $RC)" test "$RC" -ge 128
    is "$(< existing.img)" "keep me" "SIG$sig: existing target untouched"
    is "$(leftovers)" 0 "SIG$sig: temporary output removed"
done
kimg convert -f raw -O qcow2 big.raw new.qcow2
is "$RC" 0 "an uninterrupted convert succeeds"
ok "and its output is complete" qemu_oracle_compare big.raw new.qcow2
is "$(leftovers)" 0 "no temporary file after success"
(umask 022; "$KIMG" convert -f raw -O raw big.raw mode.raw)
is "$(stat -c %a mode.raw)" 644 "the output gets the usual mode (0666 less the umask)"
done_testing
