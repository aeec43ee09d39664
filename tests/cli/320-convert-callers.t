#!/bin/bash
# convert options real callers pass that qemu-img 7.2 takes:
# -n -B BACKING (vdsm, for every layer with a parent): only what the
# sources' top layer holds is copied, the target's backing file supplies
# the rest; the -B name is not opened (as qemu-img); the target's map and
# content as after qemu-img's.  -n with -o: qemu-img's refusal.
# Proxmox's "zeroinit:" target prefix (its qemu's zeroinit filter; qemu-img
# 7.2 refuses it as an unknown protocol): the existing target is taken as
# reading zeros (--target-is-zero), so zeros are not written.
. "$(dirname "$0")/lib.sh"

qemu-img create -q -f qcow2 base.qcow2 4M
qemu-io -f qcow2 -c "write -P 1 0 1M" base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -f qcow2 -c "write -P 2 1M 64k" -c "write -z 64k 64k" top.qcow2 > /dev/null
qemu-img create -q -f qcow2 base2.qcow2 4M
qemu-io -f qcow2 -c "write -P 1 0 1M" base2.qcow2 > /dev/null

VDSM=(-p -t none -T none)
qemu-img convert -t none -T none -f qcow2 -O qcow2 base.qcow2 probe.qcow2 2> /dev/null || VDSM=(-p)
for t in k q; do
    qemu-img create -q -f qcow2 -b base2.qcow2 -F qcow2 $t.qcow2
    qemu-img create -q -f qcow2 $t-nb.qcow2 4M
done
kimg convert "${VDSM[@]}" -f qcow2 -O qcow2 -n -B base2.qcow2 top.qcow2 k.qcow2
is "$RC" 0 "vdsm's -n -B: exit 0"
qemu-img convert "${VDSM[@]}" -f qcow2 -O qcow2 -n -B base2.qcow2 top.qcow2 q.qcow2 > /dev/null
is "$(qemu-img map --output=json k.qcow2 | sed 's/"offset": [0-9]*/"offset": N/')" \
   "$(qemu-img map --output=json q.qcow2 | sed 's/"offset": [0-9]*/"offset": N/')" \
   "vdsm's -n -B: the target's map as after qemu-img's (only the top layer copied)"
ok "vdsm's -n -B: content as the source" qemu_oracle_compare top.qcow2 k.qcow2
ok "vdsm's -n -B: check clean" check_clean k.qcow2
kimg convert -n -B nonexistent -F qcow2 -f qcow2 -O qcow2 top.qcow2 k-nb.qcow2
qemu-img convert -n -B nonexistent -F qcow2 -f qcow2 -O qcow2 top.qcow2 q-nb.qcow2
is "$RC" 0 "-n -B with a name that is not opened: exit 0 (as qemu-img)"
is "$(qemu-img map --output=json k-nb.qcow2 | sed 's/"offset": [0-9]*/"offset": N/')" \
   "$(qemu-img map --output=json q-nb.qcow2 | sed 's/"offset": [0-9]*/"offset": N/')" \
   "-n -B into a target without a backing file: the map as qemu-img's"
oracle "-n -o" convert -n -o cluster_size=4k -O qcow2 top.qcow2 k.qcow2
err_line "-n -o"
is "$(< "$T/err")" "kimg: $(sed 's/^qemu-img: //' "$T/qerr")" "-n -o: qemu-img's message"

# zeroinit: a target holding garbage keeps it where the source has zeros
truncate -s 4M junk.raw
qemu-io -f raw -c "write -P 0x77 0 4M" junk.raw > /dev/null
cp junk.raw z.raw
kimg convert -n -f qcow2 -O raw top.qcow2 zeroinit:z.raw
is "$RC" 0 "zeroinit: target: exit 0"
qemu-img convert -f qcow2 -O raw top.qcow2 want.raw
ok "zeroinit: the source's data written" \
    bash -c 'cmp -s -n 65536 z.raw want.raw && cmp -s -i 1048576 -n 65536 z.raw want.raw'
is "$(od -An -tx1 -j 2097152 -N 4 z.raw | tr -d ' ')$(od -An -tx1 -j 65536 -N 4 z.raw | tr -d ' ')" \
   "7777777777777777" "zeroinit: zeros not written (the target is taken as zeroed)"
ok "zeroinit: no file named zeroinit:z.raw" test ! -e zeroinit:z.raw
truncate -s 0 zz.raw; truncate -s 4M zz.raw
kimg convert -n -f qcow2 -O raw top.qcow2 zeroinit:zz.raw
ok "zeroinit: a zeroed target ends equal to the source" cmp -s zz.raw want.raw
kimg convert -n --target-image-opts -f qcow2 top.qcow2 zeroinit:zz.raw
isnt "$RC" 0 "zeroinit: not an image-opts prefix (refused)"
done_testing
