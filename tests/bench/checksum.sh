#!/bin/bash
# checksum.sh WORKDIR — benchmark of `kimg checksum` (issue 6), standalone:
#   builds once (cached in WORKDIR/checksum/) a 4 GiB raw disk holding a
#   real ext4 file system filled from /usr/share and /usr/bin (about 1.2 GiB
#   of data, the rest holes) and its qcow2, then times, in paired runs that
#   alternate which goes first, `kimg checksum IMAGE` against the pipeline
#   `nbdcopy -- [ qemu-nbd -r -f FMT IMAGE ] - | sha256sum`, and prints the
#   medians and their ratio (issue target: <= 0.05), plus how close kimg
#   comes to the sha256 speed of two cores on the data alone.
# Environment: KIMG (default build/kimg), PAIRS (5), FORMATS ("qcow2 raw"),
# KIMG_BASE (optional: another kimg binary, timed in the same alternation,
# to compare two versions: "kimg/base" ratios of the medians).
# Needs qemu-utils (qemu-img, qemu-nbd), libnbd-bin (nbdcopy), e2fsprogs,
# openssl, time.  Not a test: it prints numbers and fails only if a tool fails or
# the digests disagree.
set -euo pipefail
export LC_ALL=C
w=${1:?usage: checksum.sh WORKDIR}
here=$(cd "$(dirname "$0")/../.." && pwd)
KIMG=${KIMG:-$here/build/kimg}
PAIRS=${PAIRS:-5}
FORMATS=${FORMATS:-"qcow2 raw"}
for t in "$KIMG" qemu-img qemu-nbd nbdcopy mkfs.ext4 openssl sha256sum awk /usr/bin/time; do
    command -v "$t" > /dev/null || [ -x "$t" ] || {
        echo "checksum.sh: $t not found (kimg: make; nbdcopy: apt-get install libnbd-bin)" >&2
        exit 1
    }
done

d=$w/checksum
mkdir -p "$d"
cd "$d"
stamp=v1
if [ "$(cat STAMP 2>/dev/null)" != "$stamp" ]; then
    echo "checksum.sh: building the 4 GiB test disk in $d (once)" >&2
    rm -f disk.raw disk.qcow2 STAMP
    stage=$(mktemp -d "$d/stage.XXXXXX")
    # hard links when /usr is on the same file system, copies otherwise
    cp -al /usr/share /usr/bin "$stage/" 2> /dev/null || cp -a /usr/share /usr/bin "$stage/"
    truncate -s 4G disk.raw
    mkfs.ext4 -q -F -d "$stage" -E lazy_itable_init=0,lazy_journal_init=0 disk.raw
    rm -rf "$stage"
    qemu-img convert -f raw -O qcow2 disk.raw disk.qcow2
    echo "$stamp" > STAMP
fi

now() { echo "$EPOCHREALTIME"; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# bytes that hold data (what must be read and hashed at all)
data_bytes=$(qemu-img map -f raw --output=json disk.raw |
    awk -F'"length": ' '/"data": true/ { split($2, a, ","); s += a[1] } END { printf "%.0f\n", s }')

# the sha256 speed of two cores and of one, on 64 KiB buffers (OpenSSL's
# own loop; measured now, under whatever else runs on the machine)
ossl_speed() {
    openssl speed -seconds 3 -bytes 65536 "$@" -evp sha256 2> /dev/null |
        awk '/^evp/ || /^sha256/ { v = $NF } END { sub(/k$/, "", v); printf "%.0f\n", v * 1000 }'
}
two_core=$(ossl_speed -multi 2)
one_core=$(ossl_speed)

echo "== kimg checksum vs qemu-nbd | nbdcopy | sha256sum ($PAIRS paired runs, $(nproc) CPUs)"
printf 'disk: 4 GiB, %.2f GiB of data; sha256 on two cores: %.0f MB/s, on one: %.0f MB/s; load average %s\n' \
    "$(calc "$data_bytes / 1073741824")" "$(calc "$two_core / 1000000")" "$(calc "$one_core / 1000000")" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"

for fmt in $FORMATS; do
    img=disk.$fmt
    # warm the page cache and check that both give the same content digest
    kd=$("$KIMG" checksum --raw-digest -f "$fmt" "$img" | cut -d' ' -f1)
    pd=$(nbdcopy -- [ qemu-nbd -r -f "$fmt" "$d/$img" ] - | sha256sum | cut -d' ' -f1)
    if [ "$kd" != "$pd" ]; then
        echo "checksum.sh: digests differ on $img: kimg --raw-digest $kd, pipeline $pd" >&2
        exit 1
    fi
    "$KIMG" checksum -f "$fmt" "$img" > /dev/null
    # wall seconds, and CPU seconds (user + sys of every process in the run:
    # a fairer measure when other work shares the machine)
    : > k.times; : > p.times; : > b.times
    order="k p"; [ -n "${KIMG_BASE:-}" ] && order="k b p"
    for i in $(seq "$PAIRS"); do
        for which in $( [ $((i % 2)) -eq 1 ] && echo "$order" || echo "$order" | rev); do
            if [ "$which" = k ] || [ "$which" = b ]; then
                bin=$KIMG; [ "$which" = b ] && bin=$KIMG_BASE
                /usr/bin/time -f "%e %U %S" -o t.out "$bin" checksum -f "$fmt" "$img" > /dev/null
            else
                /usr/bin/time -f "%e %U %S" -o t.out bash -c \
                    'nbdcopy -- [ qemu-nbd -r -f "$1" "$2" ] - | sha256sum > /dev/null' _ "$fmt" "$d/$img"
            fi
            awk '{ printf "%s %.2f\n", $1, $2 + $3 }' t.out >> $which.times
        done
    done
    k=$(cut -d' ' -f1 k.times | median); p=$(cut -d' ' -f1 p.times | median)
    kc=$(cut -d' ' -f2 k.times | median); pc=$(cut -d' ' -f2 p.times | median)
    ideal=$(calc "$data_bytes / $two_core")
    printf '%-5s wall: kimg checksum %6.3f s, pipeline %7.3f s, ratio %.4f (target <= 0.05)\n' \
        "$fmt" "$k" "$p" "$(calc "$k / $p")"
    printf '%-5s cpu:  kimg checksum %6.2f s, pipeline %7.2f s, ratio %.4f\n' \
        "$fmt" "$kc" "$pc" "$(calc "$kc / $pc")"
    if [ -n "${KIMG_BASE:-}" ]; then
        b=$(cut -d' ' -f1 b.times | median); bc=$(cut -d' ' -f2 b.times | median)
        printf '%-5s base: %6.3f s wall, %5.2f s CPU; kimg/base wall %.3f, CPU %.3f\n' \
            "$fmt" "$b" "$bc" "$(calc "$k / $b")" "$(calc "$kc / $bc")"
    fi
    printf '%-5s the data alone at the 2-core sha256 speed: %.3f s; kimg at %.0f%% of that speed\n' \
        "$fmt" "$ideal" "$(calc "100 * $ideal / $k")"
    printf '%-5s the data alone at the 1-core sha256 speed: %.2f CPU s; kimg used %.0f%% more\n' \
        "$fmt" "$(calc "$data_bytes / $one_core")" "$(calc "100 * ($kc * $one_core / $data_bytes - 1)")"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
