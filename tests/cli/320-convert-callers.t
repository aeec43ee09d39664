#!/bin/bash
# convert options real callers pass that qemu-img 7.2 takes:
# -n -B BACKING (vdsm, for every layer with a parent): only what the
# sources' top layer holds is copied, the target's backing file supplies
# the rest; the -B name is not opened (as qemu-img); the target's map and
# content as after qemu-img's.  -n with -o: qemu-img's refusal.
# Proxmox's "zeroinit:" target prefix (its qemu's zeroinit filter; qemu-img
# 7.2 refuses it as an unknown protocol): the existing target is taken as
# reading zeros (--target-is-zero), so zeros are not written.
# Proxmox's --target-image-opts for qcow2 on LVM, "driver=qcow2,
# discard-no-unref=true,file.driver=host_device,file.filename=DEV" (QEMU
# 8.1's option; qemu-img 7.2 refuses it): taken, on a loop device with
# Proxmox's -p -n -f -r; zeros written over allocated clusters keep them
# allocated (QEMU 8.1's meaning; without the option they are freed); the
# same grammar for --image-opts; v2 images, bad values and formats other
# than qcow2 refused with QEMU's messages.
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

# ---- discard-no-unref (Proxmox's --target-image-opts) -----------------------
# src: data, 2 MiB of zeros, data; the targets full of other data first
qemu-img create -q -f qcow2 src.qcow2 4M
qemu-io -f qcow2 -c "write -P 5 0 1M" -c "write -P 6 3M 1M" src.qcow2 > /dev/null
for v in keep free; do
    qemu-img create -q -f qcow2 t-$v.qcow2 4M
    qemu-io -f qcow2 -c "write -P 9 0 4M" t-$v.qcow2 > /dev/null
done
kimg convert -p -n -f qcow2 -r 10240K --target-image-opts src.qcow2 \
    driver=qcow2,discard-no-unref=true,file.driver=file,file.filename=t-keep.qcow2
is "$RC" 0 "--target-image-opts ...,discard-no-unref=true: exit 0"
kimg convert -p -n -f qcow2 --target-image-opts src.qcow2 driver=qcow2,file.filename=t-free.qcow2
is "$RC" 0 "--target-image-opts without it: exit 0"
# zmap FILE: the target's zero extents, "start+length:offset-or-none"
zmap() {
    qemu-img map --output=json "$1" | $PY -c '
import json, sys
print(" ".join("%d+%d:%s" % (e["start"], e["length"], e.get("offset", "none"))
               for e in json.load(sys.stdin) if e["zero"]))'
}
acl() { qemu-img check --output=json "$1" | $PY -c 'import json, sys; print(json.load(sys.stdin)["allocated-clusters"])'; }
for v in keep free; do
    ok "discard-no-unref ($v): content as the source" qemu_oracle_compare src.qcow2 t-$v.qcow2
    ok "discard-no-unref ($v): check clean" check_clean t-$v.qcow2
done
like "$(zmap t-keep.qcow2)" '^1048576\+2097152:[0-9]+$' \
    "discard-no-unref=true: the zeroed clusters keep their host clusters (zero, allocated)"
is "$(acl t-keep.qcow2)" 64 "discard-no-unref=true: every cluster still allocated (64)"
is "$(zmap t-free.qcow2)" "1048576+2097152:none" "without it: the zeroed clusters freed"
is "$(acl t-free.qcow2)" 32 "without it: 32 clusters allocated"
kimg info --output=json --image-opts driver=qcow2,discard-no-unref=true,file.driver=file,file.filename=t-keep.qcow2
is "$RC" 0 "--image-opts with discard-no-unref=true: exit 0"
is "$($PY -c 'import json, sys; print(json.load(sys.stdin)["format"])' < "$T/out")" qcow2 \
    "--image-opts with discard-no-unref=true: read as qcow2"
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 4M
for s in "driver=qcow2,discard-no-unref=true,file.filename=v2.qcow2" \
         "driver=qcow2,discard-no-unref=maybe,file.filename=t-keep.qcow2" \
         "driver=raw,discard-no-unref=true,file.filename=junk.raw"; do
    kimg info --image-opts "$s"
    err_line "--image-opts '$s'"
done
is "$(kimg info --image-opts driver=qcow2,discard-no-unref=on,file.filename=v2.qcow2; cat "$T/err")" \
   "kimg: Could not open 'driver=qcow2,discard-no-unref=on,file.filename=v2.qcow2': discard-no-unref is only supported since qcow2 version 3" \
   "discard-no-unref on a v2 image: QEMU's message"
kimg info --image-opts driver=qcow2,discard-no-unref=off,file.filename=v2.qcow2
is "$RC" 0 "discard-no-unref=off on a v2 image: exit 0 (as QEMU)"

# Proxmox's exact line: qcow2 on a block device (LVM there, a loop here)
loop_attach lv.img 64M
if [ -n "$LOOPDEV" ]; then
    qemu-img create -q -f qcow2 "$LOOPDEV" 4M
    kimg convert -p -n -f qcow2 -r 10240K --target-image-opts src.qcow2 \
        "driver=qcow2,discard-no-unref=true,file.driver=host_device,file.filename=$LOOPDEV"
    is "$RC" 0 "Proxmox's line (host_device on $LOOPDEV): exit 0"
    like "$(tr '\r' '\n' < "$T/out" | grep -c '(100.00/100%)')" '^[1-9]' "  -p: qemu-img's progress to 100%"
    ok "  content as the source" qemu_oracle_compare -f qcow2 -F qcow2 src.qcow2 "$LOOPDEV"
    ok "  check clean" check_clean -f qcow2 "$LOOPDEV"
else
    for i in 1 2 3 4; do skip "Proxmox's line on a block device" "needs root and losetup"; done
fi
done_testing
