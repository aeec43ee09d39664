#!/bin/bash
# Holes and zeros are never copied as data: a raw->raw copy of a sparse
# disk is as sparse as the source, a qcow2 target leaves zero ranges
# unallocated, an 8 GiB hole converts to a near-empty file, and -S 0
# allocates everything.
. "$(dirname "$0")/lib.sh"
alloc() { du -k "$1" | cut -f1; }
qemu-img create -q -f raw src.raw 64M
qemu-io -f raw -c 'write -P 1 1M 3M' -c 'write -P 0 8M 4M' -c 'write -P 2 60M 1M' src.raw > /dev/null
# src.raw holds 4 MiB of explicit zeros at 8M: those must become holes too
kimg convert -f raw -O raw src.raw out.raw
is "$RC" 0 "raw -> raw"
ok "raw -> raw identical" qemu_oracle_compare src.raw out.raw
a=$(alloc out.raw)
ok "raw -> raw allocates only the 4 MiB of data (got ${a} KiB)" test "$a" -le $((4 * 1024 + 64))

kimg convert -f raw -O qcow2 src.raw out.qcow2
is "$RC" 0 "raw -> qcow2"
ok "raw -> qcow2 identical" qemu_oracle_compare src.raw out.qcow2
qemu-img map --output=json out.qcow2 > map.json
data=$($PY -c 'import json,sys; print(sum(e["length"] for e in json.load(open("map.json")) if e["data"]))')
is "$data" $((4 * 1024 * 1024)) "qcow2 target maps exactly the 4 MiB of data"

qemu-img create -q -f raw hole.raw 8G
kimg convert -f raw -O qcow2 hole.raw hole.qcow2
is "$RC" 0 "8 GiB hole -> qcow2"
a=$(alloc hole.qcow2)
ok "8 GiB hole -> qcow2 is tiny (${a} KiB)" test "$a" -le 1024
kimg convert -f raw -O raw hole.raw hole2.raw
is "$(alloc hole2.raw)" 0 "8 GiB hole -> raw allocates nothing"
rm -f hole.raw hole2.raw hole.qcow2

kimg convert -S 0 -f raw -O raw src.raw full.raw
a=$(alloc full.raw)
ok "-S 0 fully allocates the output (${a} KiB)" test "$a" -ge $((64 * 1024))
ok "-S 0 output identical" qemu_oracle_compare src.raw full.raw
kimg convert -S 0 -f raw -O qcow2 src.raw full.qcow2
qemu-img map --output=json full.qcow2 > map.json
data=$($PY -c 'import json,sys; print(sum(e["length"] for e in json.load(open("map.json")) if e["data"]))')
is "$data" $((64 * 1024 * 1024)) "-S 0 qcow2 target is all data"
ok "-S 0 qcow2 passes qemu-img check" check_clean full.qcow2
done_testing
