#!/bin/bash
# nbd.sh DIR — NBD exports against qemu-img and nbdcopy on the bench's
# 4 GiB disk (issue 15's Speed section).  One server for all (nbdkit's file
# plugin on a unix socket: multi-conn, block status), the same URI for
# every tool: download the export to a local raw file and to a local
# qcow2, upload the local disk.qcow2 into an export (a 4 GiB scratch file
# behind nbdkit), checksum the export (kimg checksum against qemu-img
# convert + sha256sum and nbdcopy to sha256sum), and `nbdcopy URI null:`
# as the ceiling.  PAIRS rounds, the tools' order rotated each round;
# medians of wall and CPU (user+sys of the client) and the median of the
# per-round kimg/other ratios.  Not a test.
set -euo pipefail
dir=$1
KIMG=${KIMG:?}
pairs=${PAIRS:-3}
cd "$dir"
work=$dir/nbd
mkdir -p "$work"
rm -f "$work"/*.sock
server_pids=()
trap 'kill "${server_pids[@]}" 2> /dev/null; rm -f "$work"/out.* "$work"/*.sock' EXIT

serve() {   # serve SOCK ARGS...: nbdkit on $work/SOCK
    nbdkit -f -U "$work/$1" --exit-with-parent "${@:2}" &
    server_pids+=($!)
    local i
    for i in $(seq 100); do [ -S "$work/$1" ] && return 0; sleep 0.05; done
    echo "nbd bench: nbdkit on $1 did not start" >&2; return 1
}
serve src.sock -r file disk.raw
[ -e "$work/up.raw" ] || truncate -s "$(stat -c %s disk.raw)" "$work/up.raw"
serve up.sock file "$work/up.raw"
SRC="nbd+unix:///?socket=$work/src.sock"
UP="nbd+unix:///?socket=$work/up.sock"

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR) print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# one CMD: run the shell command CMD once (outputs removed first); prints
# "wall cpu" (cpu: the client's user+sys, the server's not counted)
one() {
    rm -f "$work"/out.*
    sync
    /usr/bin/time -f "%e %U %S" -o "$work/time" bash -c "$1" > /dev/null 2> "$work/err" ||
        { echo "nbd bench: failed: $1" >&2; cat "$work/err" >&2; return 1; }
    awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$work/time"
}

q=$(printf %q "$KIMG")
# case@kimg@qemu-img@nbdcopy  (an empty command: the tool cannot do it)
cases=(
  "download-raw@$q convert -O raw '$SRC' $work/out.raw@qemu-img convert -O raw '$SRC' $work/out.raw@nbdcopy '$SRC' $work/out.raw"
  "download-qcow2@$q convert -O qcow2 '$SRC' $work/out.qcow2@qemu-img convert -O qcow2 '$SRC' $work/out.qcow2@"
  "upload-qcow2@$q convert -n -O raw disk.qcow2 '$UP'@qemu-img convert -n -O raw disk.qcow2 '$UP'@nbdcopy -- [ qemu-nbd -r -f qcow2 disk.qcow2 ] '$UP'"
  "checksum@$q checksum '$SRC'@qemu-img convert -O raw '$SRC' $work/out.raw && sha256sum $work/out.raw@nbdcopy '$SRC' - | sha256sum"
)
echo "# NBD (nbdkit file plugin, unix socket): $pairs rounds, load: $(cut -d' ' -f1-3 /proc/loadavg), CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
printf '%-15s %7s %7s %7s %7s %6s %6s %6s %8s %8s %8s\n' case kimg_s qemu_s copy_s null_s k/q k/copy k/null kimg_cpu qemu_cpu copy_cpu
for c in "${cases[@]}"; do
    IFS='@' read -r name kcmd qcmd ccmd <<< "$c"
    : > "$work/k"; : > "$work/q"; : > "$work/c"; : > "$work/n"; : > "$work/rq"; : > "$work/rc"; : > "$work/rn"
    for r in $(seq "$pairs"); do
        order=(k q c n)
        for s in $(seq $(( (r - 1) % 4 ))); do order=("${order[@]:1}" "${order[0]}"); done
        declare -A got=()
        for t in "${order[@]}"; do
            case $t in
            k) got[k]=$(one "$kcmd") ;;
            q) got[q]=$(one "$qcmd") ;;
            c) [ -n "$ccmd" ] && got[c]=$(one "$ccmd") || got[c]="- -" ;;
            n) got[n]=$(one "nbdcopy '$SRC' null:") ;;
            esac
        done
        for t in k q c n; do echo "${got[$t]}" >> "$work/$t"; done
        kw=${got[k]%% *}
        awk -v a="$kw" -v b="${got[q]%% *}" 'BEGIN { print a / b }' >> "$work/rq"
        [ "${got[c]}" = "- -" ] || awk -v a="$kw" -v b="${got[c]%% *}" 'BEGIN { print a / b }' >> "$work/rc"
        awk -v a="$kw" -v b="${got[n]%% *}" 'BEGIN { print a / b }' >> "$work/rn"
        unset got
    done
    med() { cut -d' ' -f"$2" "$work/$1" | grep -v '^-$' | median; }
    printf '%-15s %7s %7s %7s %7s %6.2f %6s %6.2f %8s %8s %8s\n' "$name" "$(med k 1)" "$(med q 1)" \
        "$( [ -n "$ccmd" ] && med c 1 || echo -)" "$(med n 1)" "$(median < "$work/rq")" \
        "$( [ -s "$work/rc" ] && printf '%.2f' "$(median < "$work/rc")" || echo -)" \
        "$(median < "$work/rn")" "$(med k 2)" "$(med q 2)" "$( [ -n "$ccmd" ] && med c 2 || echo -)"
done
