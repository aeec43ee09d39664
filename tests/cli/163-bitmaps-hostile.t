#!/bin/bash
# Hostile bitmap directories and tables: a read-write open (convert -n into
# the image) fails with one "kimg: ..." line, exit 1, and leaves the image
# byte for byte as it was, wherever qemu refuses the image too (qemu's
# constraints: granularity 9..31, type 1, no reserved flags, no extra data,
# table size as the virtual size needs, aligned non-zero table offset,
# table entries without reserved bits, the bitmap count and directory size
# as the extension says) and also where qemu takes it and would free or
# overwrite other metadata (a table or bitmap cluster past the end of the
# file, on the L1 or refcount table, the directory, an L2 table, shared
# between bitmaps, or with refcount 0).  An in-use bitmap's table is never read: a bad one does
# not stop the write, and stays as it was.
# make check: a third of the hostile images (lib.sh sampled: in this
# order, refused by qemu too and not, by each kind of patch: directory
# entry, table entry, extension), and the one-off cases; check-slow: the
# other hostile images.
. "$(dirname "$0")/lib.sh"
KIMG_TIMEOUT=30     # hostile input: each command under timeout, a hang fails on its own
BMPY="$PY $KIMG_SRC/tests/cli/qcow2_bitmaps.py"

qemu-img create -q -f qcow2 base.qcow2 4M &&
qemu-img bitmap --add base.qcow2 used &&
{ ( qemu-io -f qcow2 -c "write -P 0x11 3M 64k" -c abort base.qcow2 || true ) > /dev/null 2>&1; } &&
qemu-img bitmap --add base.qcow2 off &&
qemu-io -f qcow2 -c "write -P 0x12 128k 4k" base.qcow2 > /dev/null &&
qemu-img bitmap --disable base.qcow2 off &&
qemu-img bitmap --add base.qcow2 b0 &&
qemu-img bitmap --add -g 512 base.qcow2 g512 &&
qemu-io -f qcow2 -c "write -P 0x13 2M 64k" base.qcow2 > /dev/null ||
    { fail "qemu-img made the image"; done_testing; }
truncate -s 4M src.raw
qemu-io -f raw -c "write -P 0x21 1M 4k" src.raw > /dev/null

field() { $BMPY dir base.qcow2 | awk -v n="$1" -v f="$2" '$1 == n { print $f }'; }
read -r _ DIRSIZE DIROFF _ <<< "$($BMPY ext base.qcow2)"
HDR=$($Q2 header base.qcow2)
L1=$(sed -n 's/^l1_table_offset=//p' <<< "$HDR")
RT=$(sed -n 's/^refcount_table_offset=//p' <<< "$HDR")
L2=$(( $($Q2 l2 base.qcow2 0 | cut -d' ' -f1) & ~65535 ))
B0T=$(field b0 2); G512T=$(field g512 2)
B0D=$(( $($BMPY table base.qcow2 b0 | head -1) ))
[ "$B0D" -gt 0 ] && pass "b0 has a data cluster ($B0D)" || fail "b0 has a data cluster"

# hostile NAME QEMU-TOO PATCH...: patch a copy (qcow2_bitmaps.py ARGS), then
# kimg's write must fail cleanly and change nothing; QEMU-TOO=1: qemu-io's
# write refuses the image as well.  A case each (sampled).
hostile() {
    sampled || return 0     # check: a third of the cases; check-slow: the rest
    local name=$1 qemu=$2 sum; shift 2
    cp base.qcow2 h.qcow2
    $BMPY "$1" h.qcow2 "${@:2}" || { fail "$name: patched"; return; }
    sum=$(sha h.qcow2)
    kimg convert -n --target-is-zero -f raw -O qcow2 src.raw h.qcow2
    err_line "$name"
    is "$(sha h.qcow2)" "$sum" "$name: image unchanged"
    if [ "$qemu" = 1 ]; then
        cp base.qcow2 q.qcow2; $BMPY "$1" q.qcow2 "${@:2}"
        if qemu-io -f qcow2 -c "write 1M 4k" q.qcow2 > /dev/null 2>&1; then
            fail "$name: qemu-io refuses the image too"
        else
            pass "$name: qemu-io refuses the image too"
        fi
    fi
}

