#!/bin/bash
# VDIs qemu-img cannot make, from tests/images/make-vdi.py (written from
# VirtualBox's VDI layout): zero block-map entries, VirtualBox's own
# header (its text, header size, 1 MiB-aligned block map and data, UUIDs,
# comment), slots in reverse order, other block sizes, odd disk sizes;
# differencing images (refused); damaged block maps through check (qemu's
# lines and counts); and hostile variants: one "kimg: " line, non-zero
# exit, no output file, never a crash or a hang.
# make check: every layout, and a third of the differencing, damaged-map
# and hostile cases (lib.sh sampled); check-slow the rest of those.
. "$(dirname "$0")/lib.sh"
MK="$PY $KIMG_SRC/tests/images/make-vdi.py"
MiB=$((1024 * 1024))
# reads IMAGE RAW NAME: kimg's content of IMAGE is RAW (convert and checksum)
reads() {
    kimg convert -O raw "$1" out.raw
    ok "$3: convert -O raw gives the generator's content" cmp -s out.raw "$2"
    kimg checksum "$1"; local a; a=$(cut -d' ' -f1 "$T/out")
    kimg checksum -f raw "$2"
    is "$a" "$(cut -d' ' -f1 "$T/out")" "$3: checksum as the raw content's"
}
# same IMAGE NAME: info, map and compare as qemu-img's
same() {
    oracle "$2 info" info "$1"
    oracle "$2 info json" info --output=json "$1"
    oracle "$2 map" map "$1"
    oracle "$2 map json" map --output=json "$1"
    oracle "$2 check" check "$1"
}

# ---- layouts qemu-img reads the same way -----------------------------------
# zero entries (0xfffffffe, discarded blocks: their stale data is not read)
$MK z.vdi --size $((6 * MiB)) --data 0:8192 --data $((2 * MiB)):$MiB --data $((5 * MiB)):4096 \
    --zero-block 2 --zero-block 4 --raw z.raw
same z.vdi "zero entries"
reads z.vdi z.raw "zero entries"
# VirtualBox's header: its text, 0x190 bytes, map and data on 1 MiB
# boundaries, UUIDs and a comment; slots in reverse guest order
$MK vb.vdi --vbox --comment 'Made by VirtualBox' --size $((9 * MiB)) --data 1000:70000 \
    --data $((4 * MiB - 100)):200 --data $((9 * MiB - 512)):512 --reverse --raw vb.raw
same vb.vdi "VirtualBox header"
reads vb.vdi vb.raw "VirtualBox header"
$MK vbs.vdi --vbox --type static --size $((3 * MiB)) --data 0:512 --raw vbs.raw
same vbs.vdi "VirtualBox static"
reads vbs.vdi vbs.raw "VirtualBox static"
# an odd disk size (VBoxManage convertfromraw): rounded up to whole sectors, as qemu
$MK odd.vdi --size $((2 * MiB + 1000)) --data $((2 * MiB)):1000
same odd.vdi "odd disk size"
qemu-img convert -f vdi -O raw odd.vdi odd.raw
reads odd.vdi odd.raw "odd disk size"
# more map entries than the disk needs (qemu and VirtualBox accept them)
$MK more.vdi --size $((3 * MiB)) --data 0:4096 --set blocks_in_image=5
same more.vdi "more entries than blocks"

# ---- block sizes other than 1 MiB: VirtualBox's AllocationBlockSize -------
# qemu-img refuses them; kimg reads them (a deliberate difference)
$MK bs.vdi --size $((1 * MiB)) --block-size 65536 --data 1000:70000 --data 500000:3000 \
    --zero-block 15 --reverse --raw bs.raw
qimg info bs.vdi
like "$(< "$T/qerr")" "block size 65536 is not 1048576" "64 KiB blocks: qemu-img 7.2 refuses them"
kimg info --output=json bs.vdi
like "$(< "$T/out")" '"cluster-size": 65536,' "64 KiB blocks: kimg's cluster size is the block size"
reads bs.vdi bs.raw "64 KiB blocks"
$MK bs.vdi --size 8192 --block-size 512 --data 100:3000 --raw bs.raw
reads bs.vdi bs.raw "512-byte blocks"

# ---- differencing images: refused (qemu-img refuses them too) -------------
B="--size $((8 * MiB)) --data 0:4096 --data 3000000:5000"
for c in "link|uuid_link=0123456789abcdef0123456789abcdef|link UUID" \
         "parent|uuid_parent=00000000000000000000000000000001|parent UUID" \
         "type 4|image_type=4|differencing" "type 3|image_type=3|undo"; do
    sampled || continue
    IFS='|' read -r name set want <<< "$c"
    $MK d.vdi $B --set "$set"
    for cmd in "info" "map --output=json" "checksum" "check"; do
        kimg $cmd d.vdi
        err_line "$name: $cmd"
    done
    rm -f out.raw
    kimg convert -O raw d.vdi out.raw
    err_line "$name: convert"
    ok "$name: no output file" test ! -e out.raw
    like "$(< "$T/err")" "$want" "$name: the reason"
