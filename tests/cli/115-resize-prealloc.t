#!/bin/bash
# resize --preallocation=metadata|falloc|full on qcow2, against qemu-img on
# twins: same exit code and stdout, kimg's image clean, the same qemu-img
# info (host allocation aside), the same content, and the same map once
# host layout is set aside (offsets, and "zero", which the host file's
# holes decide): the whole new area allocated, as qemu-img allocates it.
# falloc/full also reserve the host space (the file grows by the new area;
# full writes it).
# make check: a quarter of the mode x image matrix (lib.sh sampled; 10 of
# the 13 images, each in one mode, each mode 3 or 4 times) and a third of
# the mode x corner cases (the unaligned growth, the 1-bit refcounts), the
# 32M growth of the 512-byte-cluster image; check-slow the rest.
. "$(dirname "$0")/lib.sh"
fixtures
. "$KIMG_SRC/tests/cli/twins.sh"
. "$KIMG_SRC/tests/cli/twins-once.sh"

# the virtual sizes before: the "size" field of each qcow2 header (one
# python start, where a qemu-img info a case cost three processes)
declare -A vsize
while read -r f v; do vsize[$f]=$v; done < <($PY -S - "$FX"/*.qcow2 <<'PYEOF'
import os, struct, sys
for p in sys.argv[1:]:
    with open(p, "rb") as f:
        print(os.path.basename(p), struct.unpack(">Q", f.read(32)[24:32])[0])
PYEOF
)

# pcase IMG SIZE MODE
pcase() {
    local img=$1 size=$2 mode=$3 name="resize --preallocation=$3 $1 $2"
    twins "$img"
    local b0 b1 vs0=${vsize[$img]} vs1= l
    b0=($(stat -c %b q/"$img" k/"$img"))
    # (each tool from inside its folder, where qemu opens a data file;
    # cd by the shell itself: a subshell's fork costs ~5 ms here)
    cd "$T/q"; QRC=0; qemu-img resize --preallocation="$mode" "$img" "$size" > ../qout 2> ../qerr || QRC=$?
    cd "$T/k"; RC=0; "$KIMG" resize --preallocation="$mode" "$img" "$size" > ../out 2> ../err || RC=$?
    cd "$T"
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || { diag "kimg: $(< err) qemu-img: $(< qerr)"; return; }
    same_text out qout "$name: stdout as qemu-img's"
    [ "$QRC" -eq 0 ] || return 0
    twin_state "$name" "$img" actual-size,offset,zero resize
    while IFS= read -r l; do [[ $l =~ ^\ {4}\"virtual-size\":\ ([0-9]+), ]] && vs1=${BASH_REMATCH[1]}; done < ki.json
    if [ "$mode" != metadata ]; then
        # at least what the guest gained, or what qemu-img reserved if less
        b1=($(stat -c %b q/"$img" k/"$img"))
        local qadd=$(( (b1[0] - b0[0]) * 512 )) kadd=$(( (b1[1] - b0[1]) * 512 ))
        local want=$(( vs1 - vs0 < qadd ? vs1 - vs0 : qadd ))
        ok "$name: host space reserved ($kadd bytes; qemu-img $qadd, guest +$(( vs1 - vs0 )))" \
            test "$kadd" -ge $(( want - 131072 ))
    fi
}

cases=()
for mode in metadata falloc full; do
    for img in v3.qcow2 v2.qcow2 cs512.qcow2 cs2M.qcow2 el2.qcow2 snap.qcow2 zlib.qcow2 \
               chain-top.qcow2 odd.qcow2 prealloc-metadata.qcow2 empty.qcow2 datafile.qcow2 \
               datafile-raw.qcow2; do
        cases+=("$img:$mode")
    done
done
# check: a quarter of the cases, check-slow the rest; ordered so that
# check's quarter (the file's first sampled loop) takes each mode 3 or 4
# times, over 10 of the 13 images (v3 in metadata mode is the +1536 case
# below; an image already preallocated and an empty one: check-slow)
reps_first 4 "cs2M.qcow2:metadata zlib.qcow2:metadata datafile-raw.qcow2:metadata cs512.qcow2:falloc \
    snap.qcow2:falloc odd.qcow2:falloc datafile.qcow2:falloc v2.qcow2:full el2.qcow2:full \
    chain-top.qcow2:full" "${cases[@]}"
for c in "${order[@]}"; do
    sampled 4 || continue
    pcase "${c%:*}" +1M "${c#*:}"
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
