#!/bin/bash
# Chains of encrypted images (issue 14), qemu-img 7.2 and qemu-io as the
# oracle: overlays where both layers are encrypted with different keys
# (every --image-opts form qemu-img 7.2 takes for the backing layer's key
# and file: backing.encrypt.key-secret, backing.driver, backing.file.filename,
# backing.file.driver), map/compare/checksum/info --backing-chain on them;
# rebase safe and -u (an encrypted overlay over a plain base and the
# reverse, onto an encrypted base); commit into a plain base and into an
# encrypted base with another key, through an intermediate (-b);
# convert -B with encryption.  No plaintext in any written file, no
# passphrase in any output.
# Where qemu-img fails only because --image-opts names give it no folder
# for a relative backing name ("Cannot use relative backing file names"),
# kimg resolves it in the image's folder as for a plain name, and the test
# checks kimg's result against the guest qemu-img reads instead.
# make check: a third of the backing-option forms and of the rebase
# refusals (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/luks.sh"
# guest OPTS OUT: the guest as qemu-img reads it, into OUT
# (a raw target, made anew by convert: no benchmark, the real qemu-img
# rather than the shim)
guest() { "$KIMG_REAL_QEMU_IMG" convert "${sec[@]}" --image-opts "$1" -O raw "$2"; }

# bases: plain (pb, pb2), encrypted with key 0 (eb0), with key 1 (eb1)
qemu-img create -q -f qcow2 pb.qcow2 4M
mark "driver=qcow2,file.filename=pb.qcow2" 0 4M
qemu-img create -q -f qcow2 pb2.qcow2 4M
qemu-io -c 'write -P 0x12 0 2M' pb2.qcow2 > /dev/null
qemu-img create -q -f qcow2 "${sec[@]}" -o $E0 eb0.qcow2 4M
mark "$(kopen eb0.qcow2)" 0 3M
qemu-img create -q -f qcow2 "${sec[@]}" -o $E1 eb1.qcow2 4M
qemu-io "${sec[@]}" --image-opts "$(kopen eb1.qcow2 sec1)" -c 'write -P 0x31 1M 3M' > /dev/null

# ---- two keys: an overlay with key 1 over a base with key 0 -------------
# created by kimg and by qemu-img without the base's key (the size comes
# from the header), data written by qemu-io through the two keys
for t in q k; do
    if [ $t = q ]; then qimg create -f qcow2 "${sec[@]}" -o $E1 -b eb0.qcow2 -F qcow2 o$t.qcow2
    else kimg create -f qcow2 "${sec[@]}" -o $E1 -b eb0.qcow2 -F qcow2 o$t.qcow2; fi
done
is "$RC" "$QRC" "create -b over an encrypted base, no key for it: exit code as qemu-img's"
is "$(sed s/ok.qcow2/oq.qcow2/ "$T/out")" "$(< "$T/qout")" "create -b over an encrypted base: the Formatting line"
nosecret "create -b over an encrypted base"
for t in q k; do
    qemu-io "${sec[@]}" --image-opts "$(kopen o$t.qcow2 sec1),backing.encrypt.key-secret=sec0" \
        -c 'write -P 0x41 1500000 1000000' -c 'write -z 100000 5000' > /dev/null
done
mark "$(kopen ok.qcow2 sec1),backing.encrypt.key-secret=sec0" 3500000 20000
mark "$(kopen oq.qcow2 sec1),backing.encrypt.key-secret=sec0" 3500000 20000
ok "two keys: kimg's overlay reads as qemu-img's" qemu-img compare -q "${sec[@]}" --image-opts \
    "$(kopen oq.qcow2 sec1),backing.encrypt.key-secret=sec0" "$(kopen ok.qcow2 sec1),backing.encrypt.key-secret=sec0"
noplain ok.qcow2 "two keys"
guest "$(kopen oq.qcow2 sec1),backing.encrypt.key-secret=sec0" o.raw

