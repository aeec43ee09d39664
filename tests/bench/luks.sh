#!/bin/bash
# luks.sh DIR — encrypted qcow2 (LUKS, aes-256-xts-plain64) against
# qemu-img on the bench's 4 GiB disk: raw -> LUKS qcow2, LUKS qcow2 ->
# raw, LUKS -> LUKS with another key.  Both sides get the same arguments
# and the same PBKDF2 time (encrypt.iter-time, default 10 ms), so key
# derivation is the iteration count's and not the tool's.  PAIRS runs per
# case, alternating which tool goes first; medians of wall and CPU time
# and the median of the paired kimg/qemu-img ratios.  Two hardware
# references for the bytes each case encrypts or decrypts (the disk's data
# clusters: once, twice for re-encryption) on every core: `openssl speed
# -evp aes-256-xts` at its best block size, and at -bytes 512, the honest
# per-sector ceiling (LUKS1 ciphers 512-byte sectors, each with its own IV;
# openssl speed does not even re-IV).  Outputs go to a private folder
# under DIR/luks, so two runs do not collide.  Not a test.
set -euo pipefail
dir=$1
KIMG=${KIMG:?}
pairs=${PAIRS:-3}
iter=${LUKS_ITER_TIME:-10}
cd "$dir"
mkdir -p luks
w=$(mktemp -d "$PWD/luks/run.XXXXXX")
trap 'rm -rf "$w"' EXIT
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
    rm -f "$w/out.qcow2" "$w/out.raw"
    # (qemu's PBKDF2 benchmark gives up now and then under load: retried)
    local t
    for t in 1 2 3 4 5; do
        [ -z "$pre" ] || qemu-img create -q -f qcow2 "${obj[@]}" -o "$pre" "$w/out.qcow2" "$size" 2> /dev/null && break
    done
    sync
    /usr/bin/time -f "%e %U %S" -o "$w/time" "$tool" "$@" > /dev/null 2> "$w/err" ||
        { echo "luks bench: $tool failed: $*" >&2; cat "$w/err" >&2; return 1; }
    awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$w/time"
}

# the hardware references: openssl's aes-256-xts rate on one core, at its
# best block size and at 512 bytes (bytes per second)
xts=$(openssl speed -evp aes-256-xts -seconds 1 2> /dev/null |
      awk '/^(AES-256-XTS|aes-256-xts)/ { m = 0; for (i = 2; i <= NF; i++) { v = $i; sub(/k$/, "", v); if (v + 0 > m) m = v + 0 } print m * 1000 }' | tail -1)
xts512=$(openssl speed -evp aes-256-xts -seconds 1 -bytes 512 2> /dev/null |
      awk '/^(AES-256-XTS|aes-256-xts)/ { v = $NF; sub(/k$/, "", v); print v * 1000 }' | tail -1)
cores=$(nproc)
echo "# encrypted qcow2: $pairs pairs, encrypt.iter-time=$iter on both sides, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $cores cores"
echo "# openssl speed -evp aes-256-xts per core: $(awk -v x="$xts" 'BEGIN { printf "%.0f MB/s", x / 1e6 }') (best block size), $(awk -v x="$xts512" 'BEGIN { printf "%.0f MB/s", x / 1e6 }') (-bytes 512); data moved: $(awk -v d="$data" 'BEGIN { printf "%.2f GiB", d / 2^30 }')"
echo "# ref_s / ref512_s: the time $cores cores need at those rates for the bytes ciphered"
printf '%-13s %7s %7s %6s %8s %8s %6s %6s %8s %6s %8s\n' case kimg_s qemu_s k/q kimg_cpu qemu_cpu k/q_cpu ref_s ref512_s k/ref k/ref512
size=$(stat -c %s disk.raw)
t1="driver=qcow2,encrypt.key-secret=k1,file.filename=$w/out.qcow2"
t2="driver=qcow2,encrypt.key-secret=k2,file.filename=$w/out.qcow2"
cases=(
  "raw-to-luks|1|$o1|convert -n ${obj[*]} -f raw --target-image-opts disk.raw $t1"
  "luks-to-raw|1||convert ${obj[*]} --image-opts $src -O raw $w/out.raw"
  "luks-to-luks|2|$o2|convert -n ${obj[*]} --image-opts --target-image-opts $src $t2"
)
for c in "${cases[@]}"; do
    IFS='|' read -r name passes pre args <<< "$c"
    # shellcheck disable=SC2206
    a=($args)
    : > "$w/k"; : > "$w/q"; : > "$w/r"; : > "$w/rc"
    for i in $(seq "$pairs"); do
        if [ $((i % 2)) = 1 ]; then
            k=$(one "$KIMG" "${a[@]}"); q=$(one qemu-img "${a[@]}")
        else
            q=$(one qemu-img "${a[@]}"); k=$(one "$KIMG" "${a[@]}")
        fi
        echo "$k" >> "$w/k"; echo "$q" >> "$w/q"
        echo "$k $q" | awk '{ print $1 / $3 }' >> "$w/r"
        echo "$k $q" | awk '{ print ($4 > 0) ? $2 / $4 : 0 }' >> "$w/rc"
    done
    kw=$(cut -d' ' -f1 "$w/k" | median); qw=$(cut -d' ' -f1 "$w/q" | median)
    kc=$(cut -d' ' -f2 "$w/k" | median); qc=$(cut -d' ' -f2 "$w/q" | median)
    # the time every core needs at openssl's rates for the bytes ciphered
    ref=$(awk -v d="$data" -v p="$passes" -v x="$xts" -v n="$cores" 'BEGIN { printf "%.2f", d * p / (x * n) }')
    ref512=$(awk -v d="$data" -v p="$passes" -v x="$xts512" -v n="$cores" 'BEGIN { printf "%.2f", d * p / (x * n) }')
    printf '%-13s %7s %7s %6.2f %8s %8s %6.2f %6s %8s %6.1f %8.1f\n' "$name" "$kw" "$qw" \
        "$(median < "$w/r")" "$kc" "$qc" "$(median < "$w/rc")" "$ref" "$ref512" \
        "$(awk -v k="$kw" -v r="$ref" 'BEGIN { print (r > 0) ? k / r : 0 }')" \
        "$(awk -v k="$kw" -v r="$ref512" 'BEGIN { print (r > 0) ? k / r : 0 }')"
done
