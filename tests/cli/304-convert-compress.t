#!/bin/bash
# convert -c: compressed clusters with the image's compression type (zlib
# by default, zstd with -o compression_type=zstd) that qemu-img reads back
# identically and checks clean; a cluster that is half data, half zeros is
# still one compressed cluster; the output is no larger than qemu-img's by
# more than 2%; the layout does not depend on the number of requests in
# flight; compressed sources read in windows (entries reversed, shared, far
# apart, widest; past EOF or inside another cluster: one-line errors), and
# zlib streams that run past a cluster or end short decode as in qemu-img
# with libdeflate and with zlib alone (KIMG_NO_LIBDEFLATE=1).
# make check: a third of the cases (lib.sh sampled) of the compression
# type x cluster size matrix (zlib 64k, zstd 2M) and of the mangled
# sources (a layout that reads, one refused, a zlib stream that runs past
# its cluster, zstd's own); check-slow the rest.
. "$(dirname "$0")/lib.sh"
qemu-img create -q -f raw src.raw 8M
# compressible patterns, an incompressible cluster, a half-zero 2M cluster
qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'write -P 0x22 3M 512k' \
    -c 'write -P 0x33 6M 64k' src.raw > /dev/null
head -c 65536 /dev/urandom | dd of=src.raw bs=64k seek=100 conv=notrunc status=none
# (check's third: zlib with 64k clusters, zstd with 2M)
for ct in zlib zstd; do
    for cs in 64k 2M; do
        sampled || continue
        name="-c $ct cluster_size=$cs"
        kimg convert -c -o compression_type=$ct,cluster_size=$cs -f raw -O qcow2 src.raw k.qcow2
        is "$RC" 0 "$name: exit 0" || diag "$(< "$T/err")"
        ok "$name: reads identically in qemu-img" qemu_oracle_compare src.raw k.qcow2
        # one qemu-img check of each image: clean (its exit code), and
        # the compressed clusters it counts
        rc=0; qemu-img check --output=json k.qcow2 > kc.json 2> /dev/null || rc=$?
        is "$rc" 0 "$name: qemu-img check clean"
        qemu-img convert -c -o compression_type=$ct,cluster_size=$cs -f raw -O qcow2 src.raw q.qcow2
        qemu-img check --output=json q.qcow2 > qc.json
        qemu-img info --output=json k.qcow2 > ki.json
        read -r kcc qcc kct < <($PY -c 'import json, sys
def get(path, f):
    try:
        return f(json.load(open(path)))
    except Exception:
        return "unreadable:" + path
print(get("kc.json", lambda d: d.get("compressed-clusters", 0)),
      get("qc.json", lambda d: d.get("compressed-clusters", 0)),
      get("ki.json", lambda d: d["format-specific"]["data"]["compression-type"]))')
        is "$kcc" "$qcc" "$name: as many compressed clusters as qemu-img"
        ks=$(stat -c %s k.qcow2); qs=$(stat -c %s q.qcow2)
        ok "$name: size $ks within 2% of qemu-img's $qs" test $((ks * 100)) -le $((qs * 102))
        is "$kct" "$ct" "$name: compression type recorded"
        rm -f k.qcow2 q.qcow2
    done
done
kimg convert -c -m 1 -f raw -O qcow2 src.raw one.qcow2
kimg convert -c -m 16 -f raw -O qcow2 src.raw many.qcow2
ok "the layout does not depend on -m" cmp -s one.qcow2 many.qcow2
# a compressed qcow2 source converts back to the same content
kimg convert -f qcow2 -O raw one.qcow2 back.raw
ok "compressed source -> raw identical" qemu_oracle_compare src.raw back.raw
# Compressed sources are read in windows (neighbouring clusters' data in one
# read, decompressed from there): layouts that break the usual order read
# as qemu-img reads them (entries reversed, shared, one far past the others,
# one claiming the most sectors its field allows), and broken entries (data
# past the end of the file, an entry pointing into another cluster's data)
# fail with one line and leave no target.
head -c 800000 /dev/urandom | base64 -w0 | head -c 1048576 > pat.raw
mangle() {  # mangle IMAGE CASE: rewrite the L2 entries of guest clusters 0-15
    $PY - "$@" <<'PYEOF'
import struct, sys
path, case = sys.argv[1], sys.argv[2]
d = bytearray(open(path, "rb").read())
cb = struct.unpack(">I", d[20:24])[0]
l1 = struct.unpack(">Q", d[40:48])[0]
l2 = struct.unpack(">Q", d[l1:l1 + 8])[0] & 0x00FFFFFFFFFFFE00
x = 62 - (cb - 8)
ents = [struct.unpack(">Q", d[l2 + 8 * i:l2 + 8 * i + 8])[0] for i in range(16)]
assert all(e & (1 << 62) for e in ents), "not all clusters compressed"
off = lambda e: e & ((1 << x) - 1)
nsec = lambda e: ((e >> x) & ((1 << (cb - 8)) - 1)) + 1
mk = lambda o, n: (1 << 62) | ((n - 1) << x) | o
if case == "reversed":
    ents = ents[::-1]
elif case == "shared":
    ents[3] = ents[4] = ents[1]
elif case == "far":
    o, n = off(ents[6]), nsec(ents[6])
    data = d[o:(o & ~511) + n * 512]
    new = len(d) + (1 << 20)
    d += bytes(new - len(d)) + data
    ents[6] = mk(new, n)
elif case == "widest":
    ents[2] = mk(off(ents[2]), 1 << (cb - 8))
elif case == "past-eof":
    ents[9] = mk(len(d) + (1 << 20), nsec(ents[9]))
elif case == "inside":
    ents[5] = mk(off(ents[4]) + 7, nsec(ents[4]))
elif case in ("overlong", "short"):
    # a raw deflate stream of two clusters' data, or of half a cluster
    import zlib
    n = (2 << cb) if case == "overlong" else (1 << cb) // 2
    z = zlib.compressobj(6, zlib.DEFLATED, -12)
    data = z.compress(bytes(range(256)) * (n // 256) + b"") + z.flush()
    new = (len(d) + 511) & ~511
    nsecs = (len(data) + 511) // 512
    d += bytes(new - len(d)) + data + bytes(nsecs * 512 - len(data))
    ents[10] = mk(new, nsecs)
for i, e in enumerate(ents):
    d[l2 + 8 * i:l2 + 8 * i + 8] = struct.pack(">Q", e)
open(path, "wb").write(d)
PYEOF
}
# (a third in check: the file's count stands at 4 cases here, so check
# takes the 3rd, 6th, 9th and 12th of these 14: zlib far, zlib overlong,
# zstd reversed, zstd inside)
for ct in zlib zstd; do
    qemu-img convert -c -o compression_type=$ct -f raw -O qcow2 pat.raw c-$ct.qcow2
    cases="reversed shared far widest past-eof overlong short inside"
    [ $ct = zstd ] && cases="reversed shared widest inside past-eof far"
    for case in $cases; do
        sampled || continue
        name="$ct source, $case entries"
        cp c-$ct.qcow2 m.qcow2
        ok "$name: entries rewritten" mangle m.qcow2 $case
        rm -f k.raw q.raw
        qimg convert -f qcow2 -O raw m.qcow2 q.raw
        kimg convert -f qcow2 -O raw m.qcow2 k.raw
        is "$RC" "$QRC" "$name: exit code as qemu-img's ($QRC)" || diag "$(< "$T/err")"
        if [ "$QRC" = 0 ]; then
            ok "$name: reads as qemu-img reads it" cmp -s k.raw q.raw
        else
            err_line "$name"
            ok "$name: no target left" test ! -e k.raw
        fi
        if [ $ct = zlib ]; then
            # zlib clusters decode with libdeflate: zlib
            # alone must give the same result
            rm -f k2.raw
            KIMG_NO_LIBDEFLATE=1 kimg convert -f qcow2 -O raw m.qcow2 k2.raw
            is "$RC" "$QRC" "$name, zlib only: exit code as qemu-img's ($QRC)"
            [ "$QRC" != 0 ] || ok "$name, zlib only: reads as qemu-img reads it" cmp -s k2.raw q.raw
        fi
    done
done
done_testing
