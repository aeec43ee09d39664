#!/bin/bash
# convert -O vmdk -o subformat=streamOptimized: against qemu-img's output
# for the same command (qemu-img info JSON, compare with the source, check
# clean, vmdkinfo reads it, no larger than qemu-img's + 10%, zero ranges
# never stored), the same bytes for any number of workers, the grains in
# guest order behind markers with an end-of-stream marker, a stream image that holds data refused for writing, and no
# output file left when the copy fails (a file size limit, a crash, a bad
# option).
# make check: a third of the sources (lib.sh sampled: raw and -S 0) and
# of the worker counts (-m 16); check-slow the rest.
. "$(dirname "$0")/lib.sh"
require vmdkinfo
MiB=$((1024 * 1024))

size=$((24 * MiB + 512 * 3))
truncate -s $size src.raw
qemu-io -f raw -c 'write -P 0x11 0 4k' -c "write -P 0x22 $((2 * MiB - 1000)) 5000" \
    -c "write -P 0x33 $((7 * MiB + 512)) 3M" -c 'write -P 0 20M 64k' \
    -c "write -P 0x44 $((size - 512)) 512" src.raw > /dev/null
head -c $((3 * MiB)) /dev/urandom | dd of=src.raw bs=1M seek=12 conv=notrunc status=none
qemu-img create -q -f qcow2 src.qcow2 $((40 * MiB))
qemu-io -c 'write -P 0x55 1M 200k' -c 'write -z 4M 1M' -c "write -P 0x66 $((39 * MiB)) 1M" \
    src.qcow2 > /dev/null
truncate -s 0 empty.raw; truncate -s $((5 * MiB)) zeros.raw

quiet() { "$@" > /dev/null 2>&1; }

# STREAM SRC NAME [ARGS]: both tools convert SRC; all the checks
stream_case() {
    local src=$1 n=$2; shift 2
    rm -rf q k; mkdir q k
    qemu-img convert "$@" -O vmdk -o subformat=streamOptimized "$src" q/o.vmdk
    kimg convert "$@" -O vmdk -o subformat=streamOptimized "$src" k/o.vmdk
    is "$RC" 0 "$n: exit 0" || { diag "$(< "$T/err")"; return; }
    is "$(< "$T/out")" "" "$n: quiet"
    (cd q && qemu-img info --output=json o.vmdk) > qi.json
    (cd k && qemu-img info --output=json o.vmdk) > ki.json
    # the CID (qemu's is random) and the file's allocation differ by design
    json_norm_files cid,actual-size qi.json ki.json
    is_file ki.json.norm qi.json.norm "$n: qemu-img info as for qemu-img's output"
    ok "$n: the same content as the source" qemu_oracle_compare k/o.vmdk "$src"
    ok "$n: qemu-img check clean" check_clean k/o.vmdk
    ok "$n: vmdkinfo reads it" quiet vmdkinfo k/o.vmdk
    local qs ks; qs=$(stat -c %s q/o.vmdk); ks=$(stat -c %s k/o.vmdk)
    ok "$n: no larger than qemu-img's + 10% ($ks vs $qs)" test "$ks" -le $((qs + qs / 10 + 512))
    # zeros are never stored: the grains qemu-img stores are the ones kimg does
    qemu-img map --output=json q/o.vmdk > qm.json
    qemu-img map --output=json k/o.vmdk > km.json
    is_file km.json qm.json "$n: map as qemu-img's (the same grains stored)"
}

# a third in check (the 1st and 4th: raw, -S 0), the rest in check-slow
stream_case_s() { sampled || return 0; stream_case "$@"; }
stream_case_s src.raw "raw"
stream_case_s src.qcow2 "qcow2" -f qcow2
stream_case_s zeros.raw "all zeros"
stream_case_s src.raw "-S 0" -S 0
stream_case_s src.raw "-c" -c

# the same bytes for any number of workers and the serial writer
mkdir m; kimg convert -m 1 -O vmdk -o subformat=streamOptimized src.raw m/o.vmdk
want=$(sha256sum < m/o.vmdk)
# (a third in check: the file's count stands at 5 cases, check takes the
# 2nd, -m 16)
for m in 2 16 4; do
    sampled || continue
    rm -f m/o.vmdk
    kimg convert -m $m -O vmdk -o subformat=streamOptimized src.raw m/o.vmdk
    is "$(sha256sum < m/o.vmdk)" "$want" "-m $m: the same bytes as -m 1"
done
rm -f m/o.vmdk
KIMG_CONVERT_SERIAL=1 kimg convert -O vmdk -o subformat=streamOptimized src.raw m/o.vmdk
is "$(sha256sum < m/o.vmdk)" "$want" "serial writer: the same bytes"

