#!/bin/bash
# convert -O vpc against qemu-img 7.2, for dynamic and fixed disks, with
# and without force_size: the same content (qemu-img compare with the
# source), the same qemu-img info (virtual size, cluster size), a dynamic
# disk laid out as qemu lays it out (same file size, blocks in the same
# order), vhdiinfo reads it, and it allocates no more than qemu-img's
# output (+10%): zero ranges of the source, holes or written zeros, are
# never written, and no block is allocated for zeros alone.  convert -n
# writes into an existing dynamic VHD (qemu-img's and kimg's): blocks it
# had keep their place, new ones are appended.  A failed or crashed
# convert leaves no file under the target's name.
. "$(dirname "$0")/lib.sh"
command -v vhdiinfo > /dev/null || skip_all "vhdiinfo not installed"
MiB=$((1024 * 1024))

# a source with holes, written zeros (whole blocks and parts), data across
# block boundaries, random data, the last sector
size=$((48 * MiB))
truncate -s $size src.raw
qemu-io -f raw -c 'write -P 0x61 0 1M' -c "write -P 0x62 $((2 * MiB - 1000)) 5000" \
    -c 'write -P 0 8M 4M' -c 'write -P 0 13M 64k' -c 'write -P 0x63 13M 4k' \
    -c "write -P 0x64 $((20 * MiB + 512)) 3M" -c "write -P 0x65 $((size - 512)) 512" src.raw > /dev/null
head -c $((3 * MiB)) /dev/urandom | dd of=src.raw bs=1M seek=30 conv=notrunc status=none

alloc() { echo $(( $(stat -c %b "$1") * 512 )); }
for opts in "" "subformat=dynamic" "subformat=fixed" "force_size=on" "subformat=fixed,force_size=on"; do
    o=(); [ -n "$opts" ] && o=(-o "$opts")
    rm -f q.vhd k.vhd
    qemu-img convert -f raw -O vpc "${o[@]}" src.raw q.vhd
    kimg convert -f raw -O vpc "${o[@]}" src.raw k.vhd
    is "$RC" 0 "[$opts] convert exits 0" || diag "$(< "$T/err")"
    ok "[$opts] qemu-img compare with the source" qemu_oracle_compare -f raw -F vpc src.raw k.vhd
    ok "[$opts] qemu-img compare with qemu-img's output" qemu_oracle_compare -f vpc -F vpc q.vhd k.vhd
    qemu-img info -f vpc --output=json q.vhd | grep -v -e actual-size -e filename > q.json
    qemu-img info -f vpc --output=json k.vhd | grep -v -e actual-size -e filename > k.json
    is_file k.json q.json "[$opts] qemu-img info as for qemu-img's output"
    is "$(stat -c %s k.vhd)" "$(stat -c %s q.vhd)" "[$opts] file size as qemu-img's"
    qa=$(alloc q.vhd); ka=$(alloc k.vhd)
    ok "[$opts] allocates $ka bytes, no more than qemu-img's $qa + 10%" test "$ka" -le $((qa + qa / 10))
    ok "[$opts] vhdiinfo accepts it" vhdiinfo k.vhd
    if [ "${opts#*fixed}" = "$opts" ]; then
        # dynamic: the BAT is qemu's (blocks in guest order, same places)
        is "$(od -An -tx1 -j 1536 -N 512 k.vhd)" "$(od -An -tx1 -j 1536 -N 512 q.vhd)" \
            "[$opts] BAT as qemu-img's"
        # no block for the block of zeros at 8-10 MiB or 10-12 MiB
        is "$(od -An -tx1 -j $((1536 + 16)) -N 8 k.vhd | tr -d ' ')" ffffffffffffffff \
            "[$opts] the all-zero blocks are not allocated"
    fi
done

# a source of zeros only (written, not holes): no block at all
dd if=/dev/zero of=zero.raw bs=1M count=8 status=none
kimg convert -f raw -O vpc zero.raw z.vhd
is "$(od -An -tx1 -j 1536 -N 16 z.vhd | tr -d ' \n')" ffffffffffffffffffffffffffffffff \
    "written zeros: no block allocated"
