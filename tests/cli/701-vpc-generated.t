#!/bin/bash
# VHDs qemu-img cannot make, from tests/images/make-vhd.py (written from
# Microsoft's specification): other creator applications, small block
# sizes, blocks stored out of order, a differencing disk, and hostile
# variants.  The virtual size follows QEMU 10 (the CHS product only for
# creators "vpc " and "qemu"; qemu-img 7.2 also takes it for creators it
# does not know, e.g. VirtualBox's "vbox": a deliberate difference, held
# here).  Every damaged image: one "kimg: " line, non-zero exit, no output
# file, never a crash or a hang.
# make check: one creator of each kind (lib.sh sampled) and a third of the
# hostile images; check-slow the rest.
. "$(dirname "$0")/lib.sh"
MK="$PY $KIMG_SRC/tests/images/make-vhd.py"
MiB=$((1024 * 1024))
# vs IMAGE: kimg's virtual size of IMAGE; qvs: qemu-img's (-f vpc)
vs() { kimg info --output=json "$1"; sed -n 's/.*"virtual-size": \([0-9]*\),/\1/p' "$T/out"; }
qvs() { qimg info -f vpc --output=json "$1"; sed -n 's/.*"virtual-size": \([0-9]*\),/\1/p' "$T/qout"; }
# reads IMAGE RAW NAME: kimg's content of IMAGE is RAW (convert and checksum)
reads() {
    kimg convert -O raw "$1" out.raw
    ok "$3: convert -O raw gives the generator's content" cmp -s out.raw "$2"
    kimg checksum "$1"; local a; a=$(cut -d' ' -f1 "$T/out")
    kimg checksum -f raw "$2"
    is "$a" "$(cut -d' ' -f1 "$T/out")" "$3: checksum as the raw content's"
}

# ---- creators and sizes ------------------------------------------------------
# Azure-like fixed disk (creator "win "): 1 MiB-aligned size that no CHS
# geometry gives; qemu-img 7.2 agrees (it knows "win ") once told -f vpc
az=$((30 * MiB))
$MK az.vhd --type fixed --creator 'win ' --size $az --data 0:4096 \
    --data $((az - 4096)):4096 --raw az.raw
is "$(vs az.vhd)" $az "Azure fixed: the footer's size"
oracle "Azure fixed info" info -f vpc az.vhd
oracle "Azure fixed info json" info -f vpc --output=json az.vhd
oracle "Azure fixed map json" map -f vpc --output=json az.vhd
reads az.vhd az.raw "Azure fixed"
# Hyper-V dynamic ("win "), disk2vhd ("d2v "): the footer's size, as qemu
for c in 'win ' 'd2v '; do
    sampled || continue
    $MK c.vhd --type dynamic --creator "$c" --size $((7 * MiB + 4096)) --data 0:512 \
        --data $((3 * MiB - 100)):200 --raw c.raw
    oracle "creator '$c' dynamic info json" info -f vpc --output=json c.vhd
    oracle "creator '$c' dynamic map json" map -f vpc --output=json c.vhd
    reads c.vhd c.raw "creator '$c' dynamic"
done
# "vpc " and "qemu": the CHS product, smaller than the footer's size
for c in 'vpc ' qemu; do
    sampled || continue
    $MK c.vhd --type dynamic --creator "$c" --size $((7 * MiB + 4096)) --data 0:512
    got=$(vs c.vhd)
    isnt "$got" $((7 * MiB + 4096)) "creator '$c': not the footer's size"
    is "$got" "$(qvs c.vhd)" "creator '$c': the CHS size, as qemu-img"
done
# VirtualBox ("vbox"): QEMU 10 takes the footer's size, qemu-img 7.2 the
# CHS product (it cuts the disk short): kimg follows QEMU 10
vb=$((7 * MiB + 4096))
$MK vb.vhd --type dynamic --creator vbox --size $vb --data 0:512 --data $((vb - 512)):512 \
    --raw vb.raw
