#!/bin/bash
# Encrypted qcow2 (legacy AES and LUKS): qemu-img info describes them
# without a key ("encrypted": true, the "encrypt" block, LUKS key slots),
# and kimg info must print the same, JSON and human.  Reading the content
# needs a key kimg cannot take: map, compare and check fail as qemu-img's
# do without one (exit 1, 2, 1) with one "kimg: " line.
. "$(dirname "$0")/lib.sh"
sec=(--object secret,id=sec0,data=kimg-test)
qemu-img create -q "${sec[@]}" -f qcow2 -o encrypt.format=aes,encrypt.key-secret=sec0 aes.qcow2 1M
# LUKS: the key-slot PBKDF benchmark makes this the slow one (a few seconds).
qemu-img create -q "${sec[@]}" -f qcow2 \
    -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 luks.qcow2 1M
qemu-img create -q -f raw flat.raw 1M
for f in aes.qcow2 luks.qcow2; do
    oracle "info --output=json $f" info --output=json "$f"
    oracle "info $f" info "$f"
    oracle "map $f (no key)" map --output=json "$f"; err_line "map $f (no key)"
    oracle "compare $f (no key)" compare "$f" flat.raw; err_line "compare $f (no key)"
    oracle "check $f (no key)" check "$f"; err_line "check $f (no key)"
done
done_testing
