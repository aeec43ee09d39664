#!/bin/bash
# Writing monolithicSparse VMDKs: convert -O vmdk against qemu-img's
# output for the same command (info JSON, map, compare, check, vmdkinfo,
# size), -o zeroed_grain and delta disks (-B); convert -n into existing
# sparse images, qemu-made, holding data, with grains written in part (the
# rest of a new grain is what it read before: zeros or the parent's), and
# the crash model: a copy killed before each of its file changes (and with
# unsynced changes lost, KIMG_CRASH_LOSE) leaves an image qemu-img checks
# clean whose every sector is the old or the new one.
# make check: two of the four convert -O vmdk option sets (lib.sh
# sampled: zeroed_grain=on, adapter_type and hwversion), the crash model
# and its power failure (seed 1) at check's crash points (lib.sh
# crash_next); check-slow the other two option sets, the other crash
# points, and power failures with seed 2 at every point.
. "$(dirname "$0")/lib.sh"
require vmdkinfo
MiB=$((1024 * 1024))
quiet() { "$@" > /dev/null 2>&1; }

size=$((12 * MiB + 512 * 5))
truncate -s $size src.raw
qemu-io -f raw -c 'write -P 0x11 0 4k' -c "write -P 0x22 $((2 * MiB - 1000)) 5000" \
    -c "write -P 0x33 $((5 * MiB + 512)) 1M" -c "write -P 0x44 $((size - 700)) 700" \
    src.raw > /dev/null

# (ordered so that check's third takes zeroed_grain=on and the
# adapter_type/hwversion set: the default layout with other descriptor
# fields; check-slow the plain default and the explicit subformat)
for o in "zeroed_grain=on" "" "subformat=monolithicSparse" "adapter_type=lsilogic,hwversion=10"; do
    sampled || continue
    n="convert -O vmdk ${o:+-o $o}"
    rm -rf q k; mkdir q k
    qemu-img convert -O vmdk ${o:+-o "$o"} src.raw q/o.vmdk
    kimg convert -O vmdk ${o:+-o "$o"} src.raw k/o.vmdk
    is "$RC" 0 "$n: exit 0" || diag "$(< "$T/err")"
    (cd q && qemu-img info --output=json o.vmdk) > qi.json
    (cd k && qemu-img info --output=json o.vmdk) > ki.json
    json_norm_files cid,actual-size qi.json ki.json      # qemu's CID is random
    is_file ki.json.norm qi.json.norm "$n: qemu-img info as for qemu-img's output"
    qemu-img map --output=json q/o.vmdk > qm.json
    qemu-img map --output=json k/o.vmdk > km.json
    is_file km.json qm.json "$n: map as qemu-img's (zeros never stored)"
    ok "$n: the source's content" qemu_oracle_compare k/o.vmdk src.raw
    ok "$n: qemu-img check clean" check_clean k/o.vmdk
    ok "$n: vmdkinfo reads it" quiet vmdkinfo k/o.vmdk
    qs=$(stat -c %s q/o.vmdk); ks=$(stat -c %s k/o.vmdk)
    ok "$n: no larger than qemu-img's + 10% ($ks vs $qs)" test "$ks" -le $((qs + qs / 10))
done

# -n into existing images: partial grains keep what was around them
mk_target() {  # NAME [create args]: a qemu-made sparse image holding data
    local f=$1; shift
    qemu-img create -q -f vmdk "$@" "$f" $size
    qemu-io -f vmdk -c 'write -P 0xaa 0 1M' -c "write -P 0xbb $((3 * MiB + 100 * 512)) 200k" \
        "$f" > /dev/null
}
truncate -s $size part.raw
qemu-io -f raw -c 'write -P 0x01 512 1536' -c "write -P 0x02 $((3 * MiB + 64 * 1024 - 512)) 1k" \
    -c "write -P 0x03 $((8 * MiB + 3000)) 70000" part.raw > /dev/null
for zg in off on; do
    mk_target t.vmdk -o zeroed_grain=$zg
    cp t.vmdk want.vmdk
    # what qemu-img makes of the same -n copy
    qemu-img convert -n -O vmdk part.raw want.vmdk
    kimg convert -n -O vmdk part.raw t.vmdk
    is "$RC" 0 "convert -n (zeroed_grain=$zg): exit 0" || diag "$(< "$T/err")"
    ok "convert -n (zeroed_grain=$zg): the content qemu-img gives" qemu_oracle_compare t.vmdk want.vmdk
    ok "convert -n (zeroed_grain=$zg): qemu-img check clean" check_clean t.vmdk
