#!/bin/bash
# Encrypted images in create with preallocation, measure, check and
# check -r, convert -n into existing encrypted targets, and the standalone
# luks format in measure, compare, checksum, map and convert -n (issue 14),
# qemu-img 7.2 and qemu-io as the oracle.  No plaintext in any written
# file, no passphrase in any output.
# Deliberate difference: qemu 7.2 creates an encrypted qcow2 with
# preallocation=metadata|falloc|full whose clusters are holes or plain
# zeros, which decrypt to noise (qemu-io "read -P 0" fails on its image);
# kimg writes the encryption of zeros, so the new image reads as zeros.
# Layout, map, file size and the Formatting line stay qemu-img's.
# make check: a third of the preallocation cases (metadata and full with
# extended L2), of the measure matrix and of the check -r repairs (lib.sh
# sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/luks.sh"

# ---- create -o preallocation=... with encrypt.format=luks ----------------
readback() {
    # (a raw target, made anew: no benchmark, the real qemu-img, not the shim)
    "$KIMG_REAL_QEMU_IMG" convert "${sec[@]}" --image-opts "$(kopen k.qcow2)" -O raw rb.raw &&
    cmp -s -n 200000 -i 70000:0 rb.raw m.bin && qread "$(kopen k.qcow2)" 0 300000 100000
}
# (ordered so that check's third takes metadata and full)
for pc in metadata falloc metadata,cluster_size=4k full,extended_l2=on full; do
    sampled || continue         # check: a third of the cases; check-slow: the rest
    p=${pc%%,*}; cs=${pc#$p}
    {
        name="create -o preallocation=$p$cs, luks"
        rm -f q.qcow2 k.qcow2
        qimg create -f qcow2 "${sec[@]}" -o $E0,preallocation=$p$cs q.qcow2 3000000
        kimg create -f qcow2 "${sec[@]}" -o $E0,preallocation=$p$cs k.qcow2 3000000
        is "$RC" "$QRC" "$name: exit code as qemu-img's"
        is "$(sed s/k.qcow2/q.qcow2/ "$T/out")" "$(< "$T/qout")" "$name: the Formatting line"
        nosecret "$name"
        ok "$name: the guest reads zeros" qread "$(kopen k.qcow2)" 0 0 3000000
        ok "$name: qemu-img check clean" qemu-img check -q "${sec[@]}" --image-opts "$(kopen k.qcow2)"
        is "$(stat -c %s k.qcow2)" "$(stat -c %s q.qcow2)" "$name: the file size as qemu-img's"
        qemu-img map --output=json "${sec[@]}" --image-opts "$(kopen q.qcow2)" > qm.json
        qemu-img map --output=json "${sec[@]}" --image-opts "$(kopen k.qcow2)" > km.json
        is_file km.json qm.json "$name: map as qemu-img's"
        qemu-img info --output=json q.qcow2 | grep -v -e actual-size -e uuid -e '"filename"' -e salt -e iters > qi.json
        qemu-img info --output=json k.qcow2 | grep -v -e actual-size -e uuid -e '"filename"' -e salt -e iters > ki.json
        # the LUKS header's stripes and offsets, not its random salts or
        # the iteration counts the PBKDF2 benchmark chose
        is_file ki.json qi.json "$name: info as qemu-img's (salts, iterations, uuid aside)"
        # data written afterwards reads back, nothing plain on disk
        yes "$MARK" | head -c 200000 > m.bin
        qemu-io "${sec[@]}" --image-opts "$(kopen k.qcow2)" -c "write -s m.bin 70000 200000" > /dev/null
        ok "$name: written data reads back" readback
        noplain k.qcow2 "$name"
    }
done
# backing file and preallocation: refused as qemu-img refuses (v3 without
# extended L2), both encrypted
qemu-img create -q -f qcow2 pb.qcow2 1M
rm -f q.qcow2 k.qcow2
qimg create -f qcow2 "${sec[@]}" -o $E0,preallocation=metadata -b pb.qcow2 -F qcow2 q.qcow2
kimg create -f qcow2 "${sec[@]}" -o $E0,preallocation=metadata -b pb.qcow2 -F qcow2 k.qcow2
is "$RC" "$QRC" "create -b with preallocation, luks: exit code as qemu-img's"

# ---- measure ----------------------------------------------------------------
head -c 2M /dev/urandom > src.raw; yes "$MARK" | head -c 1M >> src.raw; truncate -s 5M src.raw
qemu-img convert -q -f raw -O qcow2 src.raw plain.qcow2
qemu-img convert -q "${sec[@]}" -f raw -O qcow2 -o $E0 src.raw enc.qcow2
qemu-img convert -q "${sec[@]}" -f raw -O luks -o key-secret=sec0,iter-time=10 src.raw l.luks
mcase() { oracle "measure $*" measure "$@"; nosecret "measure $*"; }
# the matrix: a third of its cases in check, the rest in check-slow
mcase_s() { sampled || return 0; mcase "$@"; }
for out in "" "--output=json"; do
    mcase_s $out -O qcow2 -o encrypt.format=luks,encrypt.key-secret=sec0 "${sec[@]}" src.raw
    mcase_s $out -O qcow2 -o $E0 "${sec[@]}" plain.qcow2
    mcase_s $out -O qcow2 -o $E1 "${sec[@]}" --image-opts "$(kopen enc.qcow2)"
    mcase_s $out -O qcow2 "${sec[@]}" --image-opts "$(kopen enc.qcow2)"
    mcase_s $out -O raw "${sec[@]}" --image-opts "$(kopen enc.qcow2)"
    mcase_s $out -O qcow2 -o $E0,cluster_size=2M,preallocation=full "${sec[@]}" --size 100G
    mcase_s $out -O qcow2 -o $E0,encrypt.cipher-alg=aes-128 "${sec[@]}" --size 10G
    mcase_s $out -O luks -o key-secret=sec0,iter-time=10 "${sec[@]}" --image-opts "$(kopen enc.qcow2)"
    mcase_s $out -O luks -o key-secret=sec0 "${sec[@]}" --image-opts "$(lopen l.luks)"
    mcase_s $out -O qcow2 "${sec[@]}" --image-opts "$(lopen l.luks)"
    mcase_s $out -O qcow2 -o $E0 "${sec[@]}" --image-opts "$(lopen l.luks)"
done
mcase -O qcow2 -o encrypt.format=luks "${sec[@]}" src.raw
mcase -O qcow2 -o encrypt.format=luks,encrypt.key-secret=nosuch "${sec[@]}" src.raw
mcase -O qcow2 enc.qcow2
mcase -O luks src.raw
mcase -O qcow2 --object secret,id=sec0,file=key2 --image-opts "$(kopen enc.qcow2)"

# ---- check, check -r ---------------------------------------------------------
Q2="$PY $KIMG_SRC/tests/cli/qcow2.py"
ccase() {
    local name=$1 img=$2; shift 2
    oracle "check $name" check "${sec[@]}" --image-opts "$(kopen $img)"
    oracle "check --output=json $name" check --output=json "${sec[@]}" --image-opts "$(kopen $img)"
    oracle "check $name, without the key" check $img
    for m in leaks all; do
        sampled || continue     # check: a third of the repairs; check-slow: the rest
        cp $img rq.qcow2; cp $img rk.qcow2
        qimg check -r $m "${sec[@]}" --image-opts "$(kopen rq.qcow2)"
        kimg check -r $m "${sec[@]}" --image-opts "$(kopen rk.qcow2)"
        is "$RC" "$QRC" "check -r $m $name: exit code as qemu-img's"
        is_file "$T/out" "$T/qout" "check -r $m $name: stdout as qemu-img's"
        qc() { qemu-img check -q "${sec[@]}" --image-opts "$(kopen $1)" > /dev/null 2>&1; echo $?; }
        is "$(qc rk.qcow2)" "$(qc rq.qcow2)" "check -r $m $name: what is left as qemu-img leaves it"
        ok "check -r $m $name: the guest as qemu-img's" qemu-img compare -q "${sec[@]}" --image-opts "$(kopen rq.qcow2)" "$(kopen rk.qcow2)"
    done
}
ccase "clean" enc.qcow2
cp enc.qcow2 leak.qcow2; $Q2 set-rc leak.qcow2 "$($Q2 host leak.qcow2 0)" 2
ccase "a data cluster's refcount too high" leak.qcow2
cp enc.qcow2 luks0.qcow2; $Q2 set-rc luks0.qcow2 $((4 * 65536)) 0
ccase "the LUKS area's refcount 0" luks0.qcow2
cp enc.qcow2 luks2.qcow2; $Q2 set-rc luks2.qcow2 $((4 * 65536)) 2
ccase "the LUKS area's refcount 2" luks2.qcow2
cp enc.qcow2 rk.qcow2
kimg check -r all rk.qcow2
is "$RC" 1 "check -r without the key: exit 1"
err_line "check -r without the key"
cmp -s rk.qcow2 enc.qcow2; is $? 0 "check -r without the key: the file unchanged"

# ---- convert -n into existing encrypted targets -------------------------------
ncase() {
    local name=$1 tgt=$2 topts=$3; shift 3
    kimg convert -n "${sec[@]}" "$@" --target-image-opts "$topts"
    is "$RC" 0 "convert -n $name: exit 0" || diag "$(< "$T/err")"
    nosecret "convert -n $name"
    ok "convert -n $name: the guest" qemu-img compare -q "${sec[@]}" --image-opts "$topts" "driver=raw,file.filename=src.raw"
    noplain "$tgt" "convert -n $name"
}
qemu-img create -q -f qcow2 "${sec[@]}" -o $E1 t1.qcow2 5M
cp t1.qcow2 t.qcow2
ncase "plain raw into key 1" t.qcow2 "$(kopen t.qcow2 sec1)" src.raw
ok "convert -n plain raw into key 1: qemu-img check clean" qemu-img check -q "${sec[@]}" --image-opts "$(kopen t.qcow2 sec1)"
cp t1.qcow2 t.qcow2
ncase "key 0 into key 1" t.qcow2 "$(kopen t.qcow2 sec1)" --image-opts "$(kopen enc.qcow2)"
qemu-img create -q -f qcow2 "${sec[@]}" -o $E1,preallocation=metadata t.qcow2 5M
ncase "into a preallocated target" t.qcow2 "$(kopen t.qcow2 sec1)" --image-opts "$(kopen enc.qcow2)"
# (the luks target made once, copied for its second case: one benchmark)
qemu-img create -q -f luks "${sec[@]}" -o key-secret=sec1,iter-time=10 t1.luks 5M
cp t1.luks t.luks
ncase "qcow2 key 0 into luks key 1" t.luks "$(lopen t.luks sec1)" --image-opts "$(kopen enc.qcow2)"
cp t1.qcow2 t.qcow2
ncase "luks into qcow2 key 1" t.qcow2 "$(kopen t.qcow2 sec1)" --image-opts "$(lopen l.luks)"
cp t1.luks t.luks
ncase "luks key 0 into luks key 1" t.luks "$(lopen t.luks sec1)" --image-opts "$(lopen l.luks)"
# the target's key missing or wrong: one line, the target unchanged
cp t1.qcow2 t.qcow2
oracle "convert -n into an encrypted target without its key" convert -n src.raw -O qcow2 t.qcow2
err_line "convert -n without the target's key"
oracle "convert -n with the wrong key" convert -n "${sec[@]}" --target-image-opts src.raw "$(kopen t.qcow2 sec0)"
ok "convert -n refused: the target unchanged" cmp -s t.qcow2 t1.qcow2

# ---- the standalone luks format: map, compare, checksum ----------------------
LO="$(lopen l.luks)"
oracle "luks map --output=json" map --output=json "${sec[@]}" --image-opts "$LO"
oracle "luks map (human: refused as qemu-img)" map "${sec[@]}" --image-opts "$LO"
oracle "luks compare with its guest" compare "${sec[@]}" --image-opts "$LO" "driver=raw,file.filename=src.raw"
oracle "luks compare with the encrypted qcow2" compare "${sec[@]}" --image-opts "$LO" "$(kopen enc.qcow2)"
oracle "luks compare with plain qcow2" compare "${sec[@]}" --image-opts "$LO" "driver=qcow2,file.filename=plain.qcow2"
# -s: qemu-img compares the whole block status, a host offset known or not
oracle "compare -s encrypted with the same data plain" compare -s "${sec[@]}" --image-opts "$(kopen enc.qcow2)" "driver=qcow2,file.filename=plain.qcow2"
oracle "compare -s encrypted with itself" compare -s "${sec[@]}" --image-opts "$(kopen enc.qcow2)" "$(kopen enc.qcow2)"
oracle "luks compare -s with its guest" compare -s "${sec[@]}" --image-opts "$LO" "driver=raw,file.filename=src.raw"
cp src.raw d.raw; printf x | dd of=d.raw bs=1 seek=2500000 conv=notrunc 2> /dev/null
oracle "luks compare, a difference" compare "${sec[@]}" --image-opts "$LO" "driver=raw,file.filename=d.raw"
oracle "luks compare, the wrong key" compare --object secret,id=sec0,file=key2 --image-opts "$LO" "driver=raw,file.filename=src.raw"
# (the sums' first words read by bash, not cut)
kimg checksum "${sec[@]}" --image-opts "$LO"; read -r sum_l _ < "$T/out"
kimg checksum "${sec[@]}" --image-opts "$(kopen enc.qcow2)"; read -r sum_e _ < "$T/out"
kimg checksum -f raw src.raw; read -r sum_r _ < "$T/out"
is "$sum_l" "$sum_r" "checksum of the luks image is its guest's"
is "$sum_e" "$sum_r" "checksum of the encrypted qcow2 is its guest's"
kimg checksum l.luks
err_line "checksum of a luks image without the key"
done_testing
