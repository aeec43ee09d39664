#!/bin/bash
# Fast zero through nbdkit-kimg-plugin: the plugin advertises
# NBD_CMD_FLAG_FAST_ZERO and carries a fast zero out only where nothing
# is written as data (a raw file's punched hole or unwritten extent, a
# qcow2 image's whole zero clusters); anything else fails at once with
# ENOTSUP, without an error message, and the client writes its zeros as
# it goes.  The client here is kimg convert -n, which asks for one fast
# zero over the source's length ahead of the copy (test 808); nbdkit's
# log filter shows the requests and their answers, its nozero filter
# (zeromode=notrim) takes the trim flag off so the keep-allocated path is
# used too.  A client that closes its writable connection and opens
# another at once (qemu-img convert -O raw onto an export) gets it.
# Every export ends with the source's bytes, qcow2 images
# check clean, and bytes past the source's length are untouched.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/nbdkit.sh"
MiB=$((1024 * 1024))

qemu-img create -q -f raw src.raw 8M
qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0x6b 5M 512k' src.raw > /dev/null
# the same data cut 4k past 5M (not on a 64k cluster)
qemu-img create -q -f raw short.raw 5124k
qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0x6b 5M 4k' short.raw > /dev/null

# serve LOG FILTERS PARAMS... -- CMD: the plugin behind FILTERS and then
# the log filter (which so logs what the plugin is asked)
serve() {
    local log=$1 filters=() params=()
    shift
    while [[ $1 == --filter=* ]]; do filters+=("$1"); shift; done
    while [ "$1" != -- ]; do params+=("$1"); shift; done
    shift
    rm -f "$T/$log"
    RC=0
    timeout -k 5 120 "${NBDKIT_ENV[@]}" nbdkit -U - "${filters[@]}" --filter=log "$PLUGIN" \
        "${params[@]}" readonly=false logfile="$T/$log" --run "$NBDKIT_UNENV$*" \
        > "$T/out" 2> "$T/err" < /dev/null || RC=$?
}
fast_asked() { grep -c ' Zero .*fast=1' "$T/$1"; }
fast_ok() { grep -A1 ' Zero .*fast=1' "$T/$1" | grep -c 'Zero id=.* return=0'; }
zero_count() { grep -c ' Zero id=.* offset=' "$T/$1"; }
fill() {   # FILE FMT [OPTS]: an 8M image full of 0xee
    rm -f "$1"
    qemu-img create -q -f "$2" ${3:+-o "$3"} "$1" 8M
    qemu-io -f "$2" -c 'write -P 0xee 0 8M' "$1" > /dev/null
}
convert_in() {   # NAME LOG IMG FMT SRC FILTERS...: kimg convert -n SRC into the export
    local name=$1 log=$2 img=$3 fmt=$4 src=$5
    shift 5
    serve "$log" "$@" file="$img" format="$fmt" -- "$KIMG convert -n -f raw -O raw $src \"\$uri\""
    is "$RC" 0 "$name: convert -n into the export"
    [ "$RC" = 0 ] || diag "$(< "$T/err")"
}
allocated() { echo $(( $(stat -c %b "$1") * 512 )); }

# ---- raw: a punched hole; notrim: an unwritten extent ------------------------
fill t.raw raw
convert_in "raw" log1 t.raw raw src.raw
is "$(fast_asked log1)" 1 "  one fast zero asked for"
is "$(fast_ok log1)" 1 "  and carried out"
is "$(zero_count log1)" 1 "  no other zero request (the source's zeros skipped)"
ok "  the export reads as the source" qemu-img compare -q -f raw -F raw src.raw t.raw
ok "  the zeros are holes: $(allocated t.raw) bytes allocated" test "$(allocated t.raw)" -le $((3 * MiB / 2 + 64 * 1024))

fill t2.raw raw
convert_in "raw, zero without trim" log2 t2.raw raw src.raw --filter=nozero zeromode=notrim
like "$(grep ' Zero .*fast=1' "$T/log2")" "trim=0" "  the fast zero came without trim"
is "$(fast_ok log2)" 1 "  and was carried out"
ok "  the export reads as the source" qemu-img compare -q -f raw -F raw src.raw t2.raw
ok "  and stays allocated (an unwritten extent, not a hole)" test "$(allocated t2.raw)" -ge $((8 * MiB))

