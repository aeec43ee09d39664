#!/bin/bash
# Fast zero: a convert into an NBD export that does not read as zeros
# (convert -n, or -O raw onto the export) first asks the server to zero
# the source's length with NBD_CMD_FLAG_FAST_ZERO (qemu-img did so up to
# QEMU 5.0; 7.2 does not) and then skips the source's zeros; where the server says that zero would be
# slow (ENOTSUP) or has no fast zero, the zeros are written as the copy
# reaches them.  nbdkit's nozero filter gives every mode (no zero,
# emulated, notrim, fast zero slow, ignored, not advertised); in each the
# export must end with the source's bytes (qemu-img convert into a twin as
# the oracle), bytes past the source's length untouched.  nbdkit's log
# filter shows which requests went out.  A local raw target is never
# zeroed ahead (strace: no fallocate over the whole file), though kimg's
# raw files can zero fast now (the nbdkit plugin's fast zero, test 824).
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/nbd.sh"
require strace

# the source: data at 0, 5M and the last 64k, zeros (holes and written
# zeros) between
qemu-img create -q -f raw src.raw 12M
qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0x6b 5M 512k' -c 'write -z 7M 1M' \
    -c 'write -P 0x7c 12224k 64k' src.raw > /dev/null
qemu-img convert -O qcow2 src.raw src.qcow2
fill() { rm -f "$1"; qemu-img create -q -f raw "$1" 16M; qemu-io -f raw -c 'write -P 0xee 0 16M' "$1" > /dev/null; }
fill ref.raw
qemu-img convert -n -f raw -O raw src.raw ref.raw    # qemu-img's result, 16M target

n=0
try() {   # NAME FILTERS PARAMS...: convert -n into a 16M export full of 0xee
    local name=$1 filters=$2; shift 2
    n=$((n + 1))
    fill t$n.raw
    rm -f log$n
    kitnbd z$n.sock --filter=log $filters file t$n.raw logfile="$T/log$n" "$@"
    kimg convert -n -O raw src.qcow2 "$(nuri z$n.sock)"
    is "$RC" 0 "$name: convert -n into the export"
    nbd_stop z$n.sock
    ok "  the export holds qemu-img's result (the tail untouched)" cmp -s t$n.raw ref.raw
}
fastzeros() { grep -c '^.* Zero .*fast=1' "$T/log$n"; }
zeros() { grep -c '^.* Zero ' "$T/log$n"; }
writes() { grep -c '^.* Write ' "$T/log$n"; }

try "file plugin (no fast zero here)" ""
is "$(fastzeros)" 0 "  no fast zero asked for"
ok "  the zeros went out as write-zeroes" test "$(zeros)" -gt 1

try "fast zero accepted (fastzeromode=ignore)" --filter=nozero zeromode=plugin fastzeromode=ignore
is "$(fastzeros)" 1 "  one fast zero ahead of the copy"
is "$(zeros)" 1 "  and no zero requests after it (the source's zeros skipped)"
like "$(grep ' Zero ' log$n | head -1)" "offset=0x0 count=0xc00000" "  over the source's length"

try "fastzeromode=slow" --filter=nozero zeromode=plugin fastzeromode=slow
is "$(fastzeros)" 1 "  a fast zero was asked for"
ok "  refused, so the zeros went out as write-zeroes" test "$(zeros)" -gt 1

# (nbdkit's core emulates these zeros and refuses fast ones above every
# filter, so the log shows only the writes it makes of them)
try "zeromode=emulate (fast zero would be slow)" --filter=nozero zeromode=emulate

try "fastzeromode=none (not advertised)" --filter=nozero zeromode=plugin fastzeromode=none
is "$(fastzeros)" 0 "  no fast zero asked for"
ok "  the zeros went out as write-zeroes" test "$(zeros)" -gt 1

try "zeromode=notrim" --filter=nozero zeromode=notrim
is "$(fastzeros)" 0 "  fast zero left to the file plugin, which has none"

try "zeromode=none (no write-zeroes)" --filter=nozero zeromode=none
is "$(zeros)" 0 "  no zero request"
ok "  the zeros written as data" test "$(writes)" -gt 2

# -S 0 (fully allocated) does not zero ahead: every byte goes out
# the memory plugin zeros fast for real; read back through the export
kitnbd m.sock memory 16M
qemu-io -f raw -c 'write -P 0xee 0 16M' "$(nuri m.sock)" > /dev/null
kimg convert -n -O raw src.qcow2 "$(nuri m.sock)"
is "$RC" 0 "memory plugin (a real fast zero): convert -n"
oracle "  the export reads as qemu-img's result" compare -f raw -F raw "$(nuri m.sock)" ref.raw

# -S 0 (fully allocated) does not zero ahead: every byte goes out
fill t$n.raw
kitnbd zS.sock --filter=log --filter=nozero file t$n.raw logfile="$T/logS" zeromode=plugin fastzeromode=ignore
kimg convert -S 0 -n -O raw src.qcow2 "$(nuri zS.sock)"
is "$RC" 0 "-S 0 into the export"
nbd_stop zS.sock
is "$(grep -c ' Zero ' logS)" 0 "  no zero requests"
ok "  the export holds qemu-img's result" cmp -s t$n.raw ref.raw

# -O raw onto the export (created in place, not zero)
fill tO.raw
kitnbd zO.sock --filter=log --filter=nozero file tO.raw logfile="$T/logO" zeromode=plugin fastzeromode=ignore
kimg convert -O raw src.raw "$(nuri zO.sock)"
is "$RC" 0 "convert -O raw onto the export"
nbd_stop zO.sock
ok "  the export holds qemu-img's result" cmp -s tO.raw ref.raw
is "$(grep -c ' Zero .*fast=1' logO)" 1 "  zeroed ahead with one fast zero"

# an error on the fast zero (not ENOTSUP) fails the convert, one line
fill tE.raw
kitnbd zE.sock --filter=error --filter=nozero file tE.raw error=EIO error-zero-rate=1 zeromode=plugin fastzeromode=ignore
kimg convert -n -O raw src.raw "$(nuri zE.sock)"
err_line "an I/O error on the fast zero ends the convert"

# a local raw file: the source's zero ranges punched as the copy reaches
# them, as qemu-img 7.2 does, never the whole file ahead
fill local.raw
# (LeakSanitizer cannot run under ptrace: off for this one run)
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
    strace -f -qq -e trace=fallocate -o fa.txt "$KIMG" convert -n -f raw -O raw src.raw local.raw
is "$?" 0 "convert -n into a local raw file"
ok "  it holds qemu-img's result" cmp -s local.raw ref.raw
is "$(grep -c 'fallocate([0-9]*, [A-Z_|]*, 0, 1[0-9]*)' fa.txt)" 0 "  no zero ahead over the file ($(grep -c fallocate fa.txt) fallocate calls)"
ok "  the source's zero ranges were punched" grep -q 'fallocate(.*PUNCH_HOLE.*, 1048576, ' fa.txt
done_testing
