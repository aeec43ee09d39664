#!/bin/bash
# Snapshots interoperate with qemu-img both ways, on every kind of image:
#   kimg -c then qemu-img -a/-d, qemu-img -c then kimg -a/-d (v3, v2,
#   extended L2, compressed, small clusters, narrow and wide refcounts,
#   lazy refcounts, odd size): content as saved, qemu-img check clean;
#   writes after a kimg snapshot leave the snapshot alone (COPIED flags);
#   several snapshots applied in turn and deleted in mixed order;
#   selection as qemu-img's (-a: ID first, then name; -d: name, kimg also
#   takes an ID no name matches); duplicate names; -a to a snapshot of
#   another disk size; a VM-state snapshot applied and deleted (its state
#   freed: the same allocation as after qemu-img's -d).
# make check: a third of the images in the both-ways loop (lib.sh sampled:
# v2, extended L2, compressed, 2-bit refcounts); check-slow the rest.
. "$(dirname "$0")/lib.sh"
fixtures
cd "$T"

raw() { qemu-img convert -O raw "$1" "$2"; }
alloc() { qemu-img check --output=json "$1" 2>/dev/null | sed -n 's/.*"allocated-clusters": \([0-9]*\).*/\1/p'; }

# (ordered so that make check's third is v2, el2, zlib and rb2)
for fx in v2 v3 zstd el2 cs4k cs512 zlib rb64 lazy-clean rb2 odd; do
    sampled || continue
    [ -f "$FX/$fx.qcow2" ] || { skip "$fx" "no such fixture"; continue; }
    cp "$FX/$fx.qcow2" k.qcow2
    raw k.qcow2 s0.raw
    kimg snapshot -c s0 k.qcow2
    is "$RC" 0 "$fx: kimg snapshot -c"
    ok "$fx: clean after kimg -c" check_clean k.qcow2
    oracle "$fx: kimg check after kimg -c" check k.qcow2
    qemu-io -f qcow2 -c "write -P 0xe1 0 96k" -c "write -z 1M 64k" -c "discard 2M 64k" \
        k.qcow2 > /dev/null
    ok "$fx: clean after qemu-io writes over kimg's snapshot" check_clean k.qcow2
    qemu-img convert -O raw -l s0 k.qcow2 s0-after.raw
    ok "$fx: the snapshot kept its content under those writes" cmp -s s0.raw s0-after.raw
    raw k.qcow2 s1.raw
    qemu-img snapshot -c s1 k.qcow2
    # kimg applies qemu-img's snapshot and its own
    kimg snapshot -a s1 k.qcow2
    is "$RC" 0 "$fx: kimg -a of qemu-img's snapshot"
    ok "$fx: content after -a s1" qemu_oracle_compare k.qcow2 s1.raw
    kimg snapshot -a s0 k.qcow2
    ok "$fx: content after -a s0" qemu_oracle_compare k.qcow2 s0.raw
    ok "$fx: clean after kimg -a" check_clean k.qcow2
    # qemu-img applies kimg's snapshot (with 2-bit refcounts qemu-img's -a
    # raises the counts before dropping the old ones: 4 does not fit)
    qemu-io -f qcow2 -c "write -P 0xe2 64k 64k" k.qcow2 > /dev/null
    if [ $fx = rb2 ]; then
        kimg snapshot -a s0 k.qcow2
    else
        qemu-img snapshot -a s0 k.qcow2
    fi
    ok "$fx: qemu-img -a of kimg's snapshot" qemu_oracle_compare k.qcow2 s0.raw
    # deletions, one by each tool
    kimg snapshot -d s1 k.qcow2
    is "$RC" 0 "$fx: kimg -d of qemu-img's snapshot"
    ok "$fx: clean after kimg -d" check_clean k.qcow2
    qemu-img snapshot -d s0 k.qcow2
    ok "$fx: clean after qemu-img -d of kimg's snapshot" check_clean k.qcow2
    is "$(qemu-img snapshot -l k.qcow2)" "" "$fx: no snapshot left"
    ok "$fx: content unchanged by the deletions" qemu_oracle_compare k.qcow2 s0.raw
    qemu-io -f qcow2 -c "write -P 0xe3 0 128k" k.qcow2 > /dev/null
    ok "$fx: clean after writes in place (COPIED flags set again)" check_clean k.qcow2
