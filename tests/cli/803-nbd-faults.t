#!/bin/bash
# NBD failures end in one error line and a non-zero exit, never in output
# that looks complete: no server on the socket, an export that does not
# exist (qemu-img's exit codes), a read error and a write error injected by
# nbdkit's error filter (every request, and from the moment a trigger file
# appears mid-copy), and a server killed in the middle of a copy.  A
# failed convert to a local file leaves no file; a failed checksum prints
# no sum.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/nbd.sh"

head -c 48M /dev/urandom > d.raw
qemu-img create -q -f raw small.raw 8M

for n in "$(nuri none.sock)" "nbd:unix:$T/none.sock" "nbd+unix:///x?socket=$T"; do
    qimg info "$n"; kimg info "$n"
    is "$RC" "$QRC" "info, nothing listening ($n): exit code as qemu-img's"
    err_line "info, nothing listening ($n)"
done
qnbd q.sock raw small.raw -x exp
qimg info "$(nuri q.sock nope)"; kimg info "$(nuri q.sock nope)"
is "$RC" "$QRC" "info, no such export: exit code as qemu-img's"
err_line "info, no such export"
kimg convert -O raw "$(nuri q.sock nope)" o.raw
err_line "convert from a missing export"
ok "  no output file" test ! -e o.raw

kitnbd rerr.sock --filter=error file d.raw error-pread=EIO error-pread-rate=100%
R=$(nuri rerr.sock)
kimg convert -O raw "$R" o.raw
err_line "convert, every read fails"
ok "  no output file" test ! -e o.raw
kimg checksum "$R"
err_line "checksum, every read fails"
is "$(< out)" "" "  no sum printed"
kimg compare "$R" d.raw
err_line "compare, every read fails"

kitnbd wmid.sock --filter=error --filter=delay file d.raw rdelay=50ms \
    error-pread=EIO error-pread-rate=100% \
    error-pread-file="$T/trigger"
kitnbd werr.sock --filter=error memory 64M error-pwrite=EIO error-pwrite-rate=100%
kimg convert -n -O raw small.raw "$(nuri werr.sock)"
err_line "convert -n, every write fails"
kitnbd wz.sock --filter=error memory 64M error-zero=EIO error-zero-rate=100% \
    error-pwrite=EIO error-pwrite-rate=100%
kimg convert -n -O raw small.raw "$(nuri wz.sock)"
err_line "convert -n of zeros, every zero and write fails"

# reads that start failing while the copy runs
(sleep 0.4; touch "$T/trigger") &
_tap_bg_pids="$_tap_bg_pids $!"
KIMG_TIMEOUT=60 kimg convert -O raw "$(nuri wmid.sock)" o.raw
rm -f trigger
if [ "$RC" = 0 ]; then
    # the copy won the race: it must then be complete
    ok "convert raced the trigger and finished: the copy is whole" cmp -s o.raw d.raw
    rm -f o.raw
else
    err_line "convert, reads fail mid-copy"
    ok "  no output file" test ! -e o.raw
fi

# the server goes away mid-copy (SIGKILL: nbdkit 1.32 stopped with TERM
# can keep a connection open whose requests it dropped, and the client
# then waits for ever; a hang fails here in 60 s, not at the watchdog)
KIMG_TIMEOUT=60
kitnbd slow.sock --filter=delay file d.raw rdelay=100ms
(sleep 0.5; nbd_crash slow.sock) &
killer=$!
kimg convert -O raw "$(nuri slow.sock)" o.raw
wait $killer
err_line "convert, the server killed mid-copy"
ok "  no output file" test ! -e o.raw
kitnbd slow.sock --filter=delay file d.raw rdelay=100ms
(sleep 0.5; nbd_crash slow.sock) &
killer=$!
kimg checksum "$(nuri slow.sock)"
wait $killer
err_line "checksum, the server killed mid-copy"
is "$(< out)" "" "  no sum printed"
# ... and while it is written to
kitnbd wslow.sock --filter=delay memory 64M wdelay=100ms zdelay=100ms
(sleep 0.5; nbd_crash wslow.sock) &
killer=$!
kimg convert -n -O raw d.raw "$(nuri wslow.sock)"
wait $killer
err_line "convert -n, the target server killed mid-copy"
done_testing
