#!/bin/bash
# convert -c: compressed clusters with the image's compression type (zlib
# by default, zstd with -o compression_type=zstd) that qemu-img reads back
# identically and checks clean; a cluster that is half data, half zeros is
# still one compressed cluster; the output is no larger than qemu-img's by
# more than 2%; the layout does not depend on the number of requests in
# flight.
. "$(dirname "$0")/lib.sh"
stat_json() { qemu-img check --output=json "$1" | $PY -c "import json,sys; print(json.load(sys.stdin).get('$2', 0))"; }
qemu-img create -q -f raw src.raw 8M
# compressible patterns, an incompressible cluster, a half-zero 2M cluster
qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'write -P 0x22 3M 512k' \
    -c 'write -P 0x33 6M 64k' src.raw > /dev/null
head -c 65536 /dev/urandom | dd of=src.raw bs=64k seek=100 conv=notrunc status=none
for ct in zlib zstd; do
    for cs in 64k 2M; do
        name="-c $ct cluster_size=$cs"
        kimg convert -c -o compression_type=$ct,cluster_size=$cs -f raw -O qcow2 src.raw k.qcow2
        is "$RC" 0 "$name: exit 0" || diag "$(cat "$T/err")"
        ok "$name: reads identically in qemu-img" qemu_oracle_compare src.raw k.qcow2
        ok "$name: qemu-img check clean" check_clean k.qcow2
        qemu-img convert -c -o compression_type=$ct,cluster_size=$cs -f raw -O qcow2 src.raw q.qcow2
        is "$(stat_json k.qcow2 compressed-clusters)" "$(stat_json q.qcow2 compressed-clusters)" \
           "$name: as many compressed clusters as qemu-img"
        ks=$(stat -c %s k.qcow2); qs=$(stat -c %s q.qcow2)
        ok "$name: size $ks within 2% of qemu-img's $qs" test $((ks * 100)) -le $((qs * 102))
        is "$(qemu-img info --output=json k.qcow2 | $PY -c 'import json,sys; print(json.load(sys.stdin)["format-specific"]["data"]["compression-type"])')" \
           "$ct" "$name: compression type recorded"
        rm -f k.qcow2 q.qcow2
    done
done
kimg convert -c -m 1 -f raw -O qcow2 src.raw one.qcow2
kimg convert -c -m 16 -f raw -O qcow2 src.raw many.qcow2
ok "the layout does not depend on -m" cmp -s one.qcow2 many.qcow2
# a compressed qcow2 source converts back to the same content
kimg convert -f qcow2 -O raw one.qcow2 back.raw
ok "compressed source -> raw identical" qemu_oracle_compare src.raw back.raw
done_testing