# every form of the backing layer's options (ordered so that check's
# third takes the form naming every option, the other base with its own
# key, no key, the wrong key, the wrong format and an unknown option)
B=backing.encrypt.key-secret=sec0
forms=("backing.driver=qcow2,backing.file.driver=file,backing.file.filename=eb0.qcow2,$B"
       "$B" "encrypt.format=luks,backing.encrypt.format=luks,$B"
       "backing.file.filename=eb1.qcow2,backing.encrypt.key-secret=sec1"
       "backing.driver=qcow2,$B" "backing.driver=qcow2,backing.file.filename=eb0.qcow2,$B"
       "" "backing.file.filename=eb0.qcow2,$B" "backing.file.filename=pb.qcow2"
       "backing.encrypt.key-secret=sec1" "backing.driver=raw,backing.file.filename=o.raw"
       "backing.encrypt.key-secret=sec9"
       "$B,backing.encrypt.format=aes" "backing.file.filename=missing.qcow2,$B"
       "backing.file.filename=eb0.qcow2,backing.file.bogus=1,$B" "$B,backing.bogus=1")
for f in "${forms[@]}"; do
    sampled || continue         # check: a third of the forms; check-slow: the rest
    o="$(kopen oq.qcow2 sec1)${f:+,$f}"
    oracle "map --output=json, ${f:-no backing key}" map --output=json "${sec[@]}" --image-opts "$o"
    nosecret "map, ${f:-no backing key}"
    oracle "compare with itself, ${f:-no backing key}" compare "${sec[@]}" --image-opts "$o" "$o"
    oracle "compare with the guest, ${f:-no backing key}" compare "${sec[@]}" --image-opts "$o" "driver=raw,file.filename=o.raw"
done
o="$(kopen oq.qcow2 sec1),$B"
oracle "map (human), two keys" map "${sec[@]}" --image-opts "$o"
oracle "compare -s with the key-0 base" compare -s "${sec[@]}" --image-opts "$o" "$(kopen eb0.qcow2)"
oracle "check, two keys" check "${sec[@]}" --image-opts "$o"
oracle "info --backing-chain without keys" info --backing-chain oq.qcow2
oracle "info --backing-chain --output=json without keys" info --backing-chain --output=json oq.qcow2
oracle "info --backing-chain with the top's key" info --backing-chain "${sec[@]}" --image-opts "$(kopen oq.qcow2 sec1)"
# qemu-img info opens with BDRV_O_NO_BACKING: a backing.* option is refused
oracle "info with a backing.* option" info "${sec[@]}" --image-opts "$o"
err_line "info with a backing.* option"
oracle "info, an image without a backing file, a backing.* option" info "${sec[@]}" --image-opts "driver=qcow2,file.filename=pb.qcow2,$B"
oracle "check, an image without a backing file, a backing.* option" check "${sec[@]}" --image-opts "driver=qcow2,file.filename=pb.qcow2,$B"
kimg checksum "${sec[@]}" --image-opts "$o"; cut -d' ' -f1 "$T/out" > sum.enc
kimg checksum -f raw o.raw
is "$(< sum.enc)" "$(cut -d' ' -f1 "$T/out")" "checksum of the two-key chain is its guest's"
# the overlay's header names the base; backing.file.filename overrides it
mkdir sub; cp eb0.qcow2 sub/moved.qcow2; mv eb0.qcow2 eb0.away
oracle "the base moved, backing.file.filename names it" compare "${sec[@]}" --image-opts \
    "$(kopen oq.qcow2 sec1),backing.file.filename=sub/moved.qcow2,$B" "driver=raw,file.filename=o.raw"
oracle "the base moved, without backing.file.filename" compare "${sec[@]}" --image-opts "$o" "driver=raw,file.filename=o.raw"
mv eb0.away eb0.qcow2

