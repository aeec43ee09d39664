#!/bin/bash
# ova.sh WORKDIR — benchmark of reading an OVA in place (issue 12): builds
#   once (cached in WORKDIR/ova/) two OVAs holding the bench's
#   streamOptimized VMDK (WORKDIR/disk-stream.vmdk, from inputs.sh) as
#   their one disk, as VMware exports them (OVF 1.0, ustar): disk.ova with
#   a SHA256 manifest and disk-nomf.ova without one.  qemu-img cannot read
#   inside an OVA, so its side converts the extracted disk (the file
#   itself: the member's
#   bytes); kimg converts the archive, reading the member in place (with
#   the manifest: its SHA256 is checked first, a full read of the member
#   before the conversion starts).  A third line times kimg on the VMDK
#   itself: the cost of the archive layer alone.  Paired runs alternate
#   which goes first; medians of wall and CPU (user + sys) time and the
#   medians of the paired ratios (CPU time: less noisy on a busy machine).
# Environment: KIMG (default build/kimg), PAIRS (5).  Not a test.
set -euo pipefail
export LC_ALL=C
w=${1:?usage: ova.sh WORKDIR}
here=$(cd "$(dirname "$0")/../.." && pwd)
KIMG=${KIMG:-$here/build/kimg}
PAIRS=${PAIRS:-5}
command -v /usr/bin/time > /dev/null || { echo "ova.sh: /usr/bin/time missing" >&2; exit 1; }
[ -f "$w/disk-stream.vmdk" ] || { echo "ova.sh: $w/disk-stream.vmdk missing (run inputs.sh)" >&2; exit 1; }

d=$w/ova
mkdir -p "$d"
cd "$d"
stamp=v2
if [ "$(cat STAMP 2>/dev/null)" != "$stamp" ]; then
    echo "ova.sh: building the OVAs in $d (once)" >&2
    rm -f ./*.ova STAMP
    . "$here/tests/cli/ova.sh"
    ln -sf "$w/disk-stream.vmdk" disk.vmdk
    ovf_write disk.ovf vmware1 disk.vmdk
    mf_write disk.mf SHA256 disk.ovf disk.vmdk
    tar --format=ustar --owner=0 --group=0 --numeric-owner --mtime=@0 --dereference \
        -cf disk.ova disk.ovf disk.mf disk.vmdk
    tar --format=ustar --owner=0 --group=0 --numeric-owner --mtime=@0 --dereference \
        -cf disk-nomf.ova disk.ovf disk.vmdk
    echo "$stamp" > STAMP
fi

# The page cache holds a file in pages as large as the reads (or the
# writes) that brought it in: the archives, just written by tar in 10 KiB
# records, would be mapped in 4 KiB pages (15 times the page faults of
# disk.qcow2, written by qemu-img).  Both are evicted and read once in
# large sequential reads, so both sides map alike.
for f in disk.ova disk-nomf.ova "$w/disk-stream.vmdk"; do
    dd if="$f" iflag=nocache count=0 status=none
    dd if="$f" of=/dev/null bs=4M status=none
done

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# timed ARGS...: "wall cpu" seconds of one run (cpu: user + sys; output
# removed first)
timed() {
    rm -f out.qcow2
    sync
    /usr/bin/time -f "%e %U %S" -o time.t "$@" > /dev/null
    awk '{ printf "%.3f %.3f\n", $1, $2 + $3 }' time.t
}

# case NAME KIMG-ARGS... -- QEMU-ARGS...
case_() {
    local name=$1; shift
    local k=() q=()
    while [ "$1" != -- ]; do k+=("$1"); shift; done
    shift
    q=("$@")
    "$KIMG" "${k[@]}" > /dev/null; qemu-img "${q[@]}" > /dev/null   # warm
    : > k.t; : > q.t
    for i in $(seq "$PAIRS"); do
        if [ $((i % 2)) = 1 ]; then
            timed qemu-img "${q[@]}" >> q.t; timed "$KIMG" "${k[@]}" >> k.t
        else
            timed "$KIMG" "${k[@]}" >> k.t; timed qemu-img "${q[@]}" >> q.t
        fi
    done
    qemu-img compare -q -f raw -F qcow2 "$w/disk.raw" out.qcow2 || { echo "ova.sh: $name: output differs" >&2; exit 1; }
    printf '%-24s %8.2fs %8.2fs %7.2f %8.2fs %8.2fs %7.2f\n' "$name" \
        "$(cut -d' ' -f1 q.t | median)" "$(cut -d' ' -f1 k.t | median)" \
        "$(paste -d' ' k.t q.t | awk '$3 > 0 { print $1 / $3 }' | median)" \
        "$(cut -d' ' -f2 q.t | median)" "$(cut -d' ' -f2 k.t | median)" \
        "$(paste -d' ' k.t q.t | awk '$4 > 0 { print $2 / $4 }' | median)"
    rm -f out.qcow2
}

echo "# OVA -> qcow2 (qemu-img: on the extracted disk; $PAIRS paired runs)"
printf '%-24s %9s %9s %7s %9s %9s %7s\n' case qemu-img kimg ratio q-cpu k-cpu cpu-r
case_ ova-sha256-to-qcow2 convert -O qcow2 disk.ova out.qcow2 -- convert -f vmdk -O qcow2 disk.vmdk out.qcow2
case_ ova-nomf-to-qcow2 convert -O qcow2 disk-nomf.ova out.qcow2 -- convert -f vmdk -O qcow2 disk.vmdk out.qcow2
case_ vmdk-to-qcow2-ref convert -f vmdk -O qcow2 disk.vmdk out.qcow2 -- convert -f vmdk -O qcow2 disk.vmdk out.qcow2
