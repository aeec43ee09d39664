#!/bin/bash
# create -f vdi and convert -O vdi against qemu-img 7.2: `-o help`, the
# "Formatting" line, refusals in qemu-img's words with no file left, the
# image byte for byte as qemu-img's but for its two UUIDs, for dynamic and
# static=on over many sizes; convert: the same content, qemu-img info and
# a clean qemu-img check, no more allocation than qemu-img's output
# (+10%: kimg leaves the unwritten parts of a block holes, qemu writes
# them as zeros), no block for zeros; convert -n into existing dynamic and
# static VDIs; a failed or crashed convert leaves no file.
# make check: a third of the option set x size matrix of create (lib.sh
# sampled; the sizes rotate over the three option sets, so each size runs
# once, 0 and 1T dynamic among them) and the convert crash loop's first
# points; check-slow the other matrix cases and crash points.
. "$(dirname "$0")/lib.sh"
MiB=$((1024 * 1024))

oracle "-o help" create -f vdi -o help
oracle "-o help with a file name" create -f vdi -o help x.vdi

# the file protocol's options, other formats' options, -b: as qemu-img
for args in "-o nocow=on,static=on,extent_size_hint=1M,preallocation=off x.vdi 1M" "-o preallocation=full x.vdi 1M" "-o force_size=on x.vdi 1M" "-o static=off x.vdi 3M"; do
    rm -f x.vdi
    # shellcheck disable=SC2086
    qimg create -f vdi $args
    rm -f x.vdi
    # shellcheck disable=SC2086
    kimg create -f vdi $args
    is "$RC" "$QRC" "create $args: exit code as qemu-img's"
    is_file "$T/out" "$T/qout" "create $args: stdout (the Formatting line) as qemu-img's"
    is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" "create $args: stderr as qemu-img's"
done

# same_vdi A B: equal but for the image and last-snapshot UUIDs (0x188-0x1a7)
same_vdi() {
    local sa sb
    sa=$(stat -c %s "$1"); sb=$(stat -c %s "$2")
    [ "$sa" = "$sb" ] || { diag "sizes $sa and $sb"; return 1; }
    head -c 1048576 "$1" > "$1.h"; head -c 1048576 "$2" > "$2.h"
    cmp -l "$1.h" "$2.h" | awk '{ o = $1 - 1; if (o < 392 || o >= 424) { bad++; if (bad < 4) print "differs at " o } }
        END { exit bad > 0 }'
}
mkdir -p q k
for opts in "" "static=on" "static=off"; do
    o=(); [ -n "$opts" ] && o=(-o "$opts")
    bad_fmt=0 bad_info=0 bad_bytes=0 n=0 m=0
    for s in 0 512 1000 1M $((MiB + 512)) 10M 1G 3G 100G 1T; do
        sampled || continue     # check: a third of the cases; check-slow: the rest
        m=$((m + 1))
        rm -f q/d.vdi k/d.vdi
        (cd q && qemu-img create -f vdi "${o[@]}" d.vdi "$s") > q.out 2>&1 || { diag "qemu-img refused $s"; continue; }
        (cd k && "$KIMG" create -f vdi "${o[@]}" d.vdi "$s") > k.out 2> k.err
        n=$((n + 1))
        cmp -s q.out k.out || { bad_fmt=$((bad_fmt + 1)); diag "$opts $s: $(cat k.out k.err)"; }
        (cd q && qemu-img info --output=json d.vdi 2>&1) | grep -v actual-size > q.json
        (cd k && qemu-img info --output=json d.vdi 2>&1) | grep -v actual-size > k.json
        cmp -s q.json k.json || { bad_info=$((bad_info + 1)); diag "$opts $s: info: $(diff q.json k.json | head -4)"; }
        same_vdi q/d.vdi k/d.vdi || { bad_bytes=$((bad_bytes + 1)); diag "$opts $s: bytes differ"; }
        check_clean k/d.vdi || { bad_info=$((bad_info + 1)); diag "$opts $s: check"; }
    done
    # (all 10 sizes: qemu-img made at least 9; at most one refused of those run)
    ok "[$opts] qemu-img made $n of the $m sizes run" test "$n" -gt 0 -a "$n" -ge $((m - 1))
    is "$bad_fmt" 0 "[$opts] the Formatting line is qemu-img's for every size run"
    is "$bad_info" 0 "[$opts] qemu-img info and check of kimg's image as of qemu-img's, every size run"
    is "$bad_bytes" 0 "[$opts] the image is qemu-img's byte for byte (UUIDs aside), every size run"
done
rm -f q/d.vdi k/d.vdi

for args in "-o static=maybe bad.vdi 1G" "-o subformat=fixed bad.vdi 1G" "bad.vdi 536870785M"; do
    rm -f bad.vdi
    # shellcheck disable=SC2086
    qimg create -f vdi $args
    rm -f bad.vdi
    # shellcheck disable=SC2086
    kimg create -f vdi $args
    is "$RC" "$QRC" "create $args: exit code as qemu-img's"
    is_file "$T/out" "$T/qout" "create $args: stdout as qemu-img's"
    is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" "create $args: qemu-img's message"
    ok "create $args: no file left" test ! -e bad.vdi
done
# past kimg's block-map limit (8 TiB): refused in one line, no file
kimg create -f vdi big.vdi 9T
err_line "9T: past kimg's block map limit"
ok "9T: no file left" test ! -e big.vdi

# ---- convert -------------------------------------------------------------
size=$((40 * MiB + 512))
truncate -s $size src.raw
qemu-io -f raw -c 'write -P 0x61 0 1M' -c "write -P 0x62 $((2 * MiB - 1000)) 5000" \
    -c 'write -P 0 8M 3M' -c 'write -P 0x63 13M 4k' \
    -c "write -P 0x64 $((20 * MiB + 512)) 3M" -c "write -P 0x65 $((size - 512)) 512" src.raw > /dev/null