done

# several snapshots, applied in turn, deleted in mixed order
cp "$FX/v3.qcow2" m.qcow2
for i in 1 2 3 4; do
    raw m.qcow2 m$i.raw
    kimg snapshot -c "m$i" m.qcow2
    qemu-io -f qcow2 -c "write -P 0x$i$i $((i * 64))k 64k" -c "write -P 0x5$i 3M 4k" m.qcow2 > /dev/null
done
raw m.qcow2 m5.raw
for i in 3 1 4 2; do
    kimg snapshot -a "m$i" m.qcow2
    ok "four snapshots: -a m$i gives its content" qemu_oracle_compare m.qcow2 m$i.raw
done
ok "four snapshots: clean after the applies" check_clean m.qcow2
cp m.qcow2 mq.qcow2
kimg snapshot -d m2 m.qcow2; qemu-img snapshot -d m2 mq.qcow2
kimg snapshot -d m4 m.qcow2; qemu-img snapshot -d m4 mq.qcow2
is "$(alloc m.qcow2)" "$(alloc mq.qcow2)" "two deleted: as many clusters allocated as after qemu-img's -d"
oracle "two deleted: the list" snapshot -l m.qcow2
ok "two deleted: clean" check_clean m.qcow2
for i in 1 3; do
    qemu-img convert -O raw -l "m$i" m.qcow2 x.raw
    ok "two deleted: m$i still holds its content" cmp -s x.raw m$i.raw
done
kimg snapshot -d m1 m.qcow2; kimg snapshot -d m3 m.qcow2
qemu-img snapshot -d m1 mq.qcow2; qemu-img snapshot -d m3 mq.qcow2
is "$(alloc m.qcow2)" "$(alloc mq.qcow2)" "all deleted: as many clusters allocated as after qemu-img's -d"
ok "all deleted: clean" check_clean m.qcow2
is "$(get_be 8 m.qcow2 64)" 0 "all deleted: snapshot table offset 0, as qemu-img leaves it"

# selection: snapshot 1 is named "2", snapshot 2 is named "x"
qemu-img create -q -f qcow2 sel.qcow2 1M
qemu-io -c "write -P 0xa1 0 4k" sel.qcow2 > /dev/null; raw sel.qcow2 sel1.raw
kimg snapshot -c 2 sel.qcow2
qemu-io -c "write -P 0xa2 0 4k" sel.qcow2 > /dev/null; raw sel.qcow2 sel2.raw
kimg snapshot -c x sel.qcow2
qemu-io -c "write -P 0xa3 0 4k" sel.qcow2 > /dev/null
cp sel.qcow2 a.qcow2; kimg snapshot -a 2 a.qcow2
ok "-a 2 takes ID 2 first (as qemu-img)" qemu_oracle_compare a.qcow2 sel2.raw
cp sel.qcow2 a.qcow2; kimg snapshot -a x a.qcow2
ok "-a x: by name" qemu_oracle_compare a.qcow2 sel2.raw
cp sel.qcow2 a.qcow2; cp sel.qcow2 b.qcow2
kimg snapshot -d 2 a.qcow2; qemu-img snapshot -d 2 b.qcow2
is "$(qemu-img snapshot -l a.qcow2 | cut -c1-27)" "$(qemu-img snapshot -l b.qcow2 | cut -c1-27)" \
    "-d 2 deletes the snapshot named 2 (as qemu-img: by name)"
