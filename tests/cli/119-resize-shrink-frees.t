#!/bin/bash
# resize --shrink frees what qemu-img frees: images written over their
# whole range (clusters of 512 bytes to 64 KiB, so several L2 tables and
# refcount blocks; written backwards so metadata and data interleave;
# compressed clusters; a snapshot; extended L2; refcount widths 1 and 64)
# are shrunk on twins by both tools.  qemu frees with discard-always: each
# cluster whose refcount falls to 0 (data past the new end, the L2 tables
# and refcount blocks only it used) gets a hole punched, then the file is
# cut after its last used cluster.  kimg must leave the same file size and
# image end offset, or smaller ones (qemu allocates an L2 table for the
# new last cluster when that has none, to discard nothing in it: the last
# layout; kimg does not), no more allocated blocks than qemu-img (it
# merges the freed runs before punching, so with small clusters it frees
# whole file-system blocks qemu leaves allocated: fewer), no leaks, and
# qemu-img check, map, info and content as for qemu-img's result.
. "$(dirname "$0")/lib.sh"

# a file system that cannot punch holes frees nothing for either tool
punch_ok=1
head -c 65536 /dev/urandom > probe
if ! fallocate -p -o 0 -l 65536 probe 2> /dev/null || [ "$(stat -c %b probe)" -ne 0 ]; then
    punch_ok=0
fi
rm -f probe

# mkimg NAME CREATE-OPTS SIZE QEMU-IO-COMMAND...
mkimg() {
    local name=$1 opts=$2 size=$3; shift 3
    qemu-img create -q -f qcow2 -o "$opts" "$name" "$size"
    local cmds=() c
    for c; do cmds+=(-c "$c"); done
    qemu-io -t unsafe -f qcow2 "${cmds[@]}" "$name" > /dev/null
}
backwards() {   # CHUNK COUNT PATTERN: write commands from the end down
    local i
    for ((i = $2 - 1; i >= 0; i--)); do echo "write -P $3 $((i * $1)) $1"; done
}
stat_line() { sed -n "s/^$1: //p" "$2"; }

# shrink IMG [less:]SIZE (less: kimg's image ends sooner than qemu-img's)
shrink() {
    local img=$1 size=${2#less:} name="$1 shrunk to ${2#less:}"
    cp "$img" q.qcow2; cp "$img" k.qcow2
    QRC=0; qemu-img resize -q --shrink q.qcow2 "$size" > qout 2>&1 || QRC=$?
    RC=0; "$KIMG" resize -q --shrink k.qcow2 "$size" > out 2>&1 || RC=$?
    is "$RC/$(< out)" "$QRC/$(< qout)" "$name: exit code and output as qemu-img's" || return 0
    qemu-img check k.qcow2 > kc 2>&1; local kcrc=$?
    qemu-img check q.qcow2 > qc 2>&1
    is "$kcrc" 0 "$name: qemu-img check clean, no leaks"
    is "$(grep -v '^Image end offset' kc)" "$(grep -v '^Image end offset' qc)" \
        "$name: qemu-img check says what it says of qemu-img's"
    local ke qe ks qs
    ke=$(stat_line 'Image end offset' kc); qe=$(stat_line 'Image end offset' qc)
    ks=$(stat -c %s k.qcow2); qs=$(stat -c %s q.qcow2)
    if [ "${2#less:}" != "$2" ]; then
        ok "$name: image end $ke, file $ks: before qemu-img's $qe, $qs" \
            test "$ke" -lt "$qe" -a "$ks" -lt "$qs"
    else
        is "$ke $ks" "$qe $qs" "$name: image end offset and file size as qemu-img's"
    fi
    local kb qb
    kb=$(stat -c %b k.qcow2); qb=$(stat -c %b q.qcow2)
    if [ $punch_ok -eq 1 ]; then
        ok "$name: $((kb / 2)) KiB allocated, not more than qemu-img's $((qb / 2))" test "$kb" -le "$qb"
    else
        skip "$name: allocation" "this file system does not punch holes"
    fi
    qemu-img map --output=json k.qcow2 > km.json
    qemu-img map --output=json q.qcow2 > qm.json
    qemu-img info --output=json k.qcow2 > ki.json
    qemu-img info --output=json q.qcow2 > qi.json
    json_norm_files actual-size,filename km.json qm.json ki.json qi.json
    is_file km.json.norm qm.json.norm "$name: map as qemu-img's, host offsets too"
    is_file ki.json.norm qi.json.norm "$name: info as qemu-img's"
    ok "$name: content as qemu-img's" qemu_oracle_compare k.qcow2 q.qcow2
}

M=$((1024 * 1024))
mkimg c512.qcow2 cluster_size=512 8M "write -P 1 0 8M"
shrink c512.qcow2 2M
shrink c512.qcow2 $((3 * M + 1536))

IFS=$'\n' read -r -d '' -a cmds < <(backwards $((256 * 1024)) 64 2) || true
mkimg c4k-back.qcow2 cluster_size=4k,refcount_bits=1 16M "${cmds[@]}"
shrink c4k-back.qcow2 4M
shrink c4k-back.qcow2 $((M + 512))

mkimg c1k-comp.qcow2 cluster_size=1k 8M "write -c -P 3 0 2M" "write -P 4 2M 2M" \
    "write -c -P 5 4M 4M" "write -P 6 6M 64k"
shrink c1k-comp.qcow2 3M
shrink c1k-comp.qcow2 $((5 * M))

cmds=()
for ((i = 0; i < 16; i += 2)); do cmds+=("write -P 7 $((i * M)) $M"); done
for ((i = 1; i < 16; i += 2)); do cmds+=("write -c -P 8 $((i * M)) $M"); done
mkimg el2-mixed.qcow2 cluster_size=16k,extended_l2=on 16M "${cmds[@]}"
shrink el2-mixed.qcow2 $((5 * M + 1536))

mkimg c2k-snap.qcow2 cluster_size=2k,refcount_bits=64 8M "write -P 9 0 8M"
qemu-img snapshot -c s1 c2k-snap.qcow2
qemu-io -t unsafe -f qcow2 -c "write -P 10 2M 6M" c2k-snap.qcow2 > /dev/null
shrink c2k-snap.qcow2 3M

mkimg c64k-el2.qcow2 cluster_size=64k,extended_l2=on 32M "write -P 11 0 32M"
shrink c64k-el2.qcow2 8M

# data below the new end and past it in turns (kept and freed host
# clusters alternate); nothing at the new last cluster, where qemu
# allocates an L2 table
cmds=()
for ((i = 0; i < 64; i++)); do
    cmds+=("write -P $((i + 1)) $((i * 8192)) 4k")
    if ((i % 4)); then cmds+=("write -P 0x55 $((M + i * 8192)) 4k")
    else cmds+=("write -c -P 0x56 $((M + i * 8192)) 4k"); fi
done
mkimg turns.qcow2 cluster_size=512 2M "${cmds[@]}"
shrink turns.qcow2 less:$((M - 512))
done_testing
