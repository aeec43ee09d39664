#!/bin/bash
# Hostile images behind nbdkit-kimg-plugin: damaged qcow2, VMDK and VHDX
# headers and tables fail the connection's open with one nbdkit error
# line holding kimg's reason (a client sees the export refused), damage
# found while reading fails that read (an NBD error, the copy fails);
# nbdkit never crashes and keeps serving.  Names from images are escaped
# in the messages.  untrusted=true refuses exactly what kimg's
# --untrusted refuses (backing files, extent files, external data files).
. "$(dirname "$0")/lib.sh"
KIMG_TIMEOUT=30     # hostile input: each command under timeout, a hang fails on its own
. "$KIMG_SRC/tests/cli/nbdkit.sh"
MiB=$((1024 * 1024))
S=$T/k.sock

# served NAME WHEN WANT FILE [ARGS...]: WHEN open (the export is refused)
# or read (it opens, a copy of it fails); the log shows WANT (a regex)
served() {
    local name=$1 when=$2 want=$3 f=$4; shift 4
    if ! nbd_start "$S" file="$f" "$@"; then fail "$name: nbdkit starts" "$(cat "$S.log")"; return; fi
    RC=0; nbdinfo "$(uri "$S")" > /dev/null 2>&1 || RC=$?
    if [ "$when" = open ]; then
        isnt "$RC" 0 "$name: the export is refused"
    else
        is "$RC" 0 "$name: the export opens"
        RC=0; nbdcopy "$(uri "$S")" null: > /dev/null 2>&1 || RC=$?
        isnt "$RC" 0 "$name: a copy of it fails"
    fi
    ok "$name: nbdkit still serves" kill -0 "$NBD_PID"
    srv_stop "$NBD_PID"
    local errs; errs=$(grep -c 'kimg\[[0-9]*\]: error: ' "$S.log")
    like "$(grep -m1 'error: ' "$S.log")" "$want" "$name: nbdkit's error gives kimg's reason"
    if grep -q -E 'Sanitizer|runtime error|Segmentation|Aborted|assert' "$S.log"; then
        fail "$name: no crash" "$(cat "$S.log")"
    else pass "$name: no crash ($errs error lines)"; fi
}

q2() { qemu-img create -q -f qcow2 "$1" 4M; qemu-io -f qcow2 -c 'write -P 1 0 1M' "$1" > /dev/null; }
q2 v.qcow2; put_be 4 v.qcow2 4 99
served "qcow2 version 99" open "Unsupported qcow2 version 99" v.qcow2
q2 l1.qcow2; put_be 4 l1.qcow2 36 0x7fffffff
served "qcow2 L1 table of 2^31 entries" open "L1" l1.qcow2
q2 cb.qcow2; put_be 4 cb.qcow2 20 40
served "qcow2 cluster bits 40" open "cluster size" cb.qcow2
q2 tr.qcow2; head -c 300 tr.qcow2 > tr2.qcow2
served "qcow2 cut short" open "." tr2.qcow2
qemu-img create -q -f qcow2 -b loop2.qcow2 -F qcow2 -u loop.qcow2 4M
qemu-img create -q -f qcow2 -b loop.qcow2 -F qcow2 -u loop2.qcow2 4M
served "qcow2 that is its own backing file" open "loop" loop.qcow2
q2 l2.qcow2
$Q2 set-l2 l2.qcow2 0 0x8000000000000200
served "qcow2 L2 entry not cluster-aligned" read "Cluster allocation offset 0x200 unaligned" \
    l2.qcow2 format=qcow2

MK="$PY $KIMG_SRC/tests/images/make-vmdk.py"
VS="--type sparse --size $((10 * MiB)) --data 0:200000 --data 5000000:100000"
VT="--type stream --size $((10 * MiB)) --data 0:200000 --data 5000000:100000"
$MK h1.vmdk $VS --set header.version=4
served "VMDK version 4" open "Unsupported VMDK version 4" h1.vmdk
$MK h2.vmdk $VS --gd 0=0x7ffffff0
served "VMDK grain table past the end" open "outside the file" h2.vmdk
$MK h3.vmdk $VS --gt 0:1=0x7fffff00
served "VMDK grain past the end" read "past the end of the file" h3.vmdk
$MK h4.vmdk $VT --bad-grain 2
served "stream VMDK grain that does not inflate" read "does not inflate" h4.vmdk

MKX="$PY $KIMG_SRC/tests/images/make-vhdx.py"
D="--size $((6 * MiB)) --data 0:100000 --data 1100000:100000 --data 3000000:200000"
for c in "hdrs-crc|No valid VHDX header found" "regions-overlap|overlap" \
         "block-past-eof|points after end of file" "size-huge|invalid VHDX virtual size"; do
    IFS='|' read -r dmg want <<< "$c"
    $MKX h.vhdx $D --damage "$dmg"
    served "VHDX $dmg" open "$want" h.vhdx
done

# names read from an image are escaped in nbdkit's messages
esc=$(printf 'x\033[31my.qcow2')
qemu-img create -q -f qcow2 -b "$esc" -F qcow2 -u e.qcow2 4M
served "missing backing file with ESC in its name" open 'x\\x1b\[31my\.qcow2' e.qcow2
if grep -q "$(printf '\033')" "$S.log"; then fail "no raw ESC byte in nbdkit's log"
else pass "no raw ESC byte in nbdkit's log"; fi

# untrusted=true refuses what --untrusted refuses
qemu-img create -q -f qcow2 base.qcow2 4M
qemu-io -f qcow2 -c 'write -P 7 0 64k' base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-img create -q -f qcow2 -o data_file=df.data df.qcow2 4M
qemu-img create -q -f vmdk -o subformat=monolithicFlat flat.vmdk 4M
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse split.vmdk 4M
for img in top.qcow2 df.qcow2 flat.vmdk split.vmdk base.qcow2 v.qcow2; do
    kimg convert --untrusted -O raw "$img" out.raw
    krc=$RC; kerr=$(sed 's/^kimg: //' "$T/err")
    nbd_run file="$img" untrusted=true -- 'nbdcopy "$uri" null:'
    if [ "$krc" = 0 ]; then
        is "$RC" 0 "$img: served under untrusted=true, as kimg --untrusted reads it"
    else
        isnt "$RC" 0 "$img: refused under untrusted=true, as by kimg --untrusted"
        reason=${kerr##*: }
        like "$(grep -m1 'error: ' "$T/err")" "$(printf '%s' "$reason" | sed 's/[][\\.*^$()+?{}|]/\\&/g')" \
            "$img: with kimg's reason ($reason)"
    fi
done
nbd_run file=top.qcow2 -- 'nbdcopy "$uri" null:'
is "$RC" 0 "top.qcow2 is served with its backing file without untrusted=true"
done_testing
