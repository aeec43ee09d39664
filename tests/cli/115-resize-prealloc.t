#!/bin/bash
# resize --preallocation=metadata|falloc|full on qcow2, against qemu-img on
# twins: same exit code and stdout, kimg's image clean, the same qemu-img
# info (host allocation aside), the same content, and the same map once
# host layout is set aside (offsets, and "zero", which the host file's
# holes decide): the whole new area allocated, as qemu-img allocates it.
# falloc/full also reserve the host space (the file grows by the new area;
# full writes it).
# make check: a third of the mode x image matrix (lib.sh sampled; each
# image in one mode, 13 images rotating over the 3 modes) and of the mode
# x corner cases (the unaligned growth, the 1-bit refcounts); check-slow
# the rest.
. "$(dirname "$0")/lib.sh"
fixtures
. "$KIMG_SRC/tests/cli/twins.sh"

# pcase IMG SIZE MODE
pcase() {
    local img=$1 size=$2 mode=$3 name="resize --preallocation=$3 $1 $2"
    twins "$img"
    local qb0 kb0 vs0 vs1
    qb0=$(stat -c %b q/"$img"); kb0=$(stat -c %b k/"$img")
    vs0=$(qemu-img info --output=json "$FX/$img" | sed -n 's/^    "virtual-size": \([0-9]*\),/\1/p')
    QRC=0; (cd q && qemu-img resize --preallocation="$mode" "$img" "$size") > qout 2> qerr || QRC=$?
    RC=0; (cd k && "$KIMG" resize --preallocation="$mode" "$img" "$size") > out 2> err || RC=$?
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || { diag "kimg: $(< err) qemu-img: $(< qerr)"; return; }
    is_file out qout "$name: stdout as qemu-img's"
    [ "$QRC" -eq 0 ] || return 0
    twin_state "$name" "$img" actual-size,offset,zero resize
    vs1=$(sed -n 's/^    "virtual-size": \([0-9]*\),/\1/p' ki.json)
    if [ "$mode" != metadata ]; then
        # at least what the guest gained, or what qemu-img reserved if less
        local qadd=$(( ($(stat -c %b q/"$img") - qb0) * 512 )) kadd=$(( ($(stat -c %b k/"$img") - kb0) * 512 ))
        local want=$(( vs1 - vs0 < qadd ? vs1 - vs0 : qadd ))
        ok "$name: host space reserved ($kadd bytes; qemu-img $qadd, guest +$(( vs1 - vs0 )))" \
            test "$kadd" -ge $(( want - 131072 ))
    fi
}

for mode in metadata falloc full; do
    for img in v3.qcow2 v2.qcow2 cs512.qcow2 cs2M.qcow2 el2.qcow2 snap.qcow2 zlib.qcow2 \
               chain-top.qcow2 odd.qcow2 prealloc-metadata.qcow2 empty.qcow2 datafile.qcow2 \
               datafile-raw.qcow2; do
        sampled || continue     # check: a third of the cases; check-slow: the rest
        pcase "$img" +1M "$mode"
    done
done
for mode in metadata falloc full; do
    for c in "v3.qcow2 +1536" "rb1.qcow2 40M"; do
        sampled || continue
        # shellcheck disable=SC2086
        pcase $c "$mode"
    done
done
pcase cs512.qcow2 32M metadata    # thousands of L2 tables: the refcount table grows
done_testing