# ---- rebase ----------------------------------------------------------------
# rbcase NAME OPTS ARGS...: qemu-img and kimg on copies of ov.qcow2; with
# an absolute -b both take it; compare the guests and check kimg's image
rbcase() {
    local name=$1 o=$2; shift 2
    cp ov.qcow2 rq.qcow2; cp ov.qcow2 rk.qcow2
    qimg rebase "${sec[@]}" --image-opts "${o//@/rq.qcow2}" "$@"
    kimg rebase "${sec[@]}" --image-opts "${o//@/rk.qcow2}" "$@"
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || diag "kimg: $(< "$T/err") qemu-img: $(< "$T/qerr")"
    is_file "$T/out" "$T/qout" "$name: stdout as qemu-img's"
    nosecret "$name"
    if [ "$QRC" != 0 ]; then
        is "$(head -c 200 "$T/err" | sed 's/^kimg: //;s/rk.qcow2/rq.qcow2/g')" \
           "$(head -c 200 "$T/qerr" | sed 's/^qemu-img: //')" "$name: qemu-img's message"
        ok "$name: refused, the image unchanged" cmp -s rk.qcow2 ov.qcow2
        return 0
    fi
    # (a plain overlay over an encrypted base holds copied-up data in
    # plain, as qemu's: only encrypted overlays are searched)
    [ -n "${PLAIN_OV:-}" ] || noplain rk.qcow2 "$name"
}
# rbcase_s: a refusal nothing after reads, one of the sampled cases
rbcase_s() { sampled || return 0; rbcase "$@"; }
# an encrypted overlay (key 1) over a plain base
qemu-img create -q -f qcow2 "${sec[@]}" -o $E1 -b pb.qcow2 -F qcow2 ov.qcow2
# (the commit cases' key-1 overlays over bq.qcow2, 4M as pb.qcow2: this
# create's image, the backing name aside: one create and its benchmark
# for all of them)
twin ov.qcow2 c0.qcow2 pb.qcow2 bq.qcow2
qemu-io "${sec[@]}" --image-opts "$(kopen ov.qcow2 sec1)" -c 'write -P 0x41 1500000 1000000' > /dev/null
guest "$(kopen ov.qcow2 sec1)" ov.raw
rbcase "encrypted over plain: rebase onto another plain base" "$(kopen @ sec1)" -b "$PWD/pb2.qcow2" -F qcow2
guest "$(kopen rk.qcow2 sec1)" rk.raw
ok "rebase: kimg's guest is unchanged" cmp -s rk.raw ov.raw
ok "rebase: kimg's image is clean" qemu-img check -q "${sec[@]}" --image-opts "$(kopen rk.qcow2 sec1)"
ok "rebase: the guest as qemu-img's" qemu-img compare -q "${sec[@]}" --image-opts "$(kopen rq.qcow2 sec1)" "$(kopen rk.qcow2 sec1)"
rbcase "encrypted over plain: flatten (-b '')" "$(kopen @ sec1)" -b ""
guest "$(kopen rk.qcow2 sec1)" rk.raw
ok "flatten: kimg's guest is unchanged" cmp -s rk.raw ov.raw
# relative -b: qemu-img cannot resolve it under --image-opts; kimg does
cp ov.qcow2 rk.qcow2
kimg rebase "${sec[@]}" --image-opts "$(kopen rk.qcow2 sec1)" -b pb2.qcow2 -F qcow2
is "$RC" 0 "rebase onto a relative name under --image-opts: exit 0"
guest "$(kopen rk.qcow2 sec1)" rk.raw
ok "rebase onto a relative name: the guest is unchanged" cmp -s rk.raw ov.raw
is "$(qemu-img info --output=json rk.qcow2 | sed -n 's/.*"backing-filename": "\(.*\)",/\1/p')" pb2.qcow2 \
    "rebase onto a relative name: the name stored as given"
rbcase "encrypted over plain: -u" "$(kopen @ sec1)" -u -b pb2.qcow2 -F qcow2
ok "rebase -u: the header as qemu-img's, the guest as qemu-img's" qemu-img compare -q "${sec[@]}" \
    --image-opts "$(kopen rq.qcow2 sec1)" "$(kopen rk.qcow2 sec1)"
rbcase_s "-u with a backing.* option (refused, as qemu-img)" "$(kopen @ sec1),$B" -u -b pb2.qcow2 -F qcow2
rbcase_s "-u without the key" "driver=qcow2,file.filename=@" -u -b pb2.qcow2 -F qcow2
# onto an encrypted base: qemu-img opens the new base without a key
rbcase_s "onto an encrypted base (no key for it)" "$(kopen @ sec1)" -b "$PWD/eb0.qcow2" -F qcow2
# a plain overlay over an encrypted base (its key: backing.encrypt.key-secret)
qemu-img create -q -f qcow2 -b eb0.qcow2 -F qcow2 ov.qcow2
qemu-io "${sec[@]}" --image-opts "driver=qcow2,file.filename=ov.qcow2,$B" -c 'write -P 0x42 2M 100000' > /dev/null
guest "driver=qcow2,file.filename=ov.qcow2,$B" ov.raw
PLAIN_OV=1 rbcase "plain over encrypted: rebase onto a plain base" "driver=qcow2,file.filename=@,$B" -b "$PWD/pb2.qcow2" -F qcow2
guest "driver=qcow2,file.filename=rk.qcow2" rk.raw
ok "plain over encrypted, rebased: the guest is unchanged" cmp -s rk.raw ov.raw
PLAIN_OV=1 rbcase_s "plain over encrypted: no key for the base" "driver=qcow2,file.filename=@" -b "$PWD/pb2.qcow2" -F qcow2
PLAIN_OV=1 rbcase "plain over encrypted: -u" "driver=qcow2,file.filename=@" -u -b pb2.qcow2 -F qcow2
ok "plain over encrypted -u: the header names the new base" qemu-img compare -q rk.qcow2 rq.qcow2

