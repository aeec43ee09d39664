#!/bin/bash
# info reports "filename" as given and "full-backing-filename" resolved the
# way qemu-img does (the overlay's folder joined to a relative backing name,
# no normalisation), for images named relatively, in a subfolder, by
# absolute path, through a symlink, with ../ and absolute backing names.
. "$(dirname "$0")/lib.sh"
mkdir -p a/b
qemu-img create -q -f raw base.raw 1M
qemu-img create -q -f qcow2 -b ../base.raw -F raw a/up.qcow2
qemu-img create -q -f qcow2 -b "$T/base.raw" -F raw a/abs.qcow2
qemu-img create -q -f qcow2 -b ../up.qcow2 -F qcow2 a/b/top.qcow2
qemu-img create -q -f qcow2 -b base.raw -F raw plain.qcow2
ln -s a/b/top.qcow2 link.qcow2
for f in a/up.qcow2 a/abs.qcow2 a/b/top.qcow2 plain.qcow2 ./plain.qcow2 "$T/a/up.qcow2" \
         "$T/a/b/top.qcow2" link.qcow2 a/../plain.qcow2 a//up.qcow2; do
    oracle "info --output=json $f" info --output=json "$f"
    oracle "info --backing-chain --output=json $f" info --backing-chain --output=json "$f"
    oracle "info $f" info "$f"
done
cd a
oracle "info from a subfolder" info --backing-chain --output=json b/top.qcow2
done_testing
