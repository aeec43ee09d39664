#!/bin/bash
# convert -O vmdk -o subformat=monolithicFlat|twoGbMaxExtentSparse|
# twoGbMaxExtentFlat: from raw and qcow2 sources with data and holes, against
# qemu-img's output for the same command: the same files (descriptor and
# extent names, sizes), the same descriptor but for the CID, qemu-img info
# and map as for qemu-img's, the source's content (qemu-img compare), check
# clean, vmdkinfo reads the descriptor, allocation within qemu-img's + 10%
# (holes never written); over an existing image, through a symlink.
# make check: a third of the subformat x source matrix (lib.sh sampled:
# every subformat and every source once), of the option cases (-c) and of
# the -p cases (twoGbMaxExtentFlat); check-slow the rest.
. "$(dirname "$0")/lib.sh"
require vmdkinfo
MiB=$((1024 * 1024)); GiB=$((1024 * MiB))

# raw: three extents when split (2 GiB, 2 GiB, 3 MiB): data at the start,
# across both 2 GiB boundaries, random data, explicit zeros, the last sector
rsize=$((4 * GiB + 3 * MiB))
truncate -s $rsize src.raw
qemu-io -f raw -c 'write -P 0x11 0 4k' -c "write -P 0x22 $((2 * GiB - 1000)) 5000" \
    -c "write -P 0x33 $((4 * GiB - 70000)) 1M" -c "write -P 0 $((300 * MiB)) 64k" \
    -c "write -P 0x44 $((rsize - 512)) 512" src.raw > /dev/null
head -c $MiB /dev/urandom | dd of=src.raw bs=1M seek=100 conv=notrunc status=none
# qcow2: two extents when split; a zero cluster, a compressed one
qemu-img create -q -f qcow2 src.qcow2 $((2 * GiB + MiB))
qemu-io -c 'write -P 0x55 1M 200k' -c 'write -z 4M 1M' \
    -c "write -P 0x66 $((2 * GiB - 64 * 1024)) 192k" -c 'write -c -P 0x77 8M 64k' \
    src.qcow2 > /dev/null
qemu-img create -q -f qcow2 small.qcow2 $((40 * MiB))
qemu-io -c 'write -P 0x55 1M 200k' -c 'write -z 4M 1M' small.qcow2 > /dev/null
truncate -s $((5 * MiB)) zeros.raw

quiet() { "$@" > /dev/null 2>&1; }
# the files of folder D: "name size", one a line; sizes in whole sectors
# (a descriptor no write rewrote holds a random CID of 1 to 8 digits)
layout() { (cd "$1" && stat -c '%n %s' -- * | sort | awk '{ print $1, int(($2 + 511) / 512) }'); }
# the descriptor's text without its CID (qemu's is random) and padding
desc_text() { tr -d '\0' < "$1" | grep -v '^CID='; }
# map --output=json on stdin: the ranges that hold data (not zero), merged
data_ranges() {
    $PY -c '
import json, sys
out = []
for e in json.load(sys.stdin):
    if e["zero"] or not e["data"] or (e["start"] == 0 and e["length"] == 4096):
        continue
    if out and out[-1][1] == e["start"]:
        out[-1][1] += e["length"]
    else:
        out.append([e["start"], e["start"] + e["length"]])
for a, b in out:
    print(a, b)'
}
alloc_kib() { du -sk "$1" | cut -f1; }

# CASE SRC NAME SUBFORMAT [ARGS]: both tools convert SRC; all the checks
flat_case() {
    local src=$1 n="$3 from $2" sub=$3; shift 3
    rm -rf q k; mkdir q k
    qemu-img convert "$@" -O vmdk -o subformat=$sub "$src" q/o.vmdk
    kimg convert "$@" -O vmdk -o subformat=$sub "$src" k/o.vmdk
    is "$RC" 0 "$n: exit 0" || { diag "$(< "$T/err")"; return; }
    is "$(< "$T/out")" "" "$n: quiet"
    is "$(layout k)" "$(layout q)" "$n: the files of qemu-img's output, of its sizes"
    is "$(desc_text k/o.vmdk)" "$(desc_text q/o.vmdk)" "$n: the descriptor but for the CID"
    (cd q && qemu-img info --output=json o.vmdk) > qi.json
    (cd k && qemu-img info --output=json o.vmdk) > ki.json
    json_norm_files cid,actual-size qi.json ki.json
    is_file ki.json.norm qi.json.norm "$n: qemu-img info as for qemu-img's output"
    # (qemu-img writes zeros into a flat file's first 4 KiB as it creates
    # it: a range of exactly those bytes is left out on both sides)
    (cd q && qemu-img map --output=json o.vmdk) | data_ranges > qm.txt
    (cd k && qemu-img map --output=json o.vmdk) | data_ranges > km.txt
    is_file km.txt qm.txt "$n: map's data ranges as qemu-img's (the same data stored)"
    ok "$n: the same content as the source" qemu_oracle_compare k/o.vmdk "$src"
    ok "$n: qemu-img check clean" check_clean k/o.vmdk
    ok "$n: vmdkinfo reads it" quiet vmdkinfo k/o.vmdk
    local qa ka; qa=$(alloc_kib q); ka=$(alloc_kib k)
    ok "$n: allocation within qemu-img's + 10% ($ka vs $qa KiB)" \
        test "$ka" -le $((qa + qa / 10 + 8))
    is "$(ls -A k | grep -c kimg-)" 0 "$n: no temporary file left"
}