# ---- commit -----------------------------------------------------------------
# ccase NAME: commit of c$t.qcow2 (made by setup_$NAME for t in q k)
commit_both() {
    local name=$1 oq=$2 ok_=$3; shift 3
    qimg commit "${sec[@]}" --image-opts "$oq" "$@"
    kimg commit "${sec[@]}" --image-opts "$ok_" "${@//q.qcow2/k.qcow2}"
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || diag "kimg: $(< "$T/err") qemu-img: $(< "$T/qerr")"
    is_file "$T/out" "$T/qout" "$name: stdout as qemu-img's"
    nosecret "$name"
}
# an encrypted overlay (key 1) into an encrypted base (key 0); the k
# twins are copies of the q ones, backing name aside (twin)
cp eb0.qcow2 bq.qcow2; cp eb0.qcow2 bk.qcow2; cp c0.qcow2 cq.qcow2
qemu-io "${sec[@]}" --image-opts "$(kopen cq.qcow2 sec1),$B" -c 'write -P 0x41 1500000 1000000' \
    -c 'write -z 100000 5000' -c 'write -P 0x42 3500000 10000' -c 'write -P 0x43 1000 1000' > /dev/null
mark "$(kopen cq.qcow2 sec1),$B" 3000000 7000
twin cq.qcow2 ck.qcow2 bq.qcow2 bk.qcow2
guest "$(kopen cq.qcow2 sec1),$B" want.raw
commit_both "commit key 1 into key 0" "$(kopen cq.qcow2 sec1),$B" "$(kopen ck.qcow2 sec1),$B"
ok "commit key 1 into key 0: the base holds the guest" qemu-img compare -q "${sec[@]}" --image-opts "$(kopen bk.qcow2)" "driver=raw,file.filename=want.raw"
ok "commit key 1 into key 0: the base as qemu-img's" qemu-img compare -q "${sec[@]}" --image-opts "$(kopen bq.qcow2)" "$(kopen bk.qcow2)"
ok "commit key 1 into key 0: the base is clean" qemu-img check -q "${sec[@]}" --image-opts "$(kopen bk.qcow2)"
ok "commit key 1 into key 0: the overlay is clean" qemu-img check -q "${sec[@]}" --image-opts "$(kopen ck.qcow2 sec1),$B"
noplain bk.qcow2 "commit key 1 into key 0"; noplain ck.qcow2 "commit key 1 into key 0"
commit_both "commit without the base's key" "$(kopen cq.qcow2 sec1)" "$(kopen ck.qcow2 sec1)"
commit_both "commit with the wrong key for the base" "$(kopen cq.qcow2 sec1),backing.encrypt.key-secret=sec1" \
    "$(kopen ck.qcow2 sec1),backing.encrypt.key-secret=sec1"
