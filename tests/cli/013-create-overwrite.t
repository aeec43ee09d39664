#!/bin/bash
# kimg create over an existing file replaces it, as qemu-img create does
# (truncates and writes a new image), for qcow2 and raw, also when the old
# file was larger than the new image.
. "$(dirname "$0")/lib.sh"
head -c 3000000 /dev/urandom > old.qcow2
kimg create -q -f qcow2 old.qcow2 1M
is "$RC" 0 "create over an existing file: exit 0"
ok "the new image is clean" check_clean old.qcow2
is "$(qemu-img info --output=json old.qcow2 | grep -c '"virtual-size": 1048576')" 1 "new virtual size"
qemu-img create -q -f raw z.raw 1M
ok "the old content is gone (reads as zeros)" qemu_oracle_compare -f qcow2 -F raw old.qcow2 z.raw
# and the same with qemu-img for the file length: old data beyond the new image is dropped
qemu-img create -q -f qcow2 ref.qcow2 1M
is "$(stat -c %s old.qcow2)" "$(stat -c %s ref.qcow2)" "file length as qemu-img's new image (old tail truncated)"
# raw
head -c 3000000 /dev/urandom > old.raw
kimg create -q -f raw old.raw 1M
is "$RC" 0 "raw create over an existing file: exit 0"
is "$(stat -c %s old.raw)" 1048576 "raw file truncated to the new size"
ok "raw content reads as zeros" cmp -s old.raw z.raw
# an existing qcow2 image with a backing file, replaced by a plain one
qemu-img create -q -f qcow2 -b z.raw -F raw over.qcow2
kimg create -q -f qcow2 over.qcow2 2M
is "$RC" 0 "replace an overlay: exit 0"
isnt "$(qemu-img info over.qcow2 | grep -c 'backing file')" 1 "the backing file reference is gone"
done_testing