head -c $((3 * MiB)) /dev/urandom | dd of=src.raw bs=1M seek=30 conv=notrunc status=none
alloc() { echo $(( $(stat -c %b "$1") * 512 )); }
for opts in "" "static=on"; do
    o=(); [ -n "$opts" ] && o=(-o "$opts")
    rm -f q.vdi k.vdi
    qemu-img convert -f raw -O vdi "${o[@]}" src.raw q.vdi
    kimg convert -f raw -O vdi "${o[@]}" src.raw k.vdi
    is "$RC" 0 "convert [$opts] exits 0" || diag "$(< "$T/err")"
    ok "convert [$opts]: qemu-img compare with the source" qemu_oracle_compare -f raw -F vdi src.raw k.vdi
    ok "convert [$opts]: qemu-img check clean" check_clean k.vdi
    qemu-img info --output=json q.vdi | grep -v -e actual-size -e filename > q.json
    qemu-img info --output=json k.vdi | grep -v -e actual-size -e filename > k.json
    is_file k.json q.json "convert [$opts]: qemu-img info as for qemu-img's output"
    is "$(stat -c %s k.vdi)" "$(stat -c %s q.vdi)" "convert [$opts]: file size as qemu-img's"
    qa=$(alloc q.vdi); ka=$(alloc k.vdi)
    ok "convert [$opts]: allocates $ka bytes, no more than qemu-img's $qa + 10%" test "$ka" -le $((qa + qa / 10))
    if [ -z "$opts" ]; then
        is "$(od -An -tx1 -v -j 512 -N 192 k.vdi)" "$(od -An -tx1 -v -j 512 -N 192 q.vdi)" \
            "convert: the block map is qemu-img's (slots in guest order, none for zeros)"
        is "$(od -An -tu4 -j $((0x184)) -N 4 k.vdi)" "$(od -An -tu4 -j $((0x184)) -N 4 q.vdi)" \
            "convert: the allocated-block count is qemu-img's"
    fi
done
dd if=/dev/zero of=zero.raw bs=1M count=8 status=none
kimg convert -f raw -O vdi zero.raw z.vdi
is "$(od -An -tu4 -j $((0x184)) -N 4 z.vdi | tr -d ' ')" 0 "written zeros: no block allocated"

# convert -n into existing images: qemu-img's dynamic (with blocks), static
qemu-img create -q -f vdi old.vdi $size
qemu-io -f vdi -c 'write -P 0x11 20M 1M' -c 'write -P 0x12 35M 64k' old.vdi > /dev/null
kimg convert -n -f raw -O vdi src.raw old.vdi
is "$RC" 0 "convert -n into a dynamic VDI" || diag "$(< "$T/err")"
ok "convert -n dynamic: reads as the source" qemu_oracle_compare -f raw -F vdi src.raw old.vdi
ok "convert -n dynamic: qemu-img check clean" check_clean old.vdi
qemu-img create -q -f vdi -o static=on olds.vdi $size
kimg convert -n -f raw -O vdi src.raw olds.vdi
ok "convert -n static: reads as the source" qemu_oracle_compare -f raw -F vdi src.raw olds.vdi
ok "convert -n static: qemu-img check clean" check_clean olds.vdi
kimg convert -n -f raw -O vdi zero.raw old.vdi
cp src.raw exp.raw
dd if=/dev/zero of=exp.raw bs=1M count=8 conv=notrunc status=none
ok "convert -n of zeros over data: those blocks read as zeros" \
    qemu_oracle_compare -f raw -F vdi exp.raw old.vdi
ok "convert -n of zeros: qemu-img check clean" check_clean old.vdi


# the library's write path through another command: commit an overlay
# into a vdi base (new blocks, blocks in place, zeros over data)
for sub in "" "static=on"; do
    o=(); [ -n "$sub" ] && o=(-o "$sub")
    rm -f cb.vdi cov.qcow2
    "$KIMG" create -q -f vdi "${o[@]}" cb.vdi 8M
    qemu-io -f vdi -c 'write -P 0x31 1M 1M' -c 'write -P 0x32 5M 64k' cb.vdi > /dev/null
    qemu-img create -q -f qcow2 -b cb.vdi -F vdi cov.qcow2
    qemu-io -f qcow2 -c 'write -P 0x41 0 64k' -c 'write -P 0x42 1536k 1M' -c 'write -z 5M 64k' \
        -c 'write -P 0x43 7M 4k' cov.qcow2 > /dev/null
    qemu-img convert -f qcow2 -O raw cov.qcow2 cexp.raw
    kimg commit -q -f qcow2 cov.qcow2
    is "$RC" 0 "commit into a [$sub] vdi base" || diag "$(< "$T/err")"
    ok "commit [$sub]: the base reads as the overlay did" qemu_oracle_compare -f raw -F vdi cexp.raw cb.vdi
done

kimg convert -f raw -O vdi -o static=maybe src.raw bad.vdi
qimg convert -f raw -O vdi -o static=maybe src.raw bad.vdi
is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" "convert -o static=maybe: qemu-img's message"
crashes=0 left=0
for n in $(crash_points 60); do
    R=0; KIMG_CRASH_AFTER=$n "$KIMG" convert -f raw -O vdi src.raw crash.vdi 2> /dev/null || R=$?
    [ "$R" = 222 ] || break
    crashes=$((crashes + 1))
    [ -e crash.vdi ] && left=$((left + 1))
    rm -f .crash.vdi.kimg-*
done
ok "the convert crashed at $crashes points" test "$crashes" -ge 5
is "$left" 0 "no file under the target's name after any crash"
done_testing
