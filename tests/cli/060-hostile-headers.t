#!/bin/bash
# Hostile qcow2 headers (byte patches of a valid image): kimg info, map,
# check and compare never crash or hang (exit < 128, not 124), fail with
# one "kimg: " line where they fail, and never modify the input.  Headers
# qemu-img refuses to open (bad cluster_bits, huge/unaligned L1 or
# refcount table, unknown incompatible feature bit, version, header and
# extension lengths, sizes, backing-name offset, truncation inside the
# header) must be refused by every command, as qemu-img does.
# make check: a third of the headers, every kind of refusal among them
# (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
fixtures
KIMG_TIMEOUT=10
# name | patch command (on $f) | must kimg refuse (qemu-img does)?
# In threes: make check takes the first of each (lib.sh sampled), which
# has every kind of refusal named above; check-slow the other two.
cases=(
    "trunc20|truncate -s 20 \$f|yes"
    "trunc71|truncate -s 71 \$f|yes"
    "trunc103|truncate -s 103 \$f|yes"

    "trunc111|truncate -s 111 \$f|no"
    "trunc1000|truncate -s 1000 \$f|no"
    "trunc70000|truncate -s 70000 \$f|no"

    "l1-size-4G|put_be 4 \$f 36 4294967295|yes"
    "trunc200000|truncate -s 200000 \$f|no"
    "l1-size-32M|put_be 4 \$f 36 33554432|yes"

    "l1-offset-unaligned|put_be 8 \$f 40 196609|yes"
    "l1-offset-past-eof|put_be 8 \$f 40 1099511627776|no"
    "l1-offset-huge|put_be 8 \$f 40 18446744073709486080|yes"

    "reftable-unaligned|put_be 8 \$f 48 65537|yes"
    "reftable-past-eof|put_be 8 \$f 48 1099511627776|no"
    "reftable-clusters-4G|put_be 4 \$f 56 4294967295|yes"

    "cluster-bits-22|put_be 4 \$f 20 22|yes"
    "cluster-bits-8|put_be 4 \$f 20 8|yes"
    "cluster-bits-63|put_be 4 \$f 20 63|yes"

    "version-1|put_be 4 \$f 4 1|yes"
    "cluster-bits-255|put_be 4 \$f 20 255|yes"
    "version-4|put_be 4 \$f 4 4|yes"

    "crypt-luks-no-header|put_be 4 \$f 32 2|no"
    "version-0|put_be 4 \$f 4 0|no"
    "crypt-aes|put_be 4 \$f 32 1|no"

    "nb-snapshots-64k|put_be 4 \$f 60 65536|yes"
    "crypt-99|put_be 4 \$f 32 99|no"
    "nb-snapshots-4G|put_be 4 \$f 60 4294967295|no"

    "incompat-bit-5|put_be 8 \$f 72 32|yes"
    "snapshots-past-eof|put_be 4 \$f 60 1; put_be 8 \$f 64 1099511627776|no"
    "incompat-bit-63|put_be 8 \$f 72 9223372036854775808|yes"

    "corrupt-bit|put_be 8 \$f 72 2|no"
    "incompat-all|put_be 8 \$f 72 18446744073709551615|yes"
    "compat-bit-63|put_be 8 \$f 80 9223372036854775808|no"

    "refcount-order-7|put_be 4 \$f 96 7|yes"
    "autoclear-bits|put_be 8 \$f 88 18446744073709551615|no"
    "refcount-order-huge|put_be 4 \$f 96 4294967295|yes"

    "header-length-1M|put_be 4 \$f 100 1000000|yes"
    "header-length-50|put_be 4 \$f 100 50|yes"
    "header-length-odd|put_be 4 \$f 100 105|no"

    "size-2^62|put_be 8 \$f 24 4611686018427387904|yes"
    "size-2^63-1|put_be 8 \$f 24 9223372036854775807|yes"
    "size-2^64-1|put_be 8 \$f 24 18446744073709551615|yes"

    "backing-offset-past-eof|put_be 8 \$f 8 1099511627776; put_be 4 \$f 16 10|yes"
    "backing-size-2000|put_be 4 \$f 16 2000|no"
    "backing-size-2000-set|put_be 8 \$f 8 512; put_be 4 \$f 16 2000|no"

    "ext-length-past-cluster|poke \$f 116 0000fff0|yes"
    "ext-length-huge|poke \$f 116 ffffff00|yes"
)
cp "$FX/v3.qcow2" good.qcow2
qemu-img convert -O raw good.qcow2 good.raw
for c in "${cases[@]}"; do
    sampled || continue
    IFS='|' read -r name patch refuse <<< "$c"
    f=$name.qcow2; cp good.qcow2 "$f"; eval "$patch"
    before=$(sha "$f")
    if [ "$refuse" = yes ]; then
        # keep the list honest: qemu-img does refuse it
        qrc=0; timeout 20 qemu-img info "$f" > /dev/null 2>&1 || qrc=$?
        isnt "$qrc" 0 "$name: qemu-img info refuses it too"
    fi
    for cmd in "info" "info --output=json" "map --output=json" "check" "compare $f good.raw"; do
        set -- $cmd
        [ "$1" = compare ] || set -- "$@" "$f"
        kimg "$@"
        ok "$name: kimg $cmd: no crash, no hang (exit $RC)" test "$RC" -lt 128 -a "$RC" -ne 124
        if [ "$refuse" = yes ]; then
            err_line "$name: kimg $cmd refuses it"
        elif [ "$RC" -ne 0 ] && ! { [ "$1" = check ] && [ "$RC" -le 3 ]; } &&
             ! { [ "$1" = compare ] && [ "$RC" -eq 1 ]; }; then
            err_line "$name: kimg $cmd fails cleanly"
        fi
        is "$(sha "$f")" "$before" "$name: kimg $cmd leaves the file unchanged"
    done
done
done_testing
