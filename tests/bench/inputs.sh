#!/bin/bash
# inputs.sh WORKDIR — build (once, cached) the realistic benchmark inputs:
#   disk.raw        4 GiB raw disk holding a real ext4 file system filled from
#                   /usr/share and /usr/bin (about 1.2 GiB of data, rest holes)
#   disk.qcow2      its qcow2, made by qemu-img
#   disk-zlib.qcow2 / disk-zstd.qcow2  compressed by qemu-img convert -c
#   random.raw      1 GiB of random data
#   hole.raw        an 8 GiB hole
#   disk.vhd        disk.raw as a dynamic VHD (qemu-img convert -O vpc),
#                   added after v1: built on its own when missing
#   disk.vdi        disk.raw as a dynamic VDI (qemu-img convert -O vdi), likewise
#   disk.vhdx       disk.raw as a dynamic VHDX (qemu-img convert -O vhdx,
#                   16 MiB blocks), the same way
#   disk.vmdk, disk-stream.vmdk  disk.raw as monolithicSparse and
#                   streamOptimized VMDKs (qemu-img), likewise
set -euo pipefail
w=${1:?usage: inputs.sh WORKDIR}
mkdir -p "$w"
cd "$w"
stamp="v1"
later_inputs() {
    [ -f disk.vhd ] || { qemu-img convert -f raw -O vpc disk.raw disk.vhd.tmp && mv disk.vhd.tmp disk.vhd; }
    [ -f disk.vdi ] || { qemu-img convert -f raw -O vdi disk.raw disk.vdi.tmp && mv disk.vdi.tmp disk.vdi; }
    [ -f disk.vhdx ] || { qemu-img convert -f raw -O vhdx disk.raw disk.vhdx.tmp &&
                          mv disk.vhdx.tmp disk.vhdx; }
    [ -f disk.vmdk ] ||
        { qemu-img convert -f raw -O vmdk disk.raw disk.vmdk.tmp && mv disk.vmdk.tmp disk.vmdk; }
    [ -f disk-stream.vmdk ] ||
        { qemu-img convert -f raw -O vmdk -o subformat=streamOptimized disk.raw disk-stream.vmdk.tmp &&
          mv disk-stream.vmdk.tmp disk-stream.vmdk; }
}
[ "$(cat STAMP 2>/dev/null)" = "$stamp" ] && { later_inputs; exit 0; }
rm -f disk.raw disk*.qcow2 random.raw hole.raw STAMP
echo "bench: building inputs in $w (once)" >&2
# hard links into a staging folder, so mkfs.ext4 -d can take one root
stage=$(mktemp -d "$w/stage.XXXXXX")
if ! cp -al /usr/share /usr/bin "$stage/" 2>/dev/null; then
    cp -a /usr/share /usr/bin "$stage/"
fi
truncate -s 4G disk.raw
mkfs.ext4 -q -F -d "$stage" -E lazy_itable_init=0,lazy_journal_init=0 disk.raw
rm -rf "$stage"
qemu-img convert -f raw -O qcow2 disk.raw disk.qcow2
qemu-img convert -W -c -f raw -O qcow2 disk.raw disk-zlib.qcow2
qemu-img convert -W -c -f raw -O qcow2 -o compression_type=zstd disk.raw disk-zstd.qcow2
openssl rand -out random.raw $((1024 * 1024 * 1024))
truncate -s 8G hole.raw
echo "$stamp" > STAMP
later_inputs
du -h --apparent-size disk.raw; du -h disk.raw disk*.qcow2 random.raw hole.raw >&2
