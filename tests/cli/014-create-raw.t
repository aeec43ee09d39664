#!/bin/bash
# kimg create -f raw [-o preallocation=off|falloc|full]: file length is the
# size rounded up to 512 as qemu-img's; off leaves the file sparse, falloc
# and full allocate every block; content reads as zeros; default format
# (no -f) is raw, as qemu-img's.
. "$(dirname "$0")/lib.sh"
blocks() { echo $(( $(stat -c '%b * %B' "$1") )); }
for p in off falloc full; do
    for size in 1M 1000 $((3 * 1024 * 1024 + 512)); do
        rm -f k.raw q.raw
        qemu-img create -q -f raw -o preallocation=$p q.raw $size
        kimg create -q -f raw -o preallocation=$p k.raw $size
        is "$RC" 0 "raw preallocation=$p size $size: exit 0"
        is "$(stat -c %s k.raw 2>/dev/null)" "$(stat -c %s q.raw)" "raw preallocation=$p size $size: length as qemu-img's"
        len=$(stat -c %s q.raw)
        case $p in
        off) ok "raw preallocation=off size $size: sparse (<= 64 KiB allocated)" test "$(blocks k.raw)" -le 65536 ;;
        *)   ok "raw preallocation=$p size $size: every block allocated" test "$(blocks k.raw)" -ge "$len" ;;
        esac
        ok "raw preallocation=$p size $size: reads as zeros" cmp -s k.raw <(head -c "$len" /dev/zero)
    done
done
# no -f: raw
kimg create -q noformat.img 1M
is "$RC" 0 "create without -f: exit 0"
is "$(qemu-img info --output=json noformat.img | grep '"format"')" '    "format": "raw",' "create without -f makes a raw image"
# -o size=
kimg create -q -f raw -o size=64k sized.raw
is "$(stat -c %s sized.raw)" 65536 "-o size=64k"
done_testing