# the subformat x source matrix, then the option cases: a third in check
# (lib.sh sampled), the first of each three, so that check takes every
# source and every subformat (twoGbMaxExtentFlat from raw, Sparse from
# qcow2, monolithicFlat with -S 0, Sparse from zeros) and -c
flat_case_s() { sampled || return 0; flat_case "$@"; }
for sub in twoGbMaxExtentFlat monolithicFlat twoGbMaxExtentSparse; do
    flat_case_s src.raw raw $sub
done
for sub in twoGbMaxExtentSparse monolithicFlat twoGbMaxExtentFlat; do
    flat_case_s src.qcow2 qcow2 $sub -f qcow2
done
for sub in monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat; do
    flat_case_s small.qcow2 "-S 0" $sub -S 0 -f qcow2
done
for sub in twoGbMaxExtentSparse monolithicFlat twoGbMaxExtentFlat; do
    flat_case_s zeros.raw "all zeros" $sub
done
# options reach the descriptor; -c is taken and stored plainly, as qemu-img
flat_case_s small.qcow2 "-c" twoGbMaxExtentSparse -c -f qcow2
flat_case_s small.qcow2 "options" twoGbMaxExtentSparse -f qcow2 -o adapter_type=lsilogic,hwversion=14
flat_case_s small.qcow2 "zeroed_grain" twoGbMaxExtentSparse -f qcow2 -o zeroed_grain=on

# -p: the progress steps qemu-img prints for the same copy (a third in
# check: twoGbMaxExtentFlat, the first)
for sub in twoGbMaxExtentFlat monolithicFlat twoGbMaxExtentSparse; do
    sampled || continue
    rm -rf q k; mkdir q k
    qemu-img convert -p -f qcow2 -O vmdk -o subformat=$sub src.qcow2 q/o.vmdk > pq.txt
    kimg convert -p -f qcow2 -O vmdk -o subformat=$sub src.qcow2 k/o.vmdk
    is_file "$T/out" pq.txt "$sub, convert -p: qemu-img's progress steps"
done

# over an existing image of another subformat and size: the new one whole
# (the old extent files it does not name stay, as with qemu-img)
rm -rf o; mkdir o
qemu-img convert -O vmdk -o subformat=twoGbMaxExtentFlat src.raw o/d.vmdk
kimg convert -O vmdk -o subformat=monolithicFlat small.qcow2 o/d.vmdk
is "$RC" 0 "over an existing split image: exit 0"
ok "over an existing split image: the new content" qemu_oracle_compare o/d.vmdk small.qcow2
kimg convert -f raw -O vmdk -o subformat=monolithicFlat zeros.raw o/d.vmdk
is "$RC" 0 "over an existing flat image of the same names: exit 0"
ok "over an existing flat image of the same names: the new content" \
    qemu_oracle_compare o/d.vmdk zeros.raw
is "$(stat -c %s o/d-flat.vmdk)" $((5 * MiB)) "the extent replaced, of the new size"
is "$(ls -A o | grep -c kimg-)" 0 "no temporary file left"

# through a symlink into another folder: the descriptor written through
# it, the extents beside the link, as qemu-img places them
rm -rf l lq r1 r2; mkdir l lq r1 r2
ln -s ../r1/t.vmdk l/link.vmdk; ln -s ../r2/t.vmdk lq/link.vmdk
qemu-img convert -O vmdk -o subformat=monolithicFlat small.qcow2 lq/link.vmdk
kimg convert -O vmdk -o subformat=monolithicFlat small.qcow2 l/link.vmdk
is "$RC" 0 "through a symlink: exit 0"
is "$(layout l; layout r1)" "$(layout lq; layout r2)" "through a symlink: qemu-img's files"
ok "through a symlink: a symlink still" test -L l/link.vmdk
ok "through a symlink: the content" qemu_oracle_compare l/link.vmdk small.qcow2

# a split delta disk over a VMDK parent (-B): partial grains filled from it
qemu-img create -q -f vmdk base.vmdk $((100 * MiB))
qemu-io -c 'write -P 0x11 0 10M' base.vmdk > /dev/null
qemu-img create -q -f qcow2 -b base.vmdk -F vmdk top.qcow2
qemu-io -c 'write -P 0x22 1000k 100k' top.qcow2 > /dev/null
flat_case top.qcow2 "-B" twoGbMaxExtentSparse -f qcow2 -B ../base.vmdk -F vmdk

# -c into a flat VMDK: qemu-img's "invalid cluster size" (a flat extent
# has no cluster), no file left (qemu-img leaves its files); into a new
# image and an existing one
for sub in monolithicFlat twoGbMaxExtentFlat; do
    rm -rf c cq; mkdir c cq
    qimg convert -c -O vmdk -o subformat=$sub small.qcow2 cq/d.vmdk
    kimg convert -c -O vmdk -o subformat=$sub small.qcow2 c/d.vmdk
    is "$RC" "$QRC" "-c into a new $sub: exit code as qemu-img's"
    is "$(< "$T/err")" "$(sed 's/^qemu-img: /kimg: /' "$T/qerr")" "-c into a new $sub: qemu-img's message"
    isnt "$(ls -A cq)" "" "(qemu-img leaves its files)"
    is "$(ls -A c)" "" "-c into a new $sub: no file left"
    qemu-img create -q -f vmdk -o subformat=$sub c/e.vmdk $((40 * MiB))
    before=$(cat c/* | sha256sum)
    kimg convert -n -c -O vmdk small.qcow2 c/e.vmdk
    err_line "-c into an existing $sub"
    like "$(< "$T/err")" "invalid cluster size" "-c into an existing $sub: qemu-img's message"
    is "$(cat c/* | sha256sum)" "$before" "-c into an existing $sub: untouched"
done

done_testing
