#!/bin/bash
# luks.sh DIR — encrypted qcow2 (LUKS, aes-256-xts-plain64) against
# qemu-img on the bench's 4 GiB disk: raw -> LUKS qcow2, LUKS qcow2 ->
# raw, LUKS -> LUKS with another key.  Both sides get the same arguments
# and the same PBKDF2 time (encrypt.iter-time, default 10 ms), so key
# derivation is the iteration count's and not the tool's.  PAIRS runs per
# case, alternating which tool goes first; medians of wall and CPU time
# and the median of the paired kimg/qemu-img ratios.  The hardware
# reference: `openssl speed -evp aes-256-xts` on one core, times the
# cores, for the bytes each case encrypts or decrypts (data clusters of
# the disk: once, twice for re-encryption).  Not a test.
set -euo pipefail
dir=$1
KIMG=${KIMG:?}
pairs=${PAIRS:-3}
iter=${LUKS_ITER_TIME:-10}
cd "$dir"
mkdir -p luks
printf 'bench-key-one' > luks/key1
printf 'bench-key-two' > luks/key2
obj=(--object secret,id=k1,file=luks/key1 --object secret,id=k2,file=luks/key2)
o1="encrypt.format=luks,encrypt.key-secret=k1,encrypt.iter-time=$iter"
o2="encrypt.format=luks,encrypt.key-secret=k2,encrypt.iter-time=$iter"
src="driver=qcow2,encrypt.key-secret=k1,file.filename=luks/enc.qcow2"
# the encrypted input, made once by qemu-img
if [ ! -e luks/enc.qcow2 ] || [ disk.raw -nt luks/enc.qcow2 ]; then
    qemu-img convert "${obj[@]}" -f raw -O qcow2 -o "$o1" disk.raw luks/enc.qcow2
fi
data=$(qemu-img map --output=json -f raw disk.raw |
       awk -F'[:,]' '/"data": true/ { for (i = 1; i < NF; i++) if ($i ~ /"length"/) s += $(i + 1) } END { print s + 0 }')

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR) print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# one TOOL ARGS...: one run; prints "wall cpu".  An encrypted target is
# made first, untimed (qemu-img create, the same for both tools), and
# written with convert -n --target-image-opts
one() {
    local tool=$1; shift
    rm -f luks/out.qcow2 luks/out.raw
    [ -z "$pre" ] || qemu-img create -q -f qcow2 "${obj[@]}" -o "$pre" luks/out.qcow2 "$size"
    sync
    /usr/bin/time -f "%e %U %S" -o luks/time "$tool" "$@" > /dev/null 2> luks/err ||
        { echo "luks bench: $tool failed: $*" >&2; cat luks/err >&2; return 1; }
    awk '{ printf "%s %.2f\n", $1, $2 + $3 }' luks/time
}

# the hardware reference: openssl's best aes-256-xts rate on one core
xts=$(openssl speed -evp aes-256-xts -seconds 1 -bytes 65536 2> /dev/null |
      awk '/^(AES-256-XTS|aes-256-xts)/ { v = $NF; sub(/k$/, "", v); print v * 1000 }' | tail -1)
cores=$(nproc)
echo "# encrypted qcow2: $pairs pairs, encrypt.iter-time=$iter on both sides, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# openssl speed -evp aes-256-xts (64 KiB blocks): $(awk -v x="$xts" 'BEGIN { printf "%.0f MB/s", x / 1e6 }') per core, $cores cores; data moved: $(awk -v d="$data" 'BEGIN { printf "%.2f GiB", d / 2^30 }')"
printf '%-16s %9s %9s %7s %9s %9s %7s %9s %8s\n' case kimg_s qemu_s k/q kimg_cpu qemu_cpu k/q_cpu xts_s k/xts
size=$(stat -c %s disk.raw)
t1="driver=qcow2,encrypt.key-secret=k1,file.filename=luks/out.qcow2"
t2="driver=qcow2,encrypt.key-secret=k2,file.filename=luks/out.qcow2"
cases=(
  "raw-to-luks|1|$o1|convert -n ${obj[*]} -f raw --target-image-opts disk.raw $t1"
  "luks-to-raw|1||convert ${obj[*]} --image-opts $src -O raw luks/out.raw"
  "luks-to-luks|2|$o2|convert -n ${obj[*]} --image-opts --target-image-opts $src $t2"
)
for c in "${cases[@]}"; do
    IFS='|' read -r name passes pre args <<< "$c"
    # shellcheck disable=SC2206
    a=($args)
    : > luks/k; : > luks/q; : > luks/r; : > luks/rc
    for i in $(seq "$pairs"); do
        if [ $((i % 2)) = 1 ]; then
            k=$(one "$KIMG" "${a[@]}"); q=$(one qemu-img "${a[@]}")
        else
            q=$(one qemu-img "${a[@]}"); k=$(one "$KIMG" "${a[@]}")
        fi
        echo "$k" >> luks/k; echo "$q" >> luks/q
        echo "$k $q" | awk '{ print $1 / $3 }' >> luks/r
        echo "$k $q" | awk '{ print ($4 > 0) ? $2 / $4 : 0 }' >> luks/rc
    done
    kw=$(cut -d' ' -f1 luks/k | median); qw=$(cut -d' ' -f1 luks/q | median)
    kc=$(cut -d' ' -f2 luks/k | median); qc=$(cut -d' ' -f2 luks/q | median)
    # the time every core needs at openssl's rate for the bytes ciphered
    ref=$(awk -v d="$data" -v p="$passes" -v x="$xts" -v n="$cores" 'BEGIN { printf "%.2f", d * p / (x * n) }')
    printf '%-16s %9s %9s %7.2f %9s %9s %7.2f %9s %8.2f\n' "$name" "$kw" "$qw" \
        "$(median < luks/r)" "$kc" "$qc" "$(median < luks/rc)" "$ref" \
        "$(awk -v k="$kw" -v r="$ref" 'BEGIN { print (r > 0) ? k / r : 0 }')"
done
rm -f luks/out.qcow2 luks/out.raw
