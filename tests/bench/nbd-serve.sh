#!/bin/bash
# nbd-serve.sh WORKDIR — serving the bench's qcow2 (WORKDIR/disk.qcow2,
#   from inputs.sh; not rebuilt here) over NBD: nbdkit with kimg's plugin
#   (build/plugins/nbdkit-kimg-plugin.so) against qemu-nbd (read-only,
#   -e 16 so that nbdcopy's connections are admitted), each on a private
#   unix socket, nbdcopy as the client: to null: (the server's read
#   speed) and to a local raw file (WORKDIR/nbd/out.raw; holes skipped
#   through block status).  One run = start the server, copy, stop the
#   server, timed as a whole (wall, and CPU: user + sys of server and
#   client).  Paired runs alternate which server goes first; medians and
#   the medians of the paired ratios (plugin / qemu-nbd; target <= 1.0).
#   Both copies are checked against WORKDIR/disk.raw once.
# Environment: PLUGIN, PAIRS (5).  Not a test.
set -euo pipefail
export LC_ALL=C
w=${1:?usage: nbd-serve.sh WORKDIR}
here=$(cd "$(dirname "$0")/../.." && pwd)
PLUGIN=${PLUGIN:-$here/build/plugins/nbdkit-kimg-plugin.so}
PAIRS=${PAIRS:-5}
for c in /usr/bin/time nbdkit qemu-nbd nbdcopy; do
    command -v "$c" > /dev/null || { echo "nbd-serve.sh: $c missing" >&2; exit 1; }
done
[ -f "$PLUGIN" ] || { echo "# nbd-serve.sh: skipped, $PLUGIN not built (no nbdkit-plugin-dev)"; exit 0; }
[ -f "$w/disk.qcow2" ] || { echo "nbd-serve.sh: $w/disk.qcow2 missing (run inputs.sh)" >&2; exit 1; }
src=$w/disk.qcow2
d=$w/nbd
mkdir -p "$d"
cd "$d"
sock=$d/sock

# one run of each server: SERVER DEST (null: or a file)
serve_kimg() {
    nbdkit -U - "$PLUGIN" file="$src" --run "nbdcopy \"\$uri\" $1"
}
serve_qemu() {
    rm -f "$sock"
    qemu-nbd -r -f qcow2 -e 16 -t -k "$sock" "$src" &
    local p=$! i
    for i in $(seq 200); do [ -S "$sock" ] && break; sleep 0.02; done
    nbdcopy "nbd+unix:///?socket=$sock" "$1"
    kill "$p"; wait "$p" || true
}
export -f serve_kimg serve_qemu
export PLUGIN src sock

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
timed() {   # timed FN DEST: "wall cpu" of one run
    rm -f out.raw
    sync
    /usr/bin/time -f "%e %U %S" -o time.t bash -c '"$@"' _ "$@" > /dev/null
    awk '{ printf "%.3f %.3f\n", $1, $2 + $3 }' time.t
}

case_() {   # case_ NAME DEST
    local name=$1 dest=$2
    serve_kimg null: > /dev/null; serve_qemu null: > /dev/null   # warm the page cache
    : > k.t; : > q.t
    for i in $(seq "$PAIRS"); do
        if [ $((i % 2)) = 1 ]; then
            timed serve_qemu "$dest" >> q.t; timed serve_kimg "$dest" >> k.t
        else
            timed serve_kimg "$dest" >> k.t; timed serve_qemu "$dest" >> q.t
        fi
    done
    printf '%-22s %8.2fs %8.2fs %7.2f %8.2fs %8.2fs %7.2f\n' "$name" \
        "$(cut -d' ' -f1 q.t | median)" "$(cut -d' ' -f1 k.t | median)" \
        "$(paste -d' ' k.t q.t | awk '$3 > 0 { print $1 / $3 }' | median)" \
        "$(cut -d' ' -f2 q.t | median)" "$(cut -d' ' -f2 k.t | median)" \
        "$(paste -d' ' k.t q.t | awk '$4 > 0 { print $2 / $4 }' | median)"
}

# the copies are right (once, not timed)
for s in serve_kimg serve_qemu; do
    rm -f out.raw
    "$s" out.raw
    cmp -s out.raw "$w/disk.raw" || { echo "nbd-serve.sh: $s: the copy differs from disk.raw" >&2; exit 1; }
done
rm -f out.raw

echo "# serving disk.qcow2: nbdkit + kimg plugin vs qemu-nbd, nbdcopy as the client ($PAIRS paired runs)"
echo "# load average at the start: $(cut -d' ' -f1-3 /proc/loadavg); CPU: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1) x $(nproc)"
printf '%-22s %9s %9s %7s %9s %9s %7s\n' case qemu-nbd kimg ratio q-cpu k-cpu cpu-r
case_ "nbdcopy -> null:" null:
case_ "nbdcopy -> local.raw" out.raw
rm -f out.raw time.t k.t q.t
