#!/bin/bash
# clone.sh WORKDIR — benchmark of fleet clones (issue 17): a template
#   domain whose one disk is the bench's 4 GiB ext4 disk (WORKDIR/disk.raw,
#   1.27 GiB of data; from inputs.sh) cloned N times (CLONES, default 10)
#   with full copies, three ways, alternating which goes first:
#     batch     one `kimg clone -n 'c{n}' --count N` (each template disk
#               read once for every copy)
#     separate  N `kimg clone` runs, one clone each
#     qemu-img  N `qemu-img convert -f raw -O raw` copies (what a script
#               looping over virt-clone --auto-clone does for the data)
#   and a linked batch of LINKED (default 50) qcow2 overlays.  Prints the
#   medians of wall and CPU (user + sys) time, the paired ratios batch /
#   separate and batch / qemu-img, and the batch's peak RSS.  Every copy is
#   compared with the template once at the end (qemu-img compare).  The
#   template is warm in the page cache, as in the other cases; with COLD=1
#   (root) the page cache is dropped before every timed run instead, so
#   each way starts with the template on disk (the separate runs then read
#   it from disk once and from the cache after, as a loop of virt-clone
#   calls on a host with enough memory would).
# Environment: KIMG (default build/kimg), PAIRS (3), CLONES, LINKED, COLD.
# Not a test.
set -euo pipefail
export LC_ALL=C
w=${1:?usage: clone.sh WORKDIR}
here=$(cd "$(dirname "$0")/../.." && pwd)
KIMG=${KIMG:-$here/build/kimg}
PAIRS=${PAIRS:-3}
N=${CLONES:-10}
L=${LINKED:-50}
command -v /usr/bin/time > /dev/null || { echo "clone.sh: /usr/bin/time missing" >&2; exit 1; }
[ -f "$w/disk.raw" ] || { echo "clone.sh: $w/disk.raw missing (run inputs.sh)" >&2; exit 1; }

d=$w/clone
rm -rf "$d"
mkdir -p "$d/out"
cd "$d"
cat > tmpl.xml <<EOF
<domain type='kvm'>
  <name>tmpl</name>
  <uuid>11111111-2222-3333-4444-555555555555</uuid>
  <memory>524288</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$w/disk.raw'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/>
      <source network='default'/>
    </interface>
  </devices>
</domain>
EOF

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
clean() {
    rm -rf out; mkdir out; sync
    if [ "${COLD:-0}" = 1 ]; then echo 3 > /proc/sys/vm/drop_caches; fi
}
# timed NAME CMD...: one run of CMD (a shell function), appending
# "wall cpu maxrss_kib" to times.NAME
timed() {
    local name=$1; shift
    clean
    /usr/bin/time -f "%e %U %S %M" -o time.t "$@" > /dev/null
    awk '{ printf "%.3f %.3f %d\n", $1, $2 + $3, $4 }' time.t >> "times.$name"
}
batch() { "$KIMG" clone --original-xml tmpl.xml -n 'c{n}' --count "$N" -f 'out/c{n}.raw' \
              --output-xml 'out/c{n}.xml' -q; }
separate() {
    for i in $(seq "$N"); do
        "$KIMG" clone --original-xml tmpl.xml -n "c$i" -f "out/c$i.raw" --output-xml "out/c$i.xml" -q
    done
}
qemu() {
    for i in $(seq "$N"); do
        qemu-img convert -f raw -O raw "$w/disk.raw" "out/c$i.raw"
    done
}
linked() { "$KIMG" clone --original-xml tmpl.xml -n 'l{n}' --count "$L" --linked \
               -f 'out/l{n}.qcow2' --output-xml 'out/l{n}.xml' -q; }
export -f batch separate qemu linked
export KIMG N L w

rm -f times.*
[ "${COLD:-0}" = 1 ] || dd if="$w/disk.raw" of=/dev/null bs=4M status=none   # warm
for i in $(seq "$PAIRS"); do
    if [ $((i % 2)) = 1 ]; then order="batch separate qemu"; else order="qemu separate batch"; fi
    for t in $order; do timed "$t" bash -c "$t"; done
    timed linked bash -c linked
done
# the last batch's copies: every one the template's content
clean
batch
bad=0
for i in $(seq "$N"); do
    qemu-img compare -q -f raw -F raw "$w/disk.raw" "out/c$i.raw" || bad=$((bad + 1))
done
clean

col() { cut -d' ' -f"$2" "times.$1" | median; }
ratio() { paste -d' ' "times.$1" "times.$2" | awk -v c="$3" -v n=3 '$(c + n) > 0 { print $c / $(c + n) }' | median; }
echo "# clone: $N full copies of a 4 GiB raw disk (1.27 GiB of data), $PAIRS rounds; $L linked;" \
     "template $([ "${COLD:-0}" = 1 ] && echo "cold (page cache dropped before each run)" || echo warm)"
printf '%-10s %9s %9s %9s\n' way wall cpu rss
for t in batch separate qemu linked; do
    printf '%-10s %8.2fs %8.2fs %6dMiB\n' "$t" "$(col "$t" 1)" "$(col "$t" 2)" $(($(cut -d' ' -f3 "times.$t" | sort -n | tail -1) / 1024))
done
printf 'batch/separate: wall %.2f, cpu %.2f; batch/qemu-img: wall %.2f, cpu %.2f; copies differing: %d\n' \
    "$(ratio batch separate 1)" "$(ratio batch separate 2)" "$(ratio batch qemu 1)" "$(ratio batch qemu 2)" "$bad"
