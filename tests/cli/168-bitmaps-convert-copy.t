#!/bin/bash
# convert --bitmaps [--skip-broken-bitmaps] (vdsm passes both on every
# copy, with -p -t none -T none): the source's persistent bitmaps made in
# the target with their granularity and state, and their bits copied;
# compared with qemu-img's result (bitmap list, every bitmap's bits decoded
# by qcow2_bitmaps.py, qemu-nbd reading one, check, content), in a new
# target, compressed, into an existing one (-n), from an overlay (only the
# top layer's bitmaps).  qemu-img's refusals in its order, before anything
# is written: an inconsistent bitmap without --skip-broken-bitmaps, two
# sources, a source without bitmap support, a target format without it
# (kimg then leaves no output file; qemu-img leaves a partial one).
. "$(dirname "$0")/lib.sh"
require qemu-nbd nbdinfo
BMPY="$PY $KIMG_SRC/tests/cli/qcow2_bitmaps.py"

dirty() {
    nbdinfo --map="qemu:dirty-bitmap:$2" -- [ qemu-nbd -r -f qcow2 -B "$2" "$1" ] 2>&1 |
        awk '$3 == 1 { print $1, $2; next } $3 != 0 { print "?", $0 }'
}
qemu-img create -q -f qcow2 s.qcow2 8M
qemu-img bitmap --add s.qcow2 used
{ ( qemu-io -f qcow2 -c "write -P 0x11 0 64k" -c abort s.qcow2 || true ) > /dev/null 2>&1; }
qemu-img bitmap --add s.qcow2 b0
qemu-img bitmap --add -g 512 s.qcow2 "fine one"
qemu-img bitmap --add -g 2M s.qcow2 coarse
qemu-io -f qcow2 -c "write -P 0x12 1M 4k" -c "write -P 0x13 5000 700" -c "write -P 0x14 7M 1M" \
    s.qcow2 > /dev/null
qemu-img bitmap --disable s.qcow2 coarse
qemu-io -f qcow2 -c "write -P 0x15 3M 64k" s.qcow2 > /dev/null

# twins NAME TARGET-PREP ARGS...: kimg convert ARGS SRC k.qcow2 against
# qemu-img convert ARGS SRC q.qcow2 (ARGS end with the source)
twins() {
    local name=$1 prep=$2; shift 2
    rm -f k.qcow2 q.qcow2
    if [ -n "$prep" ]; then $prep k.qcow2; $prep q.qcow2; fi
    kimg convert "$@" k.qcow2
    qimg convert "$@" q.qcow2
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || diag "kimg: $(head -2 "$T/err")"
    is "$($BMPY all k.qcow2)" "$($BMPY all q.qcow2)" "$name: every bitmap and its bits as qemu-img's"
    ok "$name: check clean" check_clean k.qcow2
    ok "$name: content as the source" qemu_oracle_compare k.qcow2 "${@: -1}"
}
VDSM=(-p -t none -T none -f qcow2 -O qcow2 -o compat=1.1 --bitmaps --skip-broken-bitmaps)
if ! qemu-img convert -t none -T none -f qcow2 -O qcow2 s.qcow2 probe.qcow2 2> /dev/null; then
    VDSM=(-p -f qcow2 -O qcow2 -o compat=1.1 --bitmaps --skip-broken-bitmaps)  # no O_DIRECT here
fi
twins "vdsm's line" "" "${VDSM[@]}" s.qcow2
like "$(< "$T/err")" "warning: Skipping inconsistent bitmap 'used'" "vdsm's line: the in-use bitmap skipped, said so"
is "$(dirty k.qcow2 "fine one")" "$(dirty q.qcow2 "fine one")" "vdsm's line: qemu reads kimg's copy as its own"
twins "compressed" "" -c -O qcow2 --bitmaps --skip-broken-bitmaps s.qcow2
twins "512-byte clusters" "" -O qcow2 -o cluster_size=512 --bitmaps --skip-broken-bitmaps s.qcow2
mk_target() { qemu-img create -q -f qcow2 "$1" 8M && qemu-img bitmap --add "$1" other; }
twins "-n into a target with its own bitmap" mk_target -n -O qcow2 --bitmaps --skip-broken-bitmaps s.qcow2
mk_clash() { qemu-img create -q -f qcow2 "$1" 8M && qemu-img bitmap --add "$1" b0; }
twins "-n into a target with the same name (refused after the data)" mk_clash \
    -n -O qcow2 --bitmaps --skip-broken-bitmaps s.qcow2
like "$(< "$T/err")" "Failed to create bitmap b0: Bitmap already exists: b0" "same name: qemu-img's message"
qemu-img create -q -f qcow2 -b s.qcow2 -F qcow2 top.qcow2
qemu-img bitmap --add top.qcow2 topbm
qemu-io -f qcow2 -c "write -P 0x21 6M 4k" top.qcow2 > /dev/null
twins "from an overlay (its own bitmaps only)" "" -O qcow2 --bitmaps --skip-broken-bitmaps top.qcow2

# refusals, before anything is written
qemu-img create -q -f raw r.raw 8M
for args in "--bitmaps -O qcow2 s.qcow2" "--bitmaps -O raw s.qcow2" \
            "--skip-broken-bitmaps -O qcow2 s.qcow2" "--bitmaps -f raw -O qcow2 r.raw" \
            "--bitmaps --skip-broken-bitmaps -O qcow2 s.qcow2 s.qcow2" \
            "--bitmaps --skip-broken-bitmaps -O raw s.qcow2" \
            "--bitmaps --skip-broken-bitmaps -O qcow2 -o compat=0.10 s.qcow2"; do
    rm -f out.img
    kimg convert $args out.img
    qimg convert $args out.img
    is "$RC" "$QRC" "convert $args: exit code as qemu-img's"
    err_line "convert $args"
    rm -f out.img
    kimg convert $args out.img
    ok "convert $args: no output file" test ! -e out.img
done
kimg convert --bitmaps -O qcow2 s.qcow2 out.img
like "$(< "$T/err")" "Cannot copy inconsistent bitmap 'used'" "in-use bitmap: qemu-img's reason"
kimg convert --bitmaps -f raw -O qcow2 r.raw out.img
like "$(< "$T/err")" "Source lacks bitmap support" "raw source: qemu-img's reason"
kimg convert --bitmaps --skip-broken-bitmaps -O raw s.qcow2 out.img
like "$(< "$T/err")" "Format driver 'raw' does not support bitmaps" "raw target: qemu-img's reason"
done_testing