done

# a delta disk: a new grain written in part keeps the parent's bytes
qemu-img create -q -f vmdk base.vmdk $size
qemu-io -f vmdk -c "write -P 0x77 0 $size" base.vmdk > /dev/null
qemu-img create -q -f vmdk -b base.vmdk -F vmdk dk.vmdk
cp dk.vmdk dk2.vmdk
truncate -s $size delta.raw
kimg convert -O raw dk.vmdk delta.raw
qemu-io -f raw -c 'write -P 0x09 4096 512' -c "write -P 0x0a $((5 * MiB + 1000)) 3000" delta.raw > /dev/null
kimg convert -n -O vmdk delta.raw dk2.vmdk
is "$RC" 0 "convert -n into a delta disk: exit 0" || diag "$(< "$T/err")"
ok "convert -n into a delta disk: its content" qemu_oracle_compare dk2.vmdk delta.raw
ok "convert -n into a delta disk: check clean" check_clean dk2.vmdk

# crashes: before each file change of a -n copy into an image with data
# (each crashed image read back to nows[], every one checked sector by
# sector in one python at the end)
mk_target c0.vmdk
kimg convert -O raw c0.vmdk old.raw
total=0 nows=()
for lose in "" 1 2; do
    # seed 2 is seed 1's check again with other losses: check-slow's, at
    # every point (check takes the crash model and seed 1 at its points)
    if [ "$lose" = 2 ]; then
        slow_part || continue
        points=$(KIMG_TEST_PART=all crash_points 60)
    else
        points=$(crash_points 60)
    fi
    if [ -n "$lose" ]; then export KIMG_CRASH_LOSE=$lose; else unset KIMG_CRASH_LOSE; fi
    for n in $points; do
        cp c0.vmdk c.vmdk
        rc=0; KIMG_CRASH_AFTER=$n "$KIMG" convert -n -O vmdk part.raw c.vmdk > /dev/null 2>&1 || rc=$?
        [ "$rc" = 0 ] && break
        at="crash after $n changes${lose:+ (lose seed $lose)}"
        [ "$rc" = 222 ] || { fail "$at: died by the crash model (exit $rc)"; break; }
        total=$((total + 1))
        check_clean c.vmdk || { fail "$at: check clean"; continue; }
        qemu-img convert -O raw c.vmdk now$total.raw
        nows+=("$at=now$total.raw")
    done
done
unset KIMG_CRASH_LOSE
# each sector of each crashed image is the old one or the new one (64 KiB
# at a time, sector by sector where a chunk is neither whole)
if out=$($PY - old.raw part.raw "${nows[@]}" <<'EOF'
import sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
for arg in sys.argv[3:]:
    at, path = arg.rsplit("=", 1)
    c = open(path, "rb").read()
    bad = [i // 512 for j in range(0, len(c), 65536)
           if c[j:j + 65536] not in (a[j:j + 65536], b[j:j + 65536])
           for i in range(j, min(j + 65536, len(c)), 512)
           if c[i:i + 512] not in (a[i:i + 512], b[i:i + 512])]
    if bad:
        print("%s\tsector %d is neither" % (at, bad[0]))
EOF
); then
    while IFS=$'\t' read -r at why; do
        [ -n "$at" ] && fail "$at: each byte old or new" "$why"
    done <<< "$out"
else
    fail "crash model: the byte check ran" "$out"
fi
rm -f now*.raw
ok "crash model: $total crash points, each left a clean image" test "$total" -gt 3

# -p: the progress steps qemu-img prints for the same copy
rm -f pq.vmdk pk.vmdk
qemu-img convert -p -O vmdk -o subformat=monolithicSparse src.raw pq.vmdk > pq.txt
kimg convert -p -O vmdk -o subformat=monolithicSparse src.raw pk.vmdk
is_file "$T/out" pq.txt "convert -p -O vmdk (monolithicSparse): qemu-img's progress steps"

done_testing
