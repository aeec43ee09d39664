#!/bin/bash
# resize and snapshot on encrypted images (issue 14), qemu-img 7.2 and
# qemu-io as the oracle: encrypted qcow2 grown (aligned and unaligned old
# sizes) and shrunk, with and without --shrink and the key, grown with
# --preallocation=metadata|falloc|full; snapshot -c/-a/-d/-l with the data
# read back after each apply; the standalone luks format resized.  Every
# kimg-written file is searched for the guest's plaintext pattern, every
# output for the passphrases.
# Deliberate difference: qemu 7.2 preallocates an encrypted qcow2's new
# clusters as holes or plain zeros, which decrypt to noise (qemu-io
# "read -P 0" fails on its result); kimg writes the encryption of zeros, so
# the grown area reads as zeros.  luks --preallocation=full likewise.
# make check: a third of the resize matrices' cases (lib.sh sampled; the
# luks --preallocation=full ones, read after, in each part); check-slow the
# rest.  The snapshot sequence runs whole in each part.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/luks.sh"
qcheck() { qemu-img check -q "${sec[@]}" --image-opts "$(kopen "$1")" > /dev/null 2>&1; }

# two encrypted images made by qemu-img: 4 MiB, and 3000000 bytes (the
# old end inside a cluster), full of the marker
# (b3: b4 as created, its size field made 3000320, what qemu-img create
# makes of 3000000 (rounded up to sectors; one L1 entry as for 4M):
# without a second create and its benchmark)
qemu-img create -q -f qcow2 "${sec[@]}" -o $E0 b4.qcow2 4M
cp b4.qcow2 b3.qcow2; put_be 8 b3.qcow2 24 3000320
mark "$(kopen b4.qcow2)" 0 4194304
mark "$(kopen b3.qcow2)" 0 3000000
# (mark made the marker files: the guests' plain text)
cp m.4194304 b4.raw; cp m.3000000 b3.raw
declare -A rawsize=([b4]=4194304 [b3]=3000000)

# rcase NAME BASE ARGS...: resize twins; exit code and stdout as qemu-img's,
# the same guest (qemu-img compare), kimg's image clean, no plaintext
rcase() {
    local name=$1 base=$2; shift 2
    cp $base.qcow2 q.qcow2; cp $base.qcow2 k.qcow2
    qimg resize "${sec[@]}" --image-opts "$(kopen q.qcow2)" "$@"
    kimg resize "${sec[@]}" --image-opts "$(kopen k.qcow2)" "$@"
    is "$RC" "$QRC" "$name: exit code as qemu-img's"
    is_file "$T/out" "$T/qout" "$name: stdout as qemu-img's"
    nosecret "$name"
    [ "$QRC" = 0 ] || return 0
    # (not after a preallocating grow: qemu's new area reads as noise)
    [ -n "${NOCMP:-}" ] || ok "$name: the guest as qemu-img's" qemu-img compare -q "${sec[@]}" --image-opts "$(kopen q.qcow2)" "$(kopen k.qcow2)"
    ok "$name: qemu-img check clean" qcheck k.qcow2
    noplain k.qcow2 "$name"
}
# (rcase_s: one of the sampled cases)
rcase_s() { sampled || return 0; rcase "$@"; }
for b in b4 b3; do
    rcase_s "$b grow 8M" $b 8M
    rcase_s "$b grow +1536" $b +1536
    rcase_s "$b grow 1G" $b 1G
    rcase_s "$b shrink --shrink 1M" $b --shrink 1M
    rcase_s "$b shrink --shrink 2000896" $b --shrink 2000896
    rcase_s "$b shrink without --shrink" $b 1M
    rcase_s "$b shrink with preallocation" $b --shrink --preallocation=full 1M
done
# grown then read: the old data and zeros after it (unaligned old end)
cp b3.qcow2 g.qcow2
kimg resize "${sec[@]}" --image-opts "$(kopen g.qcow2)" 8M
cmp_guest() { qemu-img convert "${sec[@]}" --image-opts "$(kopen "$1")" -O raw "$1.raw" && cmp -s "$1.raw" "$2"; }
# prefix OPTS FILE: the guest's first bytes are FILE's (convert makes
# p.raw anew; one stat for both sizes)
prefix() {
    local s
    qemu-img convert "${sec[@]}" --image-opts "$1" -O raw p.raw && s=($(stat -c %s p.raw "$2")) &&
    cmp -s -n "$(( s[0] < s[1] ? s[0] : s[1] ))" p.raw "$2"
}
cp b3.raw want.raw; truncate -s 8M want.raw
ok "grow of an unaligned image: the old data, then zeros" cmp_guest g.qcow2 want.raw

