#!/bin/bash
# reflink.sh — part of `make bench`: kimg convert against qemu-img convert
# on a file system that shares extents (an XFS loop image holding the
# bench disk), where kimg clones plainly stored data instead of copying
# it.  Needs root and mkfs.xfs; skipped otherwise.  Prints median wall
# times and the ratio per case, and checks every output with
# qemu-img compare.
#   reflink.sh DIR    DIR: the bench inputs (disk.raw, disk.qcow2)
set -euo pipefail
dir=$1
KIMG=${KIMG:?}
runs=${PAIRS:-3}
if [ "$(id -u)" != 0 ] || ! command -v mkfs.xfs > /dev/null; then
    echo "(reflink cases skipped: they need root and mkfs.xfs)"
    exit 0
fi
mnt=$(mktemp -d /var/tmp/kimg-reflink.XXXXXX)
cleanup() { cd /; umount "$mnt/x" 2> /dev/null || true; rm -rf "$mnt"; }
trap cleanup EXIT
truncate -s 12G "$mnt/xfs.img"
mkfs.xfs -q -m reflink=1 "$mnt/xfs.img"
mkdir "$mnt/x"
if ! mount -o loop "$mnt/xfs.img" "$mnt/x" 2> /dev/null; then
    echo "(reflink cases skipped: cannot mount an XFS loop image here)"
    exit 0
fi
cd "$mnt/x"
cp --sparse=always "$dir/disk.raw" "$dir/disk.qcow2" .
sync

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
timed() {
    local tool=$1; shift
    rm -f out.raw out.qcow2
    sync
    /usr/bin/time -f "%e" -a -o "times.$tool" "$@" > /dev/null
}

echo "== convert on XFS with reflinks ($runs paired runs; the bench disk, 1.27 GiB of data)"
printf '%-22s %9s %9s %7s %s\n' case qemu-img kimg ratio output
for c in "raw-to-raw|-f raw -O raw disk.raw out.raw" \
         "qcow2-to-raw|-f qcow2 -O raw disk.qcow2 out.raw" \
         "raw-to-qcow2|-f raw -O qcow2 disk.raw out.qcow2" \
         "qcow2-to-qcow2|-f qcow2 -O qcow2 disk.qcow2 out.qcow2"; do
    IFS='|' read -r name args <<< "$c"
    read -r -a argv <<< "$args"
    out=${argv[-1]}
    rm -f times.qemu times.kimg
    for i in $(seq "$runs"); do
        timed qemu qemu-img convert "${argv[@]}"
        timed kimg "$KIMG" convert "${argv[@]}"
    done
    verdict=DIFFERENT
    qemu-img compare -q disk.raw "$out" && verdict=identical
    tq=$(median < times.qemu)
    tk=$(median < times.kimg)
    printf '%-22s %8.2fs %8.2fs %7s %s\n' "$name" "$tq" "$tk" \
        "$(awk -v a="$tk" -v b="$tq" 'BEGIN { printf (b > 0 ? "%.3f" : "-"), a / b }')" "$verdict"
done