# layout: version 3, deflate, markers; grains in guest order; EOS at the end
$PY - m/o.vmdk <<'EOF' && pass "layout: version 3, grains in guest order, end-of-stream marker" || fail "layout"
import struct, sys
d = open(sys.argv[1], "rb").read()
assert d[:4] == b"KDMV"
ver, flags = struct.unpack_from("<II", d, 4)
assert ver == 3 and flags & 0x30000 == 0x30000, (ver, flags)
assert struct.unpack_from("<H", d, 77)[0] == 1
over = struct.unpack_from("<Q", d, 64)[0] * 512
off, last = over, -1
while True:
    lba, size = struct.unpack_from("<QI", d, off)
    if size == 0:
        assert d[off:off + 512] == bytes(512) and off + 512 == len(d), (off, len(d))
        break
    assert lba > last, (lba, last)
    last = lba
    off = (off + 12 + size + 511) // 512 * 512
desc = d[512:d.index(b"\0", 512)].decode()
for k in ("ddb.virtualHWVersion", "ddb.toolsVersion", "ddb.adapterType", 'createType="streamOptimized"'):
    assert k in desc, k
EOF

# the options reach the descriptor
kimg convert -O vmdk -o subformat=streamOptimized,adapter_type=lsilogic,hwversion=14,toolsversion=12345 \
    src.raw o2.vmdk
desc=$(head -c 2048 o2.vmdk | tail -c 1536 | tr -d '\0')
like "$desc" 'ddb.adapterType = "lsilogic"' "adapter_type in the descriptor"
like "$desc" 'ddb.virtualHWVersion = "14"' "hwversion in the descriptor"
like "$desc" 'ddb.toolsVersion = "12345"' "toolsversion in the descriptor"
like "$desc" 'RW 49155 SPARSE "o2.vmdk"' "the extent line names the output, not a temporary file"

# a stream image that holds data is not written again (grains are written once)
kimg convert -n -O vmdk src.raw m/o.vmdk
err_line "convert -n into a stream VMDK with data"
like "$(< "$T/err")" "streamOptimized VMDK that holds data" "convert -n: says why"
is "$(sha256sum < m/o.vmdk)" "$want" "convert -n: the image is untouched"
# a new one is (the same bytes as a plain convert but for the CID's source)
qemu-img create -q -f vmdk -o subformat=streamOptimized n.vmdk $size
kimg convert -n -O vmdk src.raw n.vmdk
is "$RC" 0 "convert -n into a new stream VMDK: exit 0"
ok "convert -n into a new stream VMDK: the source's content" qemu_oracle_compare n.vmdk src.raw
# flat and split VMDKs are written in place too (735)
qemu-img create -q -f vmdk -o subformat=monolithicFlat mf.vmdk $size
kimg convert -n -O vmdk src.raw mf.vmdk
is "$RC" 0 "convert -n into a monolithicFlat VMDK: exit 0"

# failures leave no output: a file size limit, a crash, a bad option
(ulimit -f 512; exec "$KIMG" convert -O vmdk -o subformat=streamOptimized src.raw fsz.vmdk) \
    > /dev/null 2> err.fsz && rc=0 || rc=$?
isnt "$rc" 0 "file size limit: the copy fails"
ok "file size limit: no output file" test ! -e fsz.vmdk
ok "file size limit: no temporary file" test -z "$(ls -A | grep kimg-)"
for n in 1 5 20; do
    rc=0; KIMG_CRASH_AFTER=$n "$KIMG" convert -O vmdk -o subformat=streamOptimized src.raw \
        crash.vmdk > /dev/null 2>&1 || rc=$?
    isnt "$rc" 0 "crash after $n changes: the copy dies"
    ok "crash after $n changes: no output file" test ! -e crash.vmdk
    rm -f .crash.vmdk.kimg-*
done
kimg convert -O vmdk -o subformat=streamOptimized,adapter_type=bad src.raw bad.vmdk
err_line "bad adapter_type"
ok "bad adapter_type: no output file" test ! -e bad.vmdk
# (flat and split outputs: 733-735)
kimg convert -O vmdk -o subformat=monolithicFlat,adapter_type=bad src.raw flat.vmdk
err_line "convert into monolithicFlat, bad adapter_type"
ok "convert into monolithicFlat, bad adapter_type: no file left" \
    test -z "$(ls -A | grep "^\.*flat")"

# -p: the progress steps qemu-img prints for the same copy
rm -f pq.vmdk pk.vmdk
qemu-img convert -p -O vmdk -o subformat=streamOptimized src.raw pq.vmdk > pq.txt
kimg convert -p -O vmdk -o subformat=streamOptimized src.raw pk.vmdk
is_file "$T/out" pq.txt "convert -p -O vmdk (streamOptimized): qemu-img's progress steps"

done_testing
