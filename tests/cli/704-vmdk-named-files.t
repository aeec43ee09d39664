#!/bin/bash
# Files named by a VMDK (extents, the parent hint) are a security
# boundary.  qemu-img 7.2 follows "/etc/hostname" and "../../x" as extent
# names and copies them into the output; kimg resolves extents against the
# descriptor's folder and refuses absolute names, names leaving it with
# "..", symbolic links that lead out of that folder (openat2
# RESOLVE_BENEATH), and files that are not regular files (devices, FIFOs,
# folders).
# Under --untrusted only plain names in the image's folder, no symbolic
# links, each file once, and no parent hint followed; a flat extent
# shorter than declared is an error there and a warning otherwise (qemu
# reads zeros silently).  changeTrackPath and ddb lines are never opened.
# A delta disk whose parent's CID changed is not read (qemu-img fails the
# read with "Invalid argument").
. "$(dirname "$0")/lib.sh"
KIMG_TIMEOUT=10

desc() {        # desc FILE EXTENT-LINE...
    local f=$1; shift
    { printf '# Disk DescriptorFile\nversion=1\nCID=1a2b3c4d\nparentCID=ffffffff\ncreateType="monolithicFlat"\n# Extents\n'
      printf '%s\n' "$@"; } > "$f"
}
mkdir -p img/sub outside
printf 'secret data\n' > outside/secret.txt
head -c 1048576 /dev/urandom > img/a.bin
cp img/a.bin img/sub/a.bin
refused() {     # refused NAME IMAGE [OPTIONS]: every reading command refuses
    local name=$1 f=$2; shift 2
    kimg info "$@" "$f"; err_line "$name: info"
    kimg convert "$@" -O raw "$f" out.raw; err_line "$name: convert"
    ok "$name: no output file" test ! -e out.raw
    kimg map "$@" --output=json "$f"; err_line "$name: map"
    kimg checksum "$@" "$f"; err_line "$name: checksum"
}

# ---- refused by default ------------------------------------------------------
desc img/abs.vmdk "RW 1 FLAT \"$PWD/outside/secret.txt\" 0"
refused "an absolute extent path" img/abs.vmdk
like "$(< "$T/err")" "absolute path" "absolute path: said so"
qemu-img convert -O raw img/abs.vmdk q.raw 2> /dev/null
ok "(qemu-img 7.2 copies the outside file)" grep -q "secret data" q.raw
desc img/up.vmdk 'RW 1 FLAT "../outside/secret.txt" 0'
refused "an extent path leaving the folder" img/up.vmdk
like "$(< "$T/err")" "leaves the image's folder" ".. path: said so"
desc img/up2.vmdk 'RW 2048 FLAT "sub/../a.bin" 0'
refused "a .. component inside the path" img/up2.vmdk
mkfifo img/fifo.bin
desc img/fifo.vmdk 'RW 1 FLAT "fifo.bin" 0'
refused "a FIFO as extent (no hang)" img/fifo.vmdk
ln -s /dev/zero img/dev.bin
desc img/dev.vmdk 'RW 2048 FLAT "dev.bin" 0'
refused "a character device as extent" img/dev.vmdk
desc img/dir.vmdk 'RW 1 FLAT "sub" 0'
refused "a folder as extent" img/dir.vmdk
if [ -b /dev/loop0 ] || ls /dev/loop* > /dev/null 2>&1; then
    ln -s "$(ls /dev/loop* | grep -E '/dev/loop[0-9]+$' | head -1)" img/blk.bin
    desc img/blk.vmdk 'RW 1 FLAT "blk.bin" 0'
    refused "a block device as extent" img/blk.vmdk
else
    skip "a block device as extent" "no block device node here"
fi