done

# ---- damaged block maps: check as qemu-img's (lines, counts, exit 2) ------
for c in "slot used twice|--set map.2=0" "slot past the block count|--set map.2=100" \
         "allocated count too high|--set blocks_allocated=5" \
         "allocated count too low|--set blocks_allocated=1" \
         "allocated count over the block count|--set blocks_allocated=100" \
         "two problems|--set map.2=0 --set map.5=99"; do
    sampled || continue
    IFS='|' read -r name args <<< "$c"
    $MK c.vdi $B $args
    oracle "$name: check" check c.vdi
    is_file "$T/err" "$T/qerr" "$name: check's ERROR lines as qemu-img's"
    oracle "$name: check json" check --output=json c.vdi
done
# a block past the end of the file: qemu-img's check finds nothing (and its
# reads give zeros); kimg's check reports it (a deliberate difference)
$MK c.vdi $B --truncate -1000
qimg check c.vdi
is "$QRC" 0 "truncated: qemu-img 7.2's check finds no error"
kimg check c.vdi
is "$RC" 2 "truncated: kimg's check reports a corruption (exit 2)"
like "$(< "$T/err")" "^ERROR: block 2: its data at offset [0-9]+ lies past the end of the file" \
    "truncated: the block and where its data should be"
like "$(< "$T/out")" "1 errors were found on the image" "truncated: counted as one error"

# ---- hostile images --------------------------------------------------------------
# name | generator arguments | expected message (a regex)
cases=(
    "bad signature|$B --set signature=0x12345678|bad signature 12345678"
    "version 1.2|$B --set version=0x00010002|version 1.2"
    "version 0.0|$B --set version=0|version 0.0"
    "header size 0|$B --set header_size=0|header size 0"
    "header size huge|$B --set header_size=0xffffffff|overlaps the header"
    "image type 0|$B --set image_type=0|image type 0"
    "image type 9|$B --set image_type=9|image type 9"
    "block map unaligned|$B --set offset_bmap=0x201|unaligned block map offset"
    "data unaligned|$B --set offset_data=0x401|unaligned data offset"
    "block map over the header|$B --set offset_bmap=0|overlaps the header"
    "block map over the data|$B --set offset_data=0x200|overlaps the data area"
    "block map past the end|$B --set offset_bmap=0x40000000 --set offset_data=0x40001000|past the end of the file"
    "block map cut short|--size $((1024 * MiB)) --data 0:512 --truncate 0x400|past the end of the file"
    "slot used twice|$B --set map.2=0|used twice"
    "slot past the block count|$B --set map.2=100|past the image's 8 blocks"
    "slot 0xfffffffd|$B --set map.2=0xfffffffd|past the image's"
    "slot past the end of the file|$B --set map.2=5|past the end of the file"
    "truncated in a block|$B --truncate -1000|truncated"
    "disk size huge|$B --set disk_size=0x7fffffffffffffff|Unsupported VDI image size"
    "disk size over the map's room|$B --set disk_size=0x10000000|room for"
    "too few blocks|$B --set blocks_in_image=4|room for"
    "too many blocks|$B --set blocks_in_image=0xffffffff|too many blocks"
    "map over the memory cap|$B --set blocks_in_image=0x1000000|limit of 32 MiB"
    "more allocated than blocks|$B --set blocks_allocated=100|blocks allocated"
    "sector size 4096|$B --set sector_size=4096|sector size 4096"
    "block size 0|$B --set block_size=0|block size 0"
    "block size 3000|$B --set block_size=3000|block size 3000"
    "block size 256|$B --set block_size=256|block size 256"
    "block size 2 GiB|$B --set block_size=0x80000000|past the end of the file"
    "block extra data|$B --set block_extra=512|extra data"
    "shorter than a header|$B --truncate 100|too small"
)
for c in "${cases[@]}"; do
    sampled || continue         # check: a third of the cases; check-slow: the rest
    IFS='|' read -r name args want <<< "$c"
    $MK h.vdi $args
    for cmd in "info" "map --output=json" "compare" "checksum" "convert"; do
        rm -f out.raw
        case $cmd in
        compare) kimg compare h.vdi h.vdi ;;
        convert) kimg convert -O raw h.vdi out.raw ;;
        *) kimg $cmd h.vdi ;;
        esac
        err_line "$name: $cmd"
    done
    ok "$name: no output file" test ! -e out.raw
    like "$(< "$T/err")" "$want" "$name: the reason"
done
# a VDI's text with a damaged signature is still taken for a VDI (never raw)
$MK h.vdi --vbox $B --set signature=0
kimg info h.vdi
err_line "VirtualBox text, signature 0"
like "$(< "$T/err")" "bad signature 00000000" "VirtualBox text, signature 0: the reason"
done_testing