# without the key: qemu-img's refusal, the file unchanged
cp b4.qcow2 nk.qcow2
oracle "resize without the key" resize nk.qcow2 8M
err_line "resize without the key"
ok "resize without the key: the file is unchanged" cmp -s nk.qcow2 b4.qcow2
oracle "resize with the wrong key" resize --object secret,id=sec0,file=key2 --image-opts "$(kopen nk.qcow2)" 8M
ok "resize with the wrong key: the file is unchanged" cmp -s nk.qcow2 b4.qcow2

# --preallocation on grow: qemu-img's exit code, stdout, map and size;
# the new area reads as zeros (qemu's reads noise, see the top)
for p in metadata falloc full; do
    for b in b4 b3; do
        sampled || continue         # check: a third of the cases; check-slow: the rest
        name="$b grow --preallocation=$p"
        NOCMP=1 rcase "$name" $b --preallocation=$p 8M
        sz=$(qemu-img info --output=json "${sec[@]}" --image-opts "$(kopen k.qcow2)" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
        ok "$name: the new area reads as zeros" qread "$(kopen k.qcow2)" 0 ${rawsize[$b]} $((8388608 - ${rawsize[$b]}))
        ok "$name: the old data reads back" prefix "$(kopen k.qcow2)" $b.raw
        qemu-img map --output=json "${sec[@]}" --image-opts "$(kopen q.qcow2)" > qm.json
        qemu-img map --output=json "${sec[@]}" --image-opts "$(kopen k.qcow2)" > km.json
        is_file km.json qm.json "$name: map as qemu-img's image"
        is "$sz" 8388608 "$name: virtual size"
        if [ $p != metadata ]; then
            ok "$name: the host space is reserved" test $(($(stat -c %b k.qcow2) * 512)) -ge $((8388608 - 4194304))
        fi
    done
done

# an overlay of 3000000 bytes over a larger backing file, grown with
# preallocation: below the old end the guest still reads the backing file
# (qemu copies the partial last cluster up; kimg allocated it and hid the
# backing data there), zeros after it; plain and encrypted overlays
qemu-img create -q -f qcow2 big.qcow2 8M
qemu-io -c 'write -P 0x77 0 8M' big.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b big.qcow2 -F qcow2 ovp.qcow2 3000000
qemu-img create -q -f qcow2 "${sec[@]}" -o $E0 -b big.qcow2 -F qcow2 ove.qcow2 3000000
qemu-io "${sec[@]}" --image-opts "$(kopen ove.qcow2)" -c 'write -P 0x11 0 1M' > /dev/null
for p in metadata falloc full; do
    for ov in ovp ove; do
        sampled || continue         # check: a third of the cases; check-slow: the rest
        name="$ov over a larger backing file, grown with --preallocation=$p"
        o="driver=qcow2,file.filename=@"; [ $ov = ove ] && o=$(kopen @)
        cp $ov.qcow2 q.qcow2; cp $ov.qcow2 k.qcow2
        qimg resize "${sec[@]}" --image-opts "${o//@/q.qcow2}" --preallocation=$p 8M
        kimg resize "${sec[@]}" --image-opts "${o//@/k.qcow2}" --preallocation=$p 8M
        is "$RC" "$QRC" "$name: exit code as qemu-img's"
        # below the old end (3000320: 512-byte units) as qemu-img's, then
        # zeros (qemu's encrypted falloc/full area reads noise, see the top)
        # (convert makes q.raw and k.raw anew)
        qemu-img convert "${sec[@]}" --image-opts "${o//@/q.qcow2}" -O raw q.raw
        qemu-img convert "${sec[@]}" --image-opts "${o//@/k.qcow2}" -O raw k.raw
        ok "$name: below the old end, the guest as qemu-img's" cmp -s -n 3000320 q.raw k.raw
        ok "$name: zeros after it" cmp -s -n 5388288 -i 3000320:0 k.raw /dev/zero
        ok "$name: clean" qemu-img check -q "${sec[@]}" --image-opts "${o//@/k.qcow2}"
        # the host layout (offsets, and "zero", which host holes decide) aside
        qemu-img map --output=json "${sec[@]}" --image-opts "${o//@/q.qcow2}" > qm.json
        qemu-img map --output=json "${sec[@]}" --image-opts "${o//@/k.qcow2}" > km.json
        json_norm_files offset,zero qm.json km.json
        is_file km.json.norm qm.json.norm "$name: map as qemu-img's (host layout aside)"
    done
done

# ---- snapshot -c/-a/-d/-l, the data read back after each apply ---------
for t in q k; do cp b4.qcow2 s$t.qcow2; done
snap() { local t=$1; shift; if [ $t = q ]; then qimg snapshot "${sec[@]}" --image-opts "$(kopen sq.qcow2)" "$@"
         else kimg snapshot "${sec[@]}" --image-opts "$(kopen sk.qcow2)" "$@"; fi; }
scase() {
    local name=$1; shift
    snap q "$@"; snap k "$@"
    is "$RC" "$QRC" "snapshot $name: exit code as qemu-img's"
    is_file "$T/out" "$T/qout" "snapshot $name: stdout as qemu-img's"
    nosecret "snapshot $name"
    ok "snapshot $name: kimg's image clean" qcheck sk.qcow2
    ok "snapshot $name: the guest as qemu-img's" qemu-img compare -q "${sec[@]}" --image-opts "$(kopen sq.qcow2)" "$(kopen sk.qcow2)"
}
lsnap() { sed 's/  *[0-9-]* [0-9:]* *[0-9:.]*  *[0-9]*$//' "$1"; }
scase "-c s1" -c s1
for t in q k; do qemu-io "${sec[@]}" --image-opts "$(kopen s$t.qcow2)" -c 'write -P 0x33 100000 300000' -c 'write -z 1M 64k' > /dev/null; done
scase "-c s2" -c s2
for t in q k; do qemu-io "${sec[@]}" --image-opts "$(kopen s$t.qcow2)" -c 'write -P 0x44 2M 70000' > /dev/null; done
snap q -l; cp "$T/qout" ql; snap k -l; cp "$T/out" kl
is "$(lsnap kl)" "$(lsnap ql)" "snapshot -l: the list as qemu-img's (times aside)"
scase "-a s1" -a s1
ok "snapshot -a s1: the data of s1" cmp_guest sk.qcow2 b4.raw
scase "-d s1" -d s1
scase "-a s2" -a s2
ok "snapshot -a s2: s2's data" qread "$(kopen sk.qcow2)" 0x33 100000 300000
ok "snapshot -a s2: s2's zeros" qread "$(kopen sk.qcow2)" 0 1M 64k
scase "-d s2" -d s2
scase "-d missing" -d s9
noplain sk.qcow2 "snapshots"
# without the key: qemu-img's refusal for every action
for a in "-l" "-c x" "-a s1" "-d s1"; do
    cp sk.qcow2 n.qcow2
    oracle "snapshot $a without the key" snapshot $a n.qcow2
    ok "snapshot $a without the key: unchanged" cmp -s n.qcow2 sk.qcow2
done

# ---- the standalone luks format: resize ---------------------------------
qemu-img create -q -f luks "${sec[@]}" -o key-secret=sec0,iter-time=10 l.luks 4M
mark "$(lopen l.luks)" 0 4194304
# vsize_line FILE: its virtual-size lines (grep's, read by bash)
vsize_line() { local l; while IFS= read -r l; do [[ $l == *virtual-size* ]] && echo "$l"; done < "$1"; return 0; }
lcase() {
    local name=$1; shift
    cp l.luks lq.luks; cp l.luks lk.luks
    qimg resize "${sec[@]}" --image-opts "$(lopen lq.luks)" "$@"
    kimg resize "${sec[@]}" --image-opts "$(lopen lk.luks)" "$@"
    is "$RC" "$QRC" "luks $name: exit code as qemu-img's"
    is_file "$T/out" "$T/qout" "luks $name: stdout as qemu-img's"
    nosecret "luks $name"
    [ "$QRC" = 0 ] || return 0
    local sz; sz=($(stat -c %s lk.luks lq.luks))
    is "${sz[0]}" "${sz[1]}" "luks $name: the file size as qemu-img's"
    qimg info --output=json "${sec[@]}" --image-opts "$(lopen lq.luks)"
    kimg info --output=json "${sec[@]}" --image-opts "$(lopen lk.luks)"
    is "$(vsize_line "$T/out")" "$(vsize_line "$T/qout")" "luks $name: virtual size as qemu-img's"
    ok "luks $name: the old data reads back" prefix "$(lopen lk.luks)" b4.raw
    noplain lk.luks "luks $name"
}
lcase_s() { sampled || return 0; lcase "$@"; }
lcase_s "grow 6M" 6M
lcase_s "grow +1000" +1000
lcase_s "shrink --shrink 2M" --shrink 2M
lcase_s "shrink without --shrink" 2M
lcase_s "grow --preallocation=falloc" --preallocation=falloc 6M
lcase_s "grow --preallocation=metadata" --preallocation=metadata 6M
lcase "grow --preallocation=full" --preallocation=full 6M
ok "luks --preallocation=full: the new area reads as zeros" qread "$(lopen lk.luks)" 0 4M 2M
lcase "grow --preallocation=full +1536" --preallocation=full +1536
ok "luks --preallocation=full +1536: the new sectors read as zeros" qread "$(lopen lk.luks)" 0 4M 1536
oracle "luks resize without the key" resize l.luks 8M
done_testing