# ---- allowed by default, refused under --untrusted ----------------------------
desc img/subdir.vmdk 'RW 2048 FLAT "sub/a.bin" 0'
kimg convert -O raw img/subdir.vmdk out.raw
ok "an extent in a subfolder: read by default" cmp -s out.raw img/a.bin
rm -f out.raw
refused "an extent in a subfolder under --untrusted" img/subdir.vmdk --untrusted
ln -s a.bin img/link.bin
desc img/link.vmdk 'RW 2048 FLAT "link.bin" 0'
kimg convert -O raw img/link.vmdk out.raw
ok "a symbolic link as extent: followed by default" cmp -s out.raw img/a.bin
rm -f out.raw
refused "a symbolic link as extent under --untrusted" img/link.vmdk --untrusted
like "$(< "$T/err")" "symbolic link" "--untrusted symlink: said so"
# a link that leads out of the folder: a folder component or the file
ln -s ../outside img/outdir
desc img/outdir.vmdk 'RW 1 FLAT "outdir/secret.txt" 0'
refused "a symlinked folder leading out of the image's folder" img/outdir.vmdk
like "$(< "$T/err")" "leads out of the image's folder" "symlinked folder: said so"
ln -s "$PWD/outside/secret.txt" img/outfile.bin
desc img/outfile.vmdk 'RW 1 FLAT "outfile.bin" 0'
refused "a symbolic link to a file outside the folder" img/outfile.vmdk
ln -s sub img/insub
desc img/insub.vmdk 'RW 2048 FLAT "insub/a.bin" 0'
kimg convert -O raw img/insub.vmdk out.raw
ok "a symlinked folder inside the image's folder: followed by default" cmp -s out.raw img/a.bin
rm -f out.raw
desc img/twice.vmdk 'RW 1024 FLAT "a.bin" 0' 'RW 1024 FLAT "a.bin" 1024'
kimg convert -O raw img/twice.vmdk out.raw
ok "one file for two extents: read by default" cmp -s out.raw img/a.bin
rm -f out.raw
refused "one file for two extents under --untrusted" img/twice.vmdk --untrusted
desc img/self.vmdk 'RW 1 FLAT "self.vmdk" 0'
refused "the descriptor as its own extent under --untrusted" img/self.vmdk --untrusted

# ---- plain names work under --untrusted ---------------------------------------
desc img/plain.vmdk 'RW 2048 FLAT "a.bin" 0'
kimg convert --untrusted -O raw img/plain.vmdk out.raw
ok "--untrusted: a plain extent name is read" cmp -s out.raw img/a.bin
rm -f out.raw
oracle "--untrusted: info as qemu-img's" info --output=json img/plain.vmdk
kimg info --untrusted --output=json img/plain.vmdk
is_file "$T/out" "$T/qout" "--untrusted info: the same"
# changeTrackPath and ddb entries name files that are never opened
{ cat img/plain.vmdk; printf 'changeTrackPath="fifo.bin"\nddb.x = "fifo.bin"\n'; } > img/ctk.vmdk
kimg convert --untrusted -O raw img/ctk.vmdk out.raw
ok "changeTrackPath naming a FIFO: not opened (no hang)" cmp -s out.raw img/a.bin
rm -f out.raw

# ---- a flat extent shorter than declared --------------------------------------
desc img/short.vmdk 'RW 4096 FLAT "a.bin" 0'
kimg convert -O raw img/short.vmdk out.raw
is "$RC" 0 "short flat extent: read by default"
like "$(< "$T/err")" "kimg: warning: extent 'img/a.bin' is shorter than the descriptor says" \
    "short flat extent: a warning"
{ cat img/a.bin; head -c 1048576 /dev/zero; } > short.expect
ok "short flat extent: the rest reads as zeros (as qemu-img)" cmp -s out.raw short.expect
rm -f out.raw
refused "a short flat extent under --untrusted" img/short.vmdk --untrusted

# ---- delta disks: the parent hint and the CID check --------------------------
qemu-img create -q -f vmdk img/base.vmdk 4M
qemu-io -f vmdk -c 'write -P 0x5a 0 1M' img/base.vmdk > /dev/null
qemu-img create -q -f vmdk -b base.vmdk -F vmdk img/delta.vmdk
qemu-io -f vmdk -c 'write -P 0x33 1M 64k' img/delta.vmdk > /dev/null
kimg convert --untrusted -O raw img/delta.vmdk out.raw
err_line "--untrusted: the parent hint is not followed"
ok "--untrusted parent hint: no output file" test ! -e out.raw
oracle "--untrusted delta: info as qemu-img's" info --output=json img/delta.vmdk
kimg info --untrusted --output=json img/delta.vmdk
is_file "$T/out" "$T/qout" "--untrusted delta: info still names the parent"
# the parent changed (a new CID, as qemu writes on its first write)
$PY - img/base.vmdk <<'EOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
i = b.index(b"CID=") + 4
n = b.index(b"\n", i) - i          # qemu writes %x: 1 to 8 digits
new = b"0badc0de"[:n] if b[i:i + n] != b"0badc0de"[:n] else b"1" * n
b[i:i + n] = new
open(sys.argv[1], "wb").write(b)
EOF
qimg convert -O raw img/delta.vmdk q2.raw
isnt "$QRC" 0 "(qemu-img 7.2 fails to read it too)"
kimg convert -O raw img/delta.vmdk out.raw
err_line "a delta disk whose parent changed: convert"
like "$(< "$T/err")" "has changed since this delta disk was made" "CID mismatch: said so"
ok "CID mismatch: no output file" test ! -e out.raw
kimg compare img/delta.vmdk img/base.vmdk
is "$RC" 3 "CID mismatch: compare fails (3: reading the allocation)"
kimg info --backing-chain img/delta.vmdk
is "$RC" 0 "CID mismatch: info --backing-chain still shows the chain"
done_testing
