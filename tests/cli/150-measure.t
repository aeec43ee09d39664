#!/bin/bash
# 150-measure.t — `kimg measure` against qemu-img 7.2 measure: the same
# stdout (human and JSON, byte for byte) and exit code for --size over a
# matrix of sizes and -o options (-O qcow2 and raw), for every fixture as
# the source (from inside $FX: qemu-img opens data files relative to the
# working directory), for sources made here (chains over holes, sparse
# 64T, compressed, odd sizes), -l snapshots, and for bad input.
# make check: an eighth of each long matrix's items (10 or more: every
# size, fixture, made source), a third of a short one's and of the
# bad-input cases (lib.sh sampled), and the one-off cases; check-slow: the
# others.
. "$(dirname "$0")/lib.sh"
fixtures

# same ARGS...: run both tools in the current directory; 0 if exit code
# and stdout are the same, else 1 with the difference in $T/why.  kimg's
# exit code in $RC, its stderr in $T/err (as lib.sh's kimg leaves them).
same() {
    local qrc=0 krc=0 q k
    qemu-img measure "$@" > "$T/mq" 2> "$T/mqe" < /dev/null || qrc=$?
    "$KIMG" measure "$@" > "$T/mk" 2> "$T/err" < /dev/null || krc=$?
    RC=$krc
    # builtin reads, no process per comparison (thousands of cases)
    IFS= read -r -d '' q < "$T/mq"; IFS= read -r -d '' k < "$T/mk"
    if [ "$qrc" = "$krc" ] && [ "$q" = "$k" ]; then return 0; fi
    { echo "measure $*: qemu-img exit $qrc, kimg exit $krc"
      diff "$T/mq" "$T/mk" | head -6; head -2 "$T/err"; } > "$T/why"
    return 1
}
# matrix NAME ARGS... -- ITEM...: `same ARGS ITEM` for each item (an item
# may hold several words); one test, the first mismatches as diagnostics.
# check takes an eighth of a long matrix (10 items or more: sizes, fixtures,
# sources, one or two of each), a third of a short one.
matrix() {
    local name=$1 args=() bad=0 n=0 why=""; shift
    while [ "$1" != "--" ]; do args+=("$1"); shift; done; shift
    local item k=3
    [ $# -lt 10 ] || k=8
    for item; do
        sampled $k || continue  # check: an eighth or a third of the items; check-slow: the rest
        n=$((n + 1))
        # shellcheck disable=SC2086
        if ! same "${args[@]}" $item; then
            bad=$((bad + 1))
            [ "$bad" -le 3 ] && why+="$(< "$T/why")"$'\n'
        fi
    done
    if [ "$bad" -eq 0 ]; then pass "$name ($n cases)"; else fail "$name: $bad of $n differ" "$why"; fi
}

SIZES="0 1 512 513 65536 65537 1000000 1073741825 1T 64T 2P 2251799813685249
       9223372036854775807"
sizes() { local s; for s in $SIZES; do echo "--size $s"; done; }
mapfile -t SZ < <(sizes)
SZ4=("--size 0" "--size 1" "--size 1073741825" "--size 64T")

# ---- --size: the options that change a figure over every size, those
# that change none (but must be accepted) over a few
for o in "" cluster_size=512 cluster_size=4k cluster_size=2M refcount_bits=1 refcount_bits=8 \
         refcount_bits=64 refcount_bits=1,cluster_size=512 extended_l2=on \
         extended_l2=on,cluster_size=16k extended_l2=on,cluster_size=2M \
         preallocation=full; do
    matrix "--size, -O qcow2 -o '$o'" -O qcow2 ${o:+-o "$o"} -- "${SZ[@]}"
done
for o in compat=0.10 preallocation=metadata preallocation=falloc lazy_refcounts=on \
         data_file=x.d,data_file_raw=on backing_file=b,backing_fmt=raw encryption=on \
         compression_type=zstd nocow=on,extent_size_hint=1M; do
    matrix "--size, -O qcow2 -o '$o'" -O qcow2 -o "$o" -- "${SZ4[@]}"
done
matrix "--size, -O raw (default)" -- "${SZ[@]}"
matrix "--size, -O raw -o preallocation=full" -O raw -o preallocation=full -- "${SZ4[@]}"
for o in "" extended_l2=on,cluster_size=2M,refcount_bits=64; do
    matrix "--size --output=json, -O qcow2 -o '$o'" --output=json -O qcow2 ${o:+-o "$o"} -- "${SZ[@]}"
done
matrix "--size --output=json, -O raw" --output=json -O raw -- "${SZ[@]}"

# ---- every fixture as the source (bitmaps, data files, chains, ...)
# Unwritten (zero-allocated) host extents read as holes through SEEK_DATA
# until their pages are in the page cache.  kimg's test for a
# metadata-preallocated image (map.c) is not qemu's (which counts the
# clusters with a non-zero refcount): with uncached fixtures the two then
# disagree on whether such extents count (wcomp.qcow2).  Read the files
# first so both see data there; the difference is reported, not hidden.
cat "$FX"/* > /dev/null
cd "$FX" || exit 1
mapfile -t FIX < <(fixture_names)
for o in "" cluster_size=512; do
    matrix "every fixture, -O qcow2 -o '$o'" -O qcow2 ${o:+-o "$o"} -- "${FIX[@]}"
done
matrix "every fixture, -O raw" -O raw -- "${FIX[@]}"
SOME=(v3.qcow2 zlib.qcow2 wcomp.qcow2 chain-top.qcow2 bitmaps.qcow2 bitmap-inuse.qcow2
      datafile.qcow2 prealloc-metadata.qcow2 holes.raw odd.raw)
matrix "some fixtures, --output=json -O qcow2 -o cluster_size=4k" --output=json -O qcow2 \
    -o cluster_size=4k -- "${SOME[@]}"
matrix "some fixtures, --output=json -O raw" --output=json -O raw -- "${SOME[@]}"
for o in extended_l2=on,cluster_size=2M compat=0.10 refcount_bits=1 preallocation=full preallocation=falloc backing_file=x; do
    matrix "some fixtures, -O qcow2 -o '$o'" -O qcow2 -o "$o" -- "${SOME[@]}"
done
mapfile -t FIXF < <(awk '$1 ~ /^(v2|el2|zstd|snap|holes|chain-top|df-top)[.]/ { print "-f " $2 " " $1 }' LIST)
matrix "some fixtures, -U, -f given" -U -O qcow2 -- "${FIXF[@]}"
cd "$T" || exit 1

# ---- sources made here
qi() { qemu-io "$@" > /dev/null 2>&1; }
# raw: data at odd places, holes between, a size that is not a multiple of 512
truncate -s 10000001 holes.raw
printf 'x' | dd of=holes.raw bs=1 seek=70000 conv=notrunc status=none
printf 'y' | dd of=holes.raw bs=1 seek=4194303 conv=notrunc status=none
printf 'z' | dd of=holes.raw bs=1 seek=10000000 conv=notrunc status=none
printf 'w' > one.raw
: > empty.raw
# a chain: raw base with holes, qcow2 middle, overlay with zero clusters
truncate -s 8M base.raw
printf 'b%.0s' {1..5000} | dd of=base.raw bs=1 seek=3000000 conv=notrunc status=none
qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2 10M
qi -f qcow2 -c "write -P 1 1M 64k" -c "write -P 2 9M 4k" mid.qcow2
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
qi -f qcow2 -c "write -z 1M 64k" -c "write -P 3 5M 512" -c "write -z 2M 2M" top.qcow2
# sparse 2T and 64T with data at both ends (qemu-img takes 1 s to walk
# 64T: one case); 4k clusters with data inside 2M clusters
qemu-img create -q -f qcow2 big.qcow2 2T
qi -f qcow2 -c "write -P 7 0 4k" -c "write -P 7 2199023251456 4k" big.qcow2
qemu-img create -q -f qcow2 huge.qcow2 64T
qi -f qcow2 -c "write -P 7 0 4k" -c "write -P 7 70368744173568 4k" huge.qcow2
qemu-img create -q -f qcow2 -o cluster_size=4k small.qcow2 20M
qi -f qcow2 -c "write -P 9 4k 4k" -c "write -P 9 2044k 8k" -c "write -P 9 19M 1k" small.qcow2
# compressed (by kimg and by qemu-img), subclusters, v2
qemu-img convert -c -O qcow2 holes.raw qcomp.qcow2
"$KIMG" convert -c -O qcow2 small.qcow2 kcomp.qcow2
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=128k sub.qcow2 3M
qi -f qcow2 -c "write -P 5 4k 4k" -c "write -P 5 1M 100k" sub.qcow2
qemu-img create -q -f qcow2 -o compat=0.10 old.qcow2 1G
qi -f qcow2 -c "write -P 5 512M 1M" old.qcow2
cat ./* > /dev/null
SRC=(holes.raw one.raw empty.raw base.raw mid.qcow2 top.qcow2 big.qcow2 small.qcow2
     qcomp.qcow2 kcomp.qcow2 sub.qcow2 old.qcow2)
for o in "" cluster_size=512 cluster_size=4k cluster_size=2M extended_l2=on \
         refcount_bits=64,cluster_size=16k preallocation=metadata backing_file=b; do
    matrix "made sources, -O qcow2 -o '$o'" -O qcow2 ${o:+-o "$o"} -- "${SRC[@]}"
done
matrix "made sources, -O raw" -O raw -- "${SRC[@]}"
matrix "made sources, --output=json" --output=json -O qcow2 -- "${SRC[@]}"
matrix "64T source" -O qcow2 -- huge.qcow2
matrix "made sources, -f raw on qcow2 files" -f raw -O qcow2 -- mid.qcow2 big.qcow2 kcomp.qcow2

# ---- -l: a snapshot's content (qemu-img snapshot made it)
cp small.qcow2 snaps.qcow2
qemu-img snapshot -c s1 snaps.qcow2
qi -f qcow2 -c "write -P 4 10M 4M" snaps.qcow2
qemu-img snapshot -c s2 snaps.qcow2
qi -f qcow2 -c "write -z 10M 4M" -c "write -P 1 0 1M" snaps.qcow2
if "$KIMG" measure -O qcow2 -l s1 snaps.qcow2 2>&1 | grep -q 'does not support internal snapshots'; then
    skip "-l snapshots" "kimg_snapshot_load is not implemented yet"
else
    matrix "-l snapshot (ID, name, snapshot.id=, snapshot.name=, both)" -O qcow2 -- \
        "-l s1 snaps.qcow2" "-l 2 snaps.qcow2" "-l snapshot.id=1 snaps.qcow2" \
        "-l snapshot.name=s2 snaps.qcow2" "-l snapshot.id=2,snapshot.name=s2 snaps.qcow2" \
        "-l nosuch snaps.qcow2" "-l snapshot.id=1,snapshot.name=s2 snaps.qcow2" \
        "--output=json -O raw -l s2 snaps.qcow2"
fi

# ---- bad input: qemu-img's exit code (and empty stdout), one line from kimg
# (from the run `same` made); a case each, sampled
bad() {
    sampled || return 0     # check: a third of the cases; check-slow: the rest
    local name=$1; shift
    same "$@" && pass "$name: exit code and stdout as qemu-img's" ||
        fail "$name: exit code and stdout as qemu-img's" "$(< "$T/why")"
    err_line "$name"
}
bad "neither --size nor a file"
bad "--size and a file" --size 1G holes.raw
bad "two files" holes.raw one.raw
bad "-f without a file" -f raw --size 1
bad "-l without a file" -l s1 --size 1
bad "negative size" --size -1
bad "size with a bad suffix" --size 1x
bad "size 8E (past INT64_MAX)" --size 8E
bad "size 16E (past 2^64)" --size 16E
bad "unknown -O" -O foo --size 1
bad "-O of a format qemu cannot measure" -O vmdk --size 1
bad "unknown -o key" -O qcow2 -o foo=1 --size 1
bad "-o help is not help here" -O qcow2 -o help --size 1
bad "-o key not of raw" -O raw -o cluster_size=64k --size 1
bad "cluster size not a power of two" -O qcow2 -o cluster_size=1000 --size 1
bad "cluster size 4M" -O qcow2 -o cluster_size=4M --size 1
bad "cluster size not a size" -O qcow2 -o cluster_size=x --size 1
bad "compat 1.2" -O qcow2 -o compat=1.2 --size 1
bad "compat v3 (create's spelling)" -O qcow2 -o compat=v3 --size 1
bad "refcount_bits 3" -O qcow2 -o refcount_bits=3 --size 1
bad "refcount_bits 128" -O qcow2 -o refcount_bits=128 --size 1
bad "refcount_bits 8 with compat 0.10" -O qcow2 -o refcount_bits=8,compat=0.10 --size 1
bad "preallocation bogus" -O qcow2 -o preallocation=bogus --size 1
bad "extended L2 with 4k clusters" -O qcow2 -o extended_l2=on,cluster_size=4k --size 1
bad "extended_l2 not a bool" -O qcow2 -o extended_l2=maybe --size 1
bad "encrypt.format=luks without a secret" -O qcow2 -o encrypt.format=luks --size 1G
bad "encrypt.format=luks, secret not found" -O qcow2 -o encrypt.format=luks,encrypt.key-secret=s0 --size 1G
bad "size too large for qcow2" -O qcow2 --size 2251799813685249
bad "size too large for 512-byte clusters" -O qcow2 -o cluster_size=512 --size 1T
bad "-o size too large with a source" -O qcow2 -o size=7E,cluster_size=512 holes.raw
bad "--output=xml" --output=xml --size 1
bad "missing source" -O qcow2 nosuch.qcow2
bad "-l on a raw source" -O qcow2 -l s1 holes.raw
bad "rules checked in qemu-img's order (cluster size before compat)" -O qcow2 \
    -o cluster_size=1000,compat=1.2,refcount_bits=3,preallocation=x --size 1
bad "rules checked in qemu-img's order (extended L2 before compat)" -O qcow2 \
    -o extended_l2=on,cluster_size=4k,compat=1.2 --size 1
bad "rules checked in qemu-img's order (preallocation before luks)" -O qcow2 \
    -o encrypt.format=luks,preallocation=x --size 1
# qemu takes an image for metadata-preallocated when at least
# max(A * 10 / 9, A + 2) clusters have a non-zero refcount, A the clusters'
# worth of allocated host blocks, and then reads data clusters over host
# holes as zeros.  Here 7 clusters are in use and 5 allocated (the data
# cluster's tail a hole, the allocation made up past EOF): not
# preallocated, so qemu counts 4k of that cluster.
cp "$FX/wcomp.qcow2" pre.qcow2
if fallocate -p -o 397312 -l 61440 pre.qcow2 2> /dev/null &&
   fallocate -n -o 458752 -l $((335872 - $(stat -c %b pre.qcow2) * 512)) pre.qcow2 2> /dev/null &&
   [ "$(stat -c %b pre.qcow2)" -eq 656 ]; then
    if same -O qcow2 -o cluster_size=4k pre.qcow2; then
        pass "metadata-preallocation test as qemu's"
    else
        fail "metadata-preallocation test as qemu's"
    fi
else
    skip "metadata-preallocation test as qemu's" "fallocate cannot shape the file here"
fi
# a qcow2 source cut inside its L2 table: qemu-img reads the missing part
# as zeros and measures; kimg refuses the damaged image, naming it
cp "$FX/v3.qcow2" cut.qcow2 && truncate -s 300000 cut.qcow2
kimg measure -O qcow2 cut.qcow2
err_line "source cut short"
like "$(< "$T/err")" "^kimg: cut.qcow2: " "source cut short: the message names the source"
# accepted by measure although create refuses them
matrix "what measure does not refuse" -O qcow2 -- \
    "-o lazy_refcounts=on,compat=0.10 --size 1G" "-o extended_l2=on,compat=0.10 --size 1G" \
    "-o compression_type=zstd,compat=0.10 --size 1G" "-o backing_file=b,preallocation=full --size 1G" \
    "-o data_file_raw=on --size 1G" "-o encrypt.format=aes --size 1G" "-o size=5G --size 1G" \
    "-o backing_file= holes.raw" "-o size=1G holes.raw" "-O raw -o preallocation=x --size 1" \
    "-o cluster_size=4k -o refcount_bits=8 --size 1M" "--output=json --output=human --size 1"

done_testing