# ---- qcow2: zero clusters ----------------------------------------------------
fill t.qcow2 qcow2
convert_in "qcow2" log3 t.qcow2 qcow2 src.raw
is "$(fast_ok log3)" 1 "  the fast zero was carried out"
is "$(zero_count log3)" 1 "  no other zero request"
ok "  the image reads as the source" qemu-img compare -q -f raw -F qcow2 src.raw t.qcow2
ok "  qemu-img check is clean" check_clean t.qcow2
like "$(qemu-img map --output=json t.qcow2)" '"start": 1048576, "length": 4194304, "depth": 0, "present": true, "zero": true, "data": false}' \
    "  the zeros are zero clusters without host clusters"

fill t2.qcow2 qcow2
convert_in "qcow2, zero without trim" log4 t2.qcow2 qcow2 src.raw --filter=nozero zeromode=notrim
is "$(fast_ok log4)" 1 "  the fast zero was carried out"
ok "  the image reads as the source" qemu-img compare -q -f raw -F qcow2 src.raw t2.qcow2
ok "  qemu-img check is clean" check_clean t2.qcow2
like "$(qemu-img map --output=json t2.qcow2)" '"start": 1048576, "length": 4194304, "depth": 0, "present": true, "zero": true, "data": false, "offset": ' \
    "  the zero clusters keep their host clusters"

fill v2.qcow2 qcow2 compat=0.10
convert_in "qcow2 v2 (no backing file)" log5 v2.qcow2 qcow2 src.raw
is "$(fast_ok log5)" 1 "  the fast zero was carried out (clusters unallocated)"
ok "  the image reads as the source" qemu-img compare -q -f raw -F qcow2 src.raw v2.qcow2
ok "  qemu-img check is clean" check_clean v2.qcow2

# ---- refused: the client writes its zeros ------------------------------------
qemu-img create -q -f qcow2 -o compat=0.10 base.qcow2 8M
qemu-io -f qcow2 -c 'write -P 0x11 0 8M' base.qcow2 > /dev/null
cp base.qcow2 base.orig
qemu-img create -q -f qcow2 -o compat=0.10 -b base.qcow2 -F qcow2 top.qcow2
convert_in "qcow2 v2 over a backing file" log6 top.qcow2 qcow2 src.raw
is "$(fast_asked log6)" 1 "  a fast zero was asked for"
like "$(grep -A1 ' Zero .*fast=1' "$T/log6" | tail -1)" "return=-1.*ENOTSUP" "  and refused with ENOTSUP"
ok "  the zeros were written as the copy went" test "$(zero_count log6)" -gt 1
is "$(grep -c -i 'error' "$T/err")" 0 "  nbdkit printed no error for the refusal"
ok "  the image reads as the source" qemu-img compare -q -f raw -F qcow2 src.raw top.qcow2
ok "  qemu-img check is clean" check_clean top.qcow2
ok "  the backing file is untouched" cmp -s base.qcow2 base.orig

fill t3.qcow2 qcow2
convert_in "qcow2, a source not on a cluster boundary" log7 t3.qcow2 qcow2 short.raw
like "$(grep -A1 ' Zero .*fast=1' "$T/log7" | tail -1)" "return=-1.*ENOTSUP" "  the fast zero was refused"
ok "  qemu-img check is clean" check_clean t3.qcow2
ok "  the image starts with the source" \
    qemu-img compare -q --image-opts "driver=raw,file.driver=file,file.filename=$T/short.raw" \
    "driver=raw,size=$((5124 * 1024)),file.driver=qcow2,file.file.filename=$T/t3.qcow2"
is "$(qemu-io -f qcow2 -c "read -P 0xee 5124k 3068k" t3.qcow2 | grep -c Pattern)" 0 "  and the rest is untouched"

# ---- a client that reconnects ------------------------------------------------
# qemu-img convert -O raw onto an export opens it once to zero its first
# sector, closes, and opens it again at once: the second writable
# connection waits for the first to close instead of failing on the
# image's write lock.  (qemu-img 7.2 does not ask for fast zeros.)
fill t4.raw raw
serve log8 file=t4.raw format=raw -- 'qemu-img convert -O raw '"$T"'/src.raw "$uri"'
is "$RC" 0 "qemu-img convert -O raw onto the export (two connections, one after the other)"
[ "$RC" = 0 ] || diag "$(< "$T/err")"
ok "  the export reads as the source" qemu-img compare -q -f raw -F raw src.raw t4.raw
ok "  the second connection wrote" grep -q 'connection=2 Write ' "$T/log8"

done_testing