hostile "granularity 8" 1 set b0 gran 8
hostile "granularity 32" 1 set b0 gran 32
hostile "type 2" 1 set b0 type 2
hostile "reserved flag" 1 set b0 flags 6
hostile "disabled bitmap, reserved flag" 1 set off flags 8
hostile "extra data" 1 set b0 extra 8
hostile "table size 0" 1 set b0 table_size 0
hostile "table size 2" 1 set g512 table_size 2
hostile "table offset 0" 1 set b0 table_offset 0
hostile "table offset unaligned" 1 set b0 table_offset $((B0T + 512))
hostile "table entry reserved bits" 1 set-table b0 0 $((B0D | 2))
hostile "table entry all-ones with an offset" 1 set-table b0 0 $((B0D | 1))
hostile "table entry unaligned" 1 set-table b0 0 $((B0D + 512))
hostile "disabled bitmap, table entry reserved bits" 1 set-table off 0 0x100
hostile "bitmap count 3 of 4" 1 set-ext nb 3
hostile "bitmap count 5 of 4" 1 set-ext nb 5
hostile "directory 8 bytes short" 1 set-ext dir_size $((DIRSIZE - 8))
hostile "directory 8 bytes long" 1 set-ext dir_size $((DIRSIZE + 8))
hostile "directory past the end" 1 set-ext dir_offset $((1 << 40))
hostile "extension reserved field" 1 set-ext reserved 1
# qemu takes these (and frees or overwrites what it should not): kimg not
hostile "table past the end of the file" 0 set b0 table_offset $((1 << 40))
hostile "table entry past the end of the file" 0 set-table b0 0 $((1 << 40))
hostile "table on the L1 table" 0 set b0 table_offset "$L1"
hostile "table on the refcount table" 0 set b0 table_offset "$RT"
hostile "table on the directory" 0 set b0 table_offset "$DIROFF"
hostile "bitmap cluster on an L2 table" 0 set-table b0 0 "$L2"
hostile "bitmap cluster on the directory" 0 set-table b0 0 "$DIROFF"
hostile "two bitmaps share a table" 0 set g512 table_offset "$B0T"
hostile "two bitmaps share a bitmap cluster" 0 set-table g512 0 "$B0D"
hostile "bitmap cluster is a table" 0 set-table g512 0 "$B0T"

# a table or bitmap cluster counted free (refcount 0) would be handed out
# again while in use, then freed after a store: refused
for what in "bitmap cluster:$B0D" "table:$B0T"; do
    sampled || continue
    cp base.qcow2 h.qcow2; $Q2 set-rc h.qcow2 "${what#*:}" 0
    sum=$(sha h.qcow2)
    kimg convert -n --target-is-zero -f raw -O qcow2 src.raw h.qcow2
    err_line "${what%%:*} with refcount 0"
    is "$(sha h.qcow2)" "$sum" "${what%%:*} with refcount 0: image unchanged"
done

# an in-use bitmap is inconsistent: its table is never read, a bad one does
# not stop the write (qemu-io writes too) and stays as it was
cp base.qcow2 h.qcow2
$BMPY set-table h.qcow2 used 0 0x2
kimg convert -n --target-is-zero -f raw -O qcow2 src.raw h.qcow2
is "$RC" 0 "in-use bitmap with a bad table entry: the write works"
is "$($BMPY table h.qcow2 used)" "0x2" "in-use bitmap's table left alone"
is "$($BMPY dir h.qcow2 | awk '$1 == "used" { print $4 }')" 3 "in-use bitmap stays in use"
cp base.qcow2 q.qcow2; $BMPY set-table q.qcow2 used 0 0x2
qwrite() { qemu-io -f qcow2 -c "write 1M 4k" "$1" > /dev/null 2>&1; }
ok "in-use bitmap with a bad table entry: qemu-io writes too" qwrite q.qcow2
# (qemu-img check counts the bad entry of either as a corruption)

# read-only commands are not affected by the bitmaps' validation
cp base.qcow2 h.qcow2; $BMPY set h.qcow2 b0 gran 8
kimg compare -f qcow2 -F qcow2 h.qcow2 base.qcow2
is "$RC" 0 "a read-only open of an image with a bad bitmap still reads it"
done_testing
