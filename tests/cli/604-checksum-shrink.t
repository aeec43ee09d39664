#!/bin/bash
# 604-checksum-shrink.t — a raw image whose file is truncated while `kimg
# checksum` hashes it.  Data is hashed in place from a mapping of the file,
# where an access past the new end raises SIGBUS: kimg must end with a
# one-line error (or, had the truncation come first, a digest), never be
# killed by the signal; and the guard must really be hit at least once.
. "$(dirname "$0")/lib.sh"
plan 5
errors=0
for delay in 0.1 0.2 0.3; do
    yes kimg-checksum-data | head -c 512M > d.raw
    "$KIMG" checksum -U -f raw --threads 1 d.raw > out 2> err < /dev/null & pid=$!
    sleep "$delay"
    truncate -s 0 d.raw
    RC=0; wait "$pid" || RC=$?
    if [ "$RC" -eq 0 ]; then
        pass "truncated after ${delay}s: finished first (exit 0)"
    else
        err_line "truncated after ${delay}s"
        errors=$((errors + 1))
    fi
done
ok "at least one run stopped on the shrunk file ($errors of 3)" [ "$errors" -ge 1 ]
grep -h . err > /dev/null 2>&1 && diag "last error: $(< err)"
# a file that is whole gives the same digest through the mapping as through reads
yes kimg-checksum-data | head -c 3M > w.raw
"$KIMG" checksum --raw-digest -f raw w.raw > k.out
is "$(cut -d' ' -f1 k.out)" "$(sha256sum < w.raw | cut -d' ' -f1)" "--raw-digest of a mapped file is sha256sum's"
rm -f d.raw
done_testing
