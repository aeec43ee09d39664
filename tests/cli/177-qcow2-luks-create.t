#!/bin/bash
# Encrypted qcow2 at create (issue 14): libvirt's exact command line (the
# "Formatting" line as qemu-img's, the image as qemu-img lays it out:
# compat=0.10 with the CRYPTO extension, the LUKS area after the L1 table),
# qemu-img reads and checks what kimg creates, info with and without the
# key, measure with the LUKS area, and the refusals in qemu-img's words
# (no key-secret, unknown secret, -c, legacy AES), with no file left.
# make check: a third of the cipher options (lib.sh sampled); check-slow
# the rest.  Most of the time is libvirt's line (default iter-time, each
# unlock ~2 s): in both parts.
. "$(dirname "$0")/lib.sh"
require qemu-io
printf 'kimg-luks-passphrase' > key
sec=(--object secret,id=sec0,file=key)
E=encrypt.format=luks,encrypt.key-secret=sec0
# kopen F: the open options that give qcow2 image F its key
kopen() { echo "driver=qcow2,encrypt.key-secret=sec0,file.filename=$1"; }

# libvirt 9's line, default iter-time; both tools' Formatting line alike
mkdir -p POOL QPOOL
args=(create -f qcow2 --object secret,id=VOL_encrypt0,file=key
      -o encrypt.format=luks,encrypt.key-secret=VOL_encrypt0,compat=0.10)
qimg "${args[@]}" POOL/vol.qcow2 16384K; mv POOL/vol.qcow2 QPOOL/vol.qcow2
sed -i 's|QPOOL/|POOL/|' "$T/qout"
kimg "${args[@]}" POOL/vol.qcow2 16384K
is "$RC" 0 "libvirt's create: exit 0"
is_file "$T/out" "$T/qout" "libvirt's create: the Formatting line as qemu-img's"
ok "libvirt's volume: qemu-img check with the key is clean" \
    check_clean --object secret,id=v,file=key --image-opts \
    "driver=qcow2,encrypt.key-secret=v,file.filename=POOL/vol.qcow2"
# the same layout as qemu-img's: version 2, crypt_method 2, the CRYPTO
# extension naming the same area, the same file length and refcounts
for f in POOL/vol.qcow2 QPOOL/vol.qcow2; do
    echo "$(get_be 4 "$f" 4) $(get_be 4 "$f" 32) $(get_be 4 "$f" 72) $(get_be 4 "$f" 76)" \
         "$(get_be 8 "$f" 80) $(get_be 8 "$f" 88) $(stat -c %s "$f")"
done > layout
is "$(sed -n 1p layout)" "$(sed -n 2p layout)" "libvirt's volume laid out as qemu-img's (v2, CRYPTO extension, size)"
# (qemu-img's own volume checked by qemu-img, nothing asserted: a 2 s
# unlock at the default iter-time, check-slow only)
slow_part && qemu-img check --output=json QPOOL/vol.qcow2 --object secret,id=v,file=key 2>/dev/null > /dev/null
# info without the key: everything but the random parts as qemu-img's
for f in POOL/vol.qcow2 QPOOL/vol.qcow2; do
    qemu-img info --output=json "$f" | grep -v -e '"uuid"' -e '"iters"' -e 'master-key-iters' \
        -e actual-size -e '"filename"' > "$(basename "$(dirname "$f")").json"
done
is_file POOL.json QPOOL.json "info of kimg's volume as of qemu-img's (uuid, iterations, sizes aside)"
oracle "info --output=json without a key" info --output=json POOL/vol.qcow2
oracle "info without a key" info POOL/vol.qcow2

# a v3 image with a short iteration time: qemu-io reads what kimg wrote
kimg create -q -f qcow2 "${sec[@]}" -o $E,encrypt.iter-time=10 v3.qcow2 4M
is "$RC" 0 "create v3 with encrypt.iter-time=10"
ok "v3: qemu-img check with the key is clean" check_clean "${sec[@]}" --image-opts "$(kopen v3.qcow2)"
qemu-io "${sec[@]}" --image-opts "$(kopen v3.qcow2)" -c 'read -P 0 0 4M' > qio 2>&1
like "$(< qio)" "read 4194304/4194304" "v3: qemu-io reads zeros through the key"
for opt in encrypt.cipher-alg=aes-128 encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256 \
           encrypt.hash-alg=sha512 encrypt.hash-alg=sha1; do
    sampled || continue         # check: a third of the options; check-slow: the rest
    rm -f o.qcow2
    kimg create -f qcow2 "${sec[@]}" -o $E,encrypt.iter-time=10,$opt o.qcow2 1M
    qimg create -f qcow2 "${sec[@]}" -o $E,encrypt.iter-time=10,$opt qo.qcow2 1M
    is "$RC" "$QRC" "create -o $opt: exit code as qemu-img's"
    is "$(sed 's/qo.qcow2/o.qcow2/' "$T/qout")" "$(< "$T/out")" "create -o $opt: Formatting line as qemu-img's"
    [ "$RC" = 0 ] && ok "create -o $opt: qemu-img check with the key is clean" \
        check_clean "${sec[@]}" --image-opts "$(kopen o.qcow2)"
done

# measure with the LUKS area (the secret is looked up, as qemu-img does)
oracle "measure --size with luks" measure -O qcow2 --size 1G "${sec[@]}" -o $E
oracle "measure --size with luks, json" measure --output=json -O qcow2 --size 7G "${sec[@]}" \
    -o $E,cluster_size=4k,encrypt.cipher-alg=aes-128
qemu-img create -q -f raw src.raw 3M
qemu-io -f raw -c 'write -P 0x61 64k 1M' src.raw > /dev/null
oracle "measure of a source with luks" measure -O qcow2 "${sec[@]}" -o $E src.raw

# refusals in qemu-img's words; no file left
for o in "encrypt.format=luks" "encrypt.format=luks,encrypt.key-secret=nope"; do
    qimg create -f qcow2 -o "$o" r.qcow2 1M; rm -f r.qcow2
    kimg create -f qcow2 -o "$o" r.qcow2 1M
    is "$RC" "$QRC" "create -o $o: exit code as qemu-img's"
    err_line "create -o $o"
    is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" "create -o $o: qemu-img's message"
    ok "create -o $o: no file left" test ! -e r.qcow2
    oracle "measure -o $o" measure -O qcow2 --size 1G -o "$o"
done
kimg create -f qcow2 "${sec[@]}" -o encrypt.format=aes,encrypt.key-secret=sec0 r.qcow2 1M
err_line "create -o encrypt.format=aes (legacy AES: not made)"
like "$(< "$T/err")" "AES-CBC encrypted qcow2 images is no longer supported" "legacy AES: says why"
ok "legacy AES: no file left" test ! -e r.qcow2
# -c into an encrypted target: refused (qemu-img refuses it at create;
# into an existing one, -n, qemu-img 7.2 stores the compressed clusters
# unencrypted: kimg refuses that too, nothing plain reaches the disk)
kimg create -q -f qcow2 "${sec[@]}" -o $E,encrypt.iter-time=10 n.qcow2 3M
before=$(sha n.qcow2)
kimg convert -c -n "${sec[@]}" --target-image-opts src.raw "$(kopen n.qcow2)"
err_line "convert -c -n into an encrypted target"
like "$(< "$T/err")" "Compression and encryption not supported at the same time" "convert -c -n: qemu-img's message for -c with encryption"
is "$(sha n.qcow2)" "$before" "convert -c -n: the target unchanged"
done_testing
