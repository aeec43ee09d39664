#!/bin/bash
# amend under crashes: KIMG_CRASH_AFTER=N makes kimg die before its
# (N+1)-th file change; for N = 0, 1, 2, ... (sparser later) until it
# completes, the image must pass qemu-img check (clean, or leaked clusters
# only), read as before (amend never changes content), and have either
# the old or the new compat and refcount width, as qemu-img info shows.
# Refcount width changes both ways (with snapshots, across many refcount
# blocks), compat down (zero clusters over a backing file in tables shared
# with a snapshot; persistent bitmaps dropped) and up (a v2 snapshot table
# rewritten for v3), lazy refcounts.
. "$(dirname "$0")/lib.sh"

fields() {   # compat and refcount bits of IMG, one line
    qemu-img info --output=json "$1" 2>/dev/null |
        sed -n 's/^ *"\(compat\|refcount-bits\|lazy-refcounts\)": \(.*\),*$/\1=\2/p' | tr -d ',"' | tr '\n' ' '
}

# crash_loop NAME TEMPLATE OPTIONS
crash_loop() {
    local name=$1 tpl=$2 o=$3 n=0 rc bad=0 crashes=0
    cp "$tpl" new.qcow2
    "$KIMG" amend -o "$o" new.qcow2 > /dev/null 2>&1 || { fail "$name: kimg amend failed"; return; }
    local oldf newf; oldf=$(fields "$tpl"); newf=$(fields new.qcow2)
    while :; do
        cp "$tpl" img
        rc=0; KIMG_CRASH_AFTER=$n "$KIMG" amend -o "$o" img > /dev/null 2> err || rc=$?
        [ "$rc" -eq 0 ] && break
        if [ "$rc" -ne 222 ]; then
            fail "$name: crash point $n: exit $rc, not the injected crash" "$(< err)"; return
        fi
        crashes=$((crashes + 1))
        local crc=0; qemu-img check -q img > /dev/null 2>&1 || crc=$?
        if [ "$crc" -ne 0 ] && [ "$crc" -ne 3 ]; then
            bad=1; diag "crash point $n: qemu-img check exits $crc"
            qemu-img check img 2>&1 | head -5 | while read -r l; do diag "  $l"; done
            break
        fi
        if ! qemu_oracle_compare img "$tpl"; then
            bad=1; diag "crash point $n: content changed"; break
        fi
        local f; f=$(fields img)
        if [ "$f" != "$oldf" ] && [ "$f" != "$newf" ]; then
            bad=1; diag "crash point $n: '$f' is neither '$oldf' nor '$newf'"; break
        fi
        if [ $n -lt 40 ]; then n=$(crash_next $n)
        elif [ "$KIMG_TEST_PART" = quick ]; then n=$((n * 2))   # check: sparser past 40
        else n=$((n + n / 4)); fi
        [ $n -gt 100000 ] && { bad=1; diag "no end after $n changes"; break; }
    done
    if [ $bad -eq 0 ]; then pass "$name: $crashes crash points, each clean (or leaks), same content, old or new"
    else fail "$name: a crash left a bad image"; fi
    ok "$name: completed run clean" check_clean img
    is "$(fields img)" "$newf" "$name: completed run as the uninterrupted one"
}

qemu-img create -q -f qcow2 -o cluster_size=4k rc.qcow2 8M
qemu-io -f qcow2 -c "write -P 0x11 0 3M" -c "write -P 0x12 5M 1M" rc.qcow2 > /dev/null
qemu-img snapshot -c s1 rc.qcow2
qemu-io -f qcow2 -c "write -P 0x13 1M 1M" rc.qcow2 > /dev/null
crash_loop "refcount_bits 16 -> 2 (snapshot, many blocks)" rc.qcow2 refcount_bits=2
crash_loop "refcount_bits 16 -> 64" rc.qcow2 refcount_bits=64
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=1 rc1.qcow2 2M
qemu-io -f qcow2 -c "write -P 0x14 0 2M" rc1.qcow2 > /dev/null
crash_loop "refcount_bits 1 -> 16, 512-byte clusters" rc1.qcow2 refcount_bits=16

qemu-img create -q -f raw base.raw 4M
qemu-io -f raw -c "write -P 0x21 0 4M" base.raw > /dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw -o cluster_size=4k zt.qcow2
qemu-io -f qcow2 -c "write -P 0x22 0 256k" -c "write -z 64k 64k" -c "write -z -u 1M 128k" zt.qcow2 > /dev/null
qemu-img snapshot -c s1 zt.qcow2
qemu-io -f qcow2 -c "write -z -u 2M 16k" -c "write -z 3M 8k" zt.qcow2 > /dev/null
crash_loop "compat 1.1 -> 0.10, zero clusters over a backing file, a snapshot" zt.qcow2 compat=0.10

qemu-img create -q -f qcow2 -o cluster_size=4k bm.qcow2 4M
qemu-io -f qcow2 -c "write -P 0x31 0 1M" bm.qcow2 > /dev/null
qemu-img bitmap --add bm.qcow2 b0
qemu-img bitmap --add -g 16k bm.qcow2 b1
qemu-io -f qcow2 -c "write -P 0x32 2M 64k" bm.qcow2 > /dev/null
crash_loop "compat 1.1 -> 0.10 dropping persistent bitmaps" bm.qcow2 compat=0.10

qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=4k v2.qcow2 4M
qemu-io -f qcow2 -c "write -P 0x41 0 1M" v2.qcow2 > /dev/null
qemu-img snapshot -c first v2.qcow2
qemu-img snapshot -c second v2.qcow2
$PY - v2.qcow2 <<'PYEOF'
import struct, sys
p = sys.argv[1]
d = bytearray(open(p, "rb").read())
n, off = struct.unpack(">IQ", d[60:72])
out, pos = bytearray(), off
for i in range(n):
    h = d[pos:pos + 40]
    extra = struct.unpack(">I", h[36:40])[0]
    idl, nl = struct.unpack(">HH", h[12:16])
    rest = d[pos + 40 + extra:pos + 40 + extra + idl + nl]
    e = bytearray(h[:36]) + struct.pack(">I", 0) + rest
    e += b"\0" * (-len(e) % 8)
    out += e
    pos += 40 + extra + idl + nl
    pos += -pos % 8
d[off:off + len(out)] = out
open(p, "wb").write(d)
PYEOF
crash_loop "compat 0.10 -> 1.1, snapshot table rewritten" v2.qcow2 compat=1.1
crash_loop "lazy_refcounts on" rc.qcow2 lazy_refcounts=on
done_testing
