#!/bin/bash
# Writes into flat and split VMDKs kimg did not make (convert -n, as
# qemu-img does): monolithicFlat, twoGbMaxExtentFlat and
# twoGbMaxExtentSparse made by qemu-img, written by kimg: the content is
# the source's (qemu-img compare), qemu-img check is clean, the first write
# renews the CID as qemu's does and leaves the rest of the descriptor as
# it was; a second write over old data too.  Every extent file is locked
# as the descriptor is.  Extents kimg cannot write (a ZERO extent, two
# extents in one file) are refused in one line with nothing changed.
# Crashes: 736.
. "$(dirname "$0")/lib.sh"
MiB=$((1024 * 1024))
truncate -s 8M new.raw
qemu-io -f raw -c 'write -P 0x21 512k 1M' -c 'write -P 0x22 3M 100k' -c 'write -P 0x23 7M 1M' \
    new.raw > /dev/null
truncate -s 8M two.raw
qemu-io -f raw -c 'write -P 0x31 0 2M' -c 'write -P 0x32 5M 64k' two.raw > /dev/null

desc_but_cid() { grep -av '^CID=' "$1" | tr -d '\0'; }
for sub in monolithicFlat twoGbMaxExtentFlat twoGbMaxExtentSparse; do
    rm -f k*.vmdk
    qemu-img create -q -f vmdk -o subformat=$sub k.vmdk 8M
    qemu-io -f vmdk -c 'write -P 0x11 0 1M' -c 'write -P 0x12 4M 2M' k.vmdk > /dev/null
    cid0=$(grep -a '^CID=' k.vmdk); rest0=$(desc_but_cid k.vmdk)
    kimg convert -n -f raw -O vmdk new.raw k.vmdk
    is "$RC" 0 "$sub: convert -n into qemu-img's image" || diag "$(cat "$T/err")"
    ok "$sub: it reads as the source" qemu_oracle_compare -f raw -F vmdk new.raw k.vmdk
    ok "$sub: qemu-img check is clean" check_clean k.vmdk
    isnt "$(grep -a '^CID=' k.vmdk)" "$cid0" "$sub: the first write renewed the CID"
    is "$(desc_but_cid k.vmdk)" "$rest0" "$sub: the rest of the descriptor is as it was"
    kimg convert -n -f raw -O vmdk two.raw k.vmdk
    ok "$sub: a second write over old data" qemu_oracle_compare -f raw -F vmdk two.raw k.vmdk
    # an extent file held by another writer: refused, as qemu refuses
    ext=$(ls k-*.vmdk | head -1)
    ( exec qemu-io -f raw -c "sleep 600000" "$ext" > /dev/null 2>&1 ) &
    holder=$!; _tap_bg_pids="${_tap_bg_pids:-} $holder"
    for i in $(seq 500); do locked_byte "$ext" 101 && break; nap 0.02; done
    before=$(sha "$ext")
    kimg convert -n -f raw -O vmdk new.raw k.vmdk
    err_line "$sub: an extent file locked by a qemu-io: one line"
    like "$(cat "$T/err")" "lock" "$sub: ... saying it is locked"
    is "$(sha "$ext")" "$before" "$sub: ... the extent untouched"
    kill "$holder" 2> /dev/null; wait "$holder" 2> /dev/null
done

# extents kimg does not write: refused at open, nothing changed
qemu-img create -q -f vmdk -o subformat=monolithicFlat z.vmdk 4M
sed -i 's/^\(RW [0-9]* FLAT "z-flat.vmdk" 0\)$/\1\nRW 8192 ZERO/' z.vmdk
grep -aq '^RW 8192 ZERO' z.vmdk || fail "(the ZERO extent was not added)"
before=$(sha z.vmdk)
kimg convert -n -f raw -O vmdk new.raw z.vmdk
err_line "a descriptor with a ZERO extent: refused in one line"
like "$(cat "$T/err")" "ZERO extent" "... naming the extent"
is "$(sha z.vmdk)" "$before" "... the descriptor untouched"
qemu-img create -q -f vmdk -o subformat=monolithicFlat s.vmdk 4M
sed -i 's/^\(RW [0-9]* FLAT "s-flat.vmdk" 0\)$/\1\nRW 8192 FLAT "s-flat.vmdk" 0/' s.vmdk
kimg convert -n -f raw -O vmdk new.raw s.vmdk
err_line "two extents in one file: refused in one line"
like "$(cat "$T/err")" "another extent uses" "... saying why"

done_testing