is "$(stat -c %s z.vhd)" 2560 "written zeros: the file is the metadata alone"

# convert -n into an existing dynamic VHD: old blocks stay, new appended
qemu-img create -q -f vpc old.vhd 48M
qemu-io -f vpc -c 'write -P 0x11 20M 1M' -c 'write -P 0x12 40M 64k' old.vhd > /dev/null
cp old.vhd old2.vhd
kimg convert -n -f raw -O vpc src.raw old.vhd
is "$RC" 0 "convert -n into qemu-img's dynamic VHD" || diag "$(< "$T/err")"
ok "convert -n: reads as the source" qemu_oracle_compare -f raw -F vpc src.raw old.vhd
ok "convert -n: vhdiinfo accepts it" vhdiinfo old.vhd
qemu-io -f vpc -c 'write -P 0x13 5M 1M' old.vhd > /dev/null
ok "convert -n: qemu-io writes into it afterwards" qemu_oracle_compare -f vpc -F vpc old.vhd old.vhd
qemu-io -f vpc -c 'read -P 0x13 5M 1M' old.vhd | grep -q '^read' && pass "convert -n: qemu-io reads its own write back" || fail "convert -n: qemu-io read back"
# and into a fixed one
qemu-img create -q -f vpc -o subformat=fixed oldf.vhd 48M
kimg convert -n -f raw -O vpc src.raw oldf.vhd
is "$RC" 0 "convert -n into a fixed VHD"
ok "convert -n fixed: reads as the source" qemu_oracle_compare -f raw -F vpc src.raw oldf.vhd

# kimg's own dynamic VHD as the target of -n, twice
kimg create -q -f vpc again.vhd 48M
kimg convert -n -f raw -O vpc zero.raw again.vhd
kimg convert -n -f raw -O vpc src.raw again.vhd
ok "convert -n twice into kimg's VHD: reads as the source" qemu_oracle_compare -f raw -F vpc src.raw again.vhd


# the library's write path through another command: commit an overlay
# into a vpc base (new blocks, blocks in place, zeros over data)
for sub in "" "subformat=fixed"; do
    o=(); [ -n "$sub" ] && o=(-o "$sub")
    rm -f cb.vhd cov.qcow2
    "$KIMG" create -q -f vpc "${o[@]}" cb.vhd 8M 2> /dev/null  # (the fixed one: the Azure warning)
    qemu-io -f vpc -c 'write -P 0x31 1M 1M' -c 'write -P 0x32 5M 64k' cb.vhd > /dev/null
    qemu-img create -q -f qcow2 -b cb.vhd -F vpc cov.qcow2
    qemu-io -f qcow2 -c 'write -P 0x41 0 64k' -c 'write -P 0x42 1536k 1M' -c 'write -z 5M 64k' \
        -c 'write -P 0x43 7M 4k' cov.qcow2 > /dev/null
    qemu-img convert -f qcow2 -O raw cov.qcow2 cexp.raw
    kimg commit -q -f qcow2 cov.qcow2
    is "$RC" 0 "commit into a [$sub] vpc base" || diag "$(< "$T/err")"
    ok "commit [$sub]: the base reads as the overlay did" qemu_oracle_compare -f raw -F vpc cexp.raw cb.vhd
done

# failures leave no file: a bad option, a crash at every point
kimg convert -f raw -O vpc -o subformat=foo src.raw bad.vhd
qimg convert -f raw -O vpc -o subformat=foo src.raw qbad.vhd
is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //; s/qbad/bad/' "$T/qerr")" "bad subformat: qemu-img's message"
ok "bad subformat: no file" test ! -e bad.vhd
crashes=0 left=0
for n in $(crash_points 60); do
    R=0; KIMG_CRASH_AFTER=$n "$KIMG" convert -f raw -O vpc src.raw crash.vhd 2> /dev/null || R=$?
    [ "$R" = 222 ] || break
    crashes=$((crashes + 1))
    [ -e crash.vhd ] && left=$((left + 1))
    rm -f .crash.vhd.kimg-*
done
ok "the convert crashed at $crashes points" test "$crashes" -ge 5
is "$left" 0 "no file under the target's name after any crash"
done_testing