# an encrypted overlay into a plain base (-d: the overlay is not emptied)
cp pb.qcow2 bq.qcow2; cp pb.qcow2 bk.qcow2; cp c0.qcow2 cq.qcow2
qemu-io "${sec[@]}" --image-opts "$(kopen cq.qcow2 sec1)" -c 'write -P 0x41 1500000 1000000' -c 'write -z 100000 5000' > /dev/null
twin cq.qcow2 ck.qcow2 bq.qcow2 bk.qcow2
guest "$(kopen cq.qcow2 sec1)" want.raw
commit_both "commit -d of an encrypted overlay into a plain base" "$(kopen cq.qcow2 sec1)" "$(kopen ck.qcow2 sec1)" -d
ok "commit into a plain base: the base as qemu-img's" cmp -s bq.qcow2 bk.qcow2
guest "driver=qcow2,file.filename=bk.qcow2" bk.raw
ok "commit into a plain base: the base holds the guest" cmp -s bk.raw want.raw
# through an intermediate: plain top, encrypted middle (key 1), encrypted
# base (key 0), committed into the base with -b (absolute: qemu-img matches
# the chain's names)
cp eb0.qcow2 bq.qcow2; cp eb0.qcow2 bk.qcow2; cp c0.qcow2 mq.qcow2
qemu-img create -q -f qcow2 -b mq.qcow2 -F qcow2 cq.qcow2
qemu-io "${sec[@]}" --image-opts "$(kopen mq.qcow2 sec1),$B" -c 'write -P 0x51 0 100000' > /dev/null
qemu-io "${sec[@]}" --image-opts "driver=qcow2,file.filename=cq.qcow2,backing.encrypt.key-secret=sec1,backing.$B" \
    -c 'write -P 0x52 1500000 1000000' > /dev/null
twin mq.qcow2 mk.qcow2 bq.qcow2 bk.qcow2; twin cq.qcow2 ck.qcow2 mq.qcow2 mk.qcow2
C3="backing.encrypt.key-secret=sec1,backing.$B"
guest "driver=qcow2,file.filename=cq.qcow2,$C3" want.raw
kimg commit "${sec[@]}" --image-opts "driver=qcow2,file.filename=ck.qcow2,$C3" -b "$PWD/bk.qcow2"
is "$RC" 0 "commit -b through an encrypted intermediate: exit 0"
ok "commit -b: the base holds the guest" qemu-img compare -q "${sec[@]}" --image-opts "$(kopen bk.qcow2)" "driver=raw,file.filename=want.raw"
ok "commit -b: the base is clean" qemu-img check -q "${sec[@]}" --image-opts "$(kopen bk.qcow2)"
noplain bk.qcow2 "commit -b"; noplain mk.qcow2 "commit -b"
ok "commit -b: the top still reads the guest" qemu-img compare -q "${sec[@]}" --image-opts \
    "driver=qcow2,file.filename=ck.qcow2,$C3" "driver=raw,file.filename=want.raw"

# ---- convert -B ------------------------------------------------------------
head -c 4M /dev/urandom > b.raw
qemu-img convert -q -f raw -O qcow2 b.raw pbase.qcow2
cp b.raw s.raw; yes "$MARK" | head -c 1M | dd of=s.raw bs=64k seek=20 conv=notrunc 2> /dev/null
for t in q k; do rm -f $t.qcow2; done
qimg convert "${sec[@]}" -f raw -O qcow2 -o $E1 -B pbase.qcow2 -F qcow2 s.raw q.qcow2
kimg convert "${sec[@]}" -f raw -O qcow2 -o $E1 -B pbase.qcow2 -F qcow2 s.raw k.qcow2
is "$RC" "$QRC" "convert -B plain, encrypted target: exit code as qemu-img's"
nosecret "convert -B plain, encrypted target"
ok "convert -B plain: the guest" qemu-img compare -q "${sec[@]}" --image-opts "$(kopen k.qcow2 sec1)" "driver=raw,file.filename=s.raw"
qemu-img map --output=json "${sec[@]}" --image-opts "$(kopen q.qcow2 sec1)" > qm.json
qemu-img map --output=json "${sec[@]}" --image-opts "$(kopen k.qcow2 sec1)" > km.json
is_file km.json qm.json "convert -B plain: the allocation as qemu-img's"
noplain k.qcow2 "convert -B plain, encrypted target"
# (the encrypted base: eb0, 4M as s.raw)
for o in "" "-o $E1"; do
    rm -f q.qcow2 k.qcow2
    qimg convert "${sec[@]}" -f raw -O qcow2 $o -B eb0.qcow2 -F qcow2 s.raw q.qcow2
    kimg convert "${sec[@]}" -f raw -O qcow2 $o -B eb0.qcow2 -F qcow2 s.raw k.qcow2
    is "$RC" "$QRC" "convert $o -B encrypted (no key for it): exit code as qemu-img's"
    err_line "convert $o -B encrypted"
    is "$(sed 's/^kimg: //;s/k.qcow2/q.qcow2/' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" \
        "convert $o -B encrypted: qemu-img's message"
    ok "convert $o -B encrypted: no output left" test ! -e k.qcow2
done
done_testing