is "$(vs vb.vhd)" $vb "creator 'vbox': the footer's size (QEMU 10)"
ok "creator 'vbox': qemu-img 7.2 reads a smaller CHS size (deliberate difference)" \
    test "$(qvs vb.vhd)" -lt $vb
reads vb.vhd vb.raw "creator 'vbox'"
if command -v vhdiinfo > /dev/null; then
    like "$(vhdiinfo vb.vhd 2>&1)" "Media size.*\($vb bytes\)" "vhdiinfo: the footer's size too"
else
    skip "vhdiinfo" "libvhdi-utils not installed"
fi
# the largest CHS geometry means "use the current size", for every creator
$MK m.vhd --type dynamic --creator qemu --size $((5 * MiB)) --data 0:512 \
    --set footer.cyls=65535 --set footer.heads=16 --set footer.spt=255 --raw m.raw
is "$(vs m.vhd)" $((5 * MiB)) "qemu creator, maximum geometry: the footer's size"
is "$(qvs m.vhd)" $((5 * MiB)) "as qemu-img"
reads m.vhd m.raw "maximum geometry"

# ---- layouts -----------------------------------------------------------------
# blocks stored in reverse order, 64 KiB blocks, a partial last block
$MK r.vhd --type dynamic --size $((3 * MiB + 1536)) --block-size 65536 --data 1000:70000 \
    --data $((2 * MiB)):65536 --data $((3 * MiB)):1536 --reverse --raw r.raw
oracle "reverse order info json" info -f vpc --output=json r.vhd
oracle "reverse order map" map -f vpc r.vhd
oracle "reverse order map json" map -f vpc --output=json r.vhd
reads r.vhd r.raw "reverse order"
# 2 KiB blocks: the specification's one-sector bitmap before each block
# (qemu-img computes 0 bytes for blocks under 4 KiB and reads the bitmap
# as data: a deliberate difference)
$MK s.vhd --type dynamic --size $((64 * 1024)) --block-size 2048 --data 0:4096 \
    --data 10000:3000 --raw s.raw
reads s.vhd s.raw "2 KiB blocks"
qemu-img convert -f vpc -O raw s.vhd q.raw 2> /dev/null
ok "2 KiB blocks: qemu-img 7.2 misreads them" eval '! cmp -s q.raw s.raw'
# a dynamic disk whose last footer was cut off reads as qemu reads it
$MK t.vhd --type dynamic --size $((4 * MiB)) --data 0:4096 --truncate -512 --raw t.raw
oracle "no footer at the end: map json" map -f vpc --output=json t.vhd
reads t.vhd t.raw "no footer at the end"

# a footer at the end does not outrank a format signed at the start: a
# qcow2 file followed by a VHD footer (qemu tolerates trailing bytes)
qemu-img create -q -f qcow2 q.qcow2 1M
$MK foot.vhd --type fixed --size 0
cat foot.vhd >> q.qcow2
oracle "qcow2 with a VHD footer appended: info" info q.qcow2

# ---- differencing: refused (qemu-img reads it without its parent) ----------
$MK diff.vhd --type diff --size $((4 * MiB)) --data 0:512
qimg info -f vpc diff.vhd
is "$QRC" 0 "qemu-img 7.2 opens a differencing VHD without its parent"
for cmd in "info" "map --output=json" "convert -O raw diff.vhd out.raw" "checksum"; do
    rm -f out.raw
    case $cmd in convert*) kimg $cmd ;; *) kimg $cmd diff.vhd ;; esac
    err_line "differencing: $cmd"
done
like "$(< "$T/err")" "differencing VHDs are not supported" "differencing: the reason"
ok "differencing: no output file" test ! -e out.raw