cp sel.qcow2 a.qcow2; kimg snapshot -d 1 a.qcow2
is "$RC" 0 "-d 1: no snapshot is named 1, so ID 1 (kimg's addition; qemu-img refuses)"
like "$(qemu-img snapshot -l a.qcow2 | tail -n +3)" "^2 +x " "-d 1: only snapshot 2 is left"
# duplicate names: the first one
kimg snapshot -c x sel.qcow2
cp sel.qcow2 a.qcow2; cp sel.qcow2 b.qcow2
kimg snapshot -a x a.qcow2; qemu-img snapshot -a x b.qcow2
ok "duplicate names: -a applies the first, as qemu-img" qemu_oracle_compare a.qcow2 b.qcow2
kimg snapshot -d x a.qcow2; qemu-img snapshot -d x b.qcow2
is "$(qemu-img snapshot -l a.qcow2 | cut -c1-27)" "$(qemu-img snapshot -l b.qcow2 | cut -c1-27)" \
    "duplicate names: -d deletes the first, as qemu-img"

# -a to a snapshot of another disk size: the size follows
qemu-img create -q -f qcow2 rs.qcow2 4M
qemu-io -c "write -P 0xb1 0 64k" -c "write -P 0xb2 4032k 64k" rs.qcow2 > /dev/null
raw rs.qcow2 small.raw
kimg snapshot -c small rs.qcow2
qemu-img resize -q rs.qcow2 9M
qemu-io -c "write -P 0xb3 8M 64k" rs.qcow2 > /dev/null
raw rs.qcow2 big.raw
kimg snapshot -c big rs.qcow2
cp rs.qcow2 rq.qcow2
kimg snapshot -a small rs.qcow2; qemu-img snapshot -a small rq.qcow2
is "$(qemu-img info --output=json rs.qcow2 | grep '"virtual-size"')" \
   "$(qemu-img info --output=json rq.qcow2 | grep '"virtual-size"')" "-a to a smaller snapshot: the size as after qemu-img's -a"
ok "-a to a smaller snapshot: its content" qemu_oracle_compare rs.qcow2 small.raw
ok "-a to a smaller snapshot: clean" check_clean rs.qcow2
kimg snapshot -a big rs.qcow2
ok "-a back to the larger one: its content" qemu_oracle_compare rs.qcow2 big.raw
like "$(qemu-img info --output=json rs.qcow2 | grep '"virtual-size"')" ": $((9 << 20))," "-a back to the larger one: its size"

ok "-a back to the larger one: clean" check_clean rs.qcow2

# a VM-state snapshot (as in 101): applied as qemu-img applies it, deleted
# with its state freed
qemu-img create -q -f qcow2 -o cluster_size=4k vm.qcow2 4M
qemu-io -c "write -P 0x11 0 64k" vm.qcow2 > /dev/null
qemu-img resize -q vm.qcow2 6M
qemu-io -c "write -P 0x99 4M 64k" vm.qcow2 > /dev/null
qemu-img snapshot -c vmsnap vm.qcow2
qemu-io -c "discard 4M 64k" -c "write -P 0x12 0 4k" vm.qcow2 > /dev/null
so=$(get_be 8 vm.qcow2 64)
put_be 8 vm.qcow2 24 $((4 << 20)); put_be 4 vm.qcow2 $((so + 32)) 65536
put_be 8 vm.qcow2 $((so + 40)) 65536; put_be 8 vm.qcow2 $((so + 48)) $((4 << 20))
cp vm.qcow2 vk.qcow2; cp vm.qcow2 vq.qcow2
kimg snapshot -a vmsnap vk.qcow2; qemu-img snapshot -a vmsnap vq.qcow2
ok "VM state: -a as qemu-img's -a" qemu_oracle_compare -s vk.qcow2 vq.qcow2
is "$(alloc vk.qcow2)" "$(alloc vq.qcow2)" "VM state: -a maps the state as qemu-img's -a does"
ok "VM state: clean after -a" check_clean vk.qcow2
cp vm.qcow2 vk.qcow2; cp vm.qcow2 vq.qcow2
kimg snapshot -d vmsnap vk.qcow2; qemu-img snapshot -d vmsnap vq.qcow2
is "$(alloc vk.qcow2)" "$(alloc vq.qcow2)" "VM state: -d frees the state (allocation as after qemu-img's -d)"
ok "VM state: clean after -d" check_clean vk.qcow2
ok "VM state: active content unchanged by -d" qemu_oracle_compare vk.qcow2 vm.qcow2
done_testing
