#!/bin/bash
# Legacy qcow2 AES encryption (crypt_method 1, what qemu-img 7.2 still
# makes with encrypt.format=aes): kimg reads it with the key for
# conversion out of it (AES-128-CBC, IV = the guest sector), as qemu-img
# reads it; without the key only metadata (info); a wrong key gives other
# bytes (AES has no key check, as in qemu).
. "$(dirname "$0")/lib.sh"
require qemu-io
printf 'aes-password' > key
sec=(--object secret,id=sec0,file=key)
kopen() { echo "driver=qcow2,encrypt.key-secret=sec0,file.filename=$1"; }
for o in "" ",compat=0.10" ",cluster_size=4k"; do
    rm -f a.qcow2
    qemu-img create -q -f qcow2 "${sec[@]}" -o encrypt.format=aes,encrypt.key-secret=sec0$o a.qcow2 5M
    qemu-io "${sec[@]}" --image-opts "$(kopen a.qcow2)" -c 'write -P 0x5a 1000 3000' \
        -c 'write -P 0x61 65536 1M' -c 'write -z 2M 64k' -c 'write -P 0x7e 4194303 7' > /dev/null
    qemu-img convert "${sec[@]}" --image-opts "$(kopen a.qcow2)" -O raw q.raw
    rm -f k.raw
    kimg convert "${sec[@]}" --image-opts "$(kopen a.qcow2)" -O raw k.raw
    is "$RC" 0 "aes$o -> raw: exit 0"
    ok "aes$o -> raw: the guest as qemu-img reads it" cmp -s k.raw q.raw
    ok "aes$o: no plaintext pattern in the file" sh -c '! grep -q "aaaaaaaaaaaaaaaa" a.qcow2'
    oracle "aes$o: compare with the key" compare "${sec[@]}" --image-opts "$(kopen a.qcow2)" \
        "driver=raw,file.filename=q.raw"
    oracle "aes$o: info without the key" info --output=json a.qcow2
    oracle "aes$o: map with the key" map --output=json "${sec[@]}" --image-opts "$(kopen a.qcow2)"
    kimg convert -O raw a.qcow2 n.raw
    err_line "aes$o without the key"
    like "$(< "$T/err")" "Parameter 'encrypt.key-secret' is required for cipher" "aes$o without the key: qemu's message"
done
done_testing