# ---- hostile images ------------------------------------------------------------
B="--type dynamic --size $((8 * MiB)) --block-size $MiB --data 0:4096 --data 3000000:5000"
F="--type fixed --size $MiB --data 0:512"
# name | generator arguments | expected message (a regex)
cases=(
    "footer checksum|$B --set footer.checksum=1|Incorrect header checksum"
    "fixed footer checksum|$F --set footer.checksum=5|Incorrect header checksum"
    "dynamic header checksum|$B --set header.checksum=1|dynamic disk header checksum"
    "header offset past the end|$B --set footer.data_offset=0x100000000|header offset"
    "header offset 0|$B --set footer.data_offset=0|header offset"
    "BAT past the end|$B --set header.table_offset=0x10000000000|BAT at offset"
    "BAT over the footer copy|$B --set header.table_offset=0|overlaps"
    "BAT entry past the end|$B --set bat.0=0x100000|past the end of the file"
    "BAT entries overlapping|$B --set bat.0=4 --set bat.2=5|BAT entries overlap"
    "BAT entries equal|$B --set bat.1=3 --set bat.2=3|BAT entries overlap"
    "BAT entry on the header|$B --set bat.0=1|metadata"
    "BAT entry on the BAT|$B --set bat.0=3|BAT entr"
    "max table entries huge|$B --set header.max_table_entries=0xffffffff|BAT at offset"
    "max table entries too few|$B --set header.max_table_entries=2|Page table too small"
    "block size 0|$B --set header.block_size=0|Invalid block size 0"
    "block size not a power of two|$B --set header.block_size=3000|Invalid block size 3000"
    "block size 256|$B --set header.block_size=256|Invalid block size 256"
    "block size 2 GiB|$B --set header.block_size=0x80000000|past the end"
    "truncated in a block|$B --truncate 100000|truncated"
    "size over 2040 GiB|$B --set footer.current_size=0x30000000000|2040 GiB"
    "BAT over the memory cap|--type dynamic --size $MiB --block-size 512 --set footer.current_size=0x1f400000000 --set header.max_table_entries=0xffffffff|limit"
    "disk type 7|$B --set footer.disk_type=7|disk type 7"
    "fixed, data shorter than its size|$F --set footer.current_size=2097152|truncated"
    "dynamic footer only at the end|$F --set footer.disk_type=3|no copy"
    "shorter than a footer|--type fixed --size 0 --truncate 100|too small"
)
for c in "${cases[@]}"; do
    sampled || continue         # check: a third of the cases; check-slow: the rest
    IFS='|' read -r name args want <<< "$c"
    $MK h.vhd $args
    for cmd in "info" "map --output=json" "compare" "checksum" "convert"; do
        rm -f out.raw
        case $cmd in
        compare) kimg compare h.vhd h.vhd ;;
        convert) kimg convert -O raw h.vhd out.raw ;;
        *) kimg $cmd h.vhd ;;
        esac
        err_line "$name: $cmd"
    done
    ok "$name: no output file" test ! -e out.raw
    like "$(< "$T/err")" "$want" "$name: the reason"
done
# the last block reaching into the footer at the end of the file (its last
# sector cut out, the footer moved up over it): qemu-img reads the footer
# as the block's data; kimg refuses, as for the other metadata
$MK h.vhd $B
$PY -c 'import sys; d = open(sys.argv[1], "rb").read(); open(sys.argv[1], "wb").write(d[:-1024] + d[-512:])' h.vhd
for cmd in "info" "map --output=json" "compare" "checksum" "convert"; do
    rm -f out.raw
    case $cmd in
    compare) kimg compare h.vhd h.vhd ;;
    convert) kimg convert -O raw h.vhd out.raw ;;
    *) kimg $cmd h.vhd ;;
    esac
    err_line "block over the footer at the end: $cmd"
done
ok "block over the footer at the end: no output file" test ! -e out.raw
like "$(< "$T/err")" "metadata: block at offset" "block over the footer at the end: the reason"
# the dynamic header's cookie (a byte patch: not a field of the generator)
$MK h.vhd $B
poke h.vhd 512 78787878
kimg info h.vhd
err_line "dynamic header cookie"
like "$(< "$T/err")" "Invalid header magic" "dynamic header cookie: qemu-img's message"
done_testing
