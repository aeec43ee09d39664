#!/bin/bash
# Writes into crafted sparse VMDKs (tests/images/make-vmdk.py): an image
# whose tables and grains overlap reads as qemu reads it, but a write in
# place (convert -n) would turn the source's data into the image's own
# tables (qemu-img 7.2 does it: its check then passes on a broken image).
# kimg refuses such an image for writing at open, in one line, the file
# untouched: its header, descriptor, directories and tables must lie
# inside the overHead and apart from each other.  The same image without
# the damage is written.
. "$(dirname "$0")/lib.sh"
KIMG_TIMEOUT=30
MK="$PY $KIMG_SRC/tests/images/make-vmdk.py"
MiB=$((1024 * 1024))

# the generator's 10 MiB layout: header, descriptor (1-20), redundant
# directory 21, its table 22-25, directory 26, its table 27-30, overHead
# 128, grains 0-3 from sector 128 on
S="--type sparse --size $((10 * MiB)) --data 0:200000 --data 5000000:100000"
truncate -s $((10 * MiB)) src.raw
qemu-io -f raw -c 'write -P 0x5a 64k 64k' -c 'write -P 0x5b 7M 64k' src.raw > /dev/null

# name | generator arguments | expected message (a regex)
cases=(
    "overHead shrunk, a grain on the tables|$S --set header.overhead=1 --gt 0:1=22|past its overHead"
    "a table past the overHead|$S --set header.overhead=29|grain table \\(sector 27\\) lies past"
    "redundant table on the directory|$S --poke $((21 * 512))=1a000000|sector 26 overlaps the grain directory"
    "redundant table on the descriptor|$S --poke $((21 * 512))=05000000|overlaps the embedded descriptor"
    "redundant table on the table|$S --poke $((21 * 512))=1c000000|tables at sectors 27 and 28 overlap"
    "redundant directory on the directory|$S --set header.rgd_offset=26|redundant grain directory overlaps the grain directory"
)
for c in "${cases[@]}"; do
    IFS='|' read -r name args want <<< "$c"
    $MK h.vmdk $args
    kimg info h.vmdk
    is "$RC" 0 "$name: read as before (info)"
    before=$(sha h.vmdk)
    kimg convert -n -f raw -O vmdk src.raw h.vmdk
    err_line "$name: convert -n"
    like "$(< "$T/err")" "$want" "$name: the reason"
    is "$(sha h.vmdk)" "$before" "$name: the image untouched"
done

# the same image undamaged: written, qemu-img reads the source's content
$MK h.vmdk $S
kimg convert -n -f raw -O vmdk src.raw h.vmdk
is "$RC" 0 "undamaged: convert -n succeeds" || diag "$(< "$T/err")"
ok "undamaged: the source's content" qemu_oracle_compare -f raw -F vmdk src.raw h.vmdk
ok "undamaged: qemu-img check clean" check_clean h.vmdk

# a qemu-made split sparse image with its redundant table on its
# directory: the extent is refused as the single file is
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse t.vmdk 4M
ext=t-s001.vmdk
rgd=$(od -An -tu8 -j 48 -N 8 "$ext" | tr -d ' ')
gd=$(od -An -tu8 -j 56 -N 8 "$ext" | tr -d ' ')
poke "$ext" $((rgd * 512)) "$(printf '%02x000000' "$gd")"
before=$(sha "$ext")
kimg convert -n -f raw -O vmdk src.raw t.vmdk
err_line "split sparse, redundant table on the directory: convert -n"
like "$(< "$T/err")" "overlaps the grain directory" "split sparse: the reason"
is "$(sha "$ext")" "$before" "split sparse: the extent untouched"

done_testing
