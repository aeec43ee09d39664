#!/bin/bash
# Encrypted qcow2 (AES, LUKS) opened without a key: compare and convert
# refuse them at open with one line, qemu-img's "kimg: Could not open
# 'FILE': Parameter 'encrypt.key-secret' is required for cipher", exit
# codes as qemu-img's (compare 2, convert 1), no output file left, the
# image untouched.  An overlay on an encrypted base: info --backing-chain
# as qemu-img's, data commands refused the same way; create -b takes the
# base's size (qemu-img opens it without I/O too).  With the key: 177-179.
. "$(dirname "$0")/lib.sh"
sec=(--object secret,id=sec0,data=kimg-test)
qemu-img create -q "${sec[@]}" -f qcow2 -o encrypt.format=aes,encrypt.key-secret=sec0 aes.qcow2 1M
qemu-img create -q "${sec[@]}" -f qcow2 \
    -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 luks.qcow2 1M
qemu-img create -q -f raw flat.raw 1M
msg="Parameter 'encrypt.key-secret' is required for cipher\$"

for f in aes.qcow2 luks.qcow2; do
    before=$(sha "$f")
    for args in "compare $f flat.raw" "compare flat.raw $f" "compare -f qcow2 -F raw $f flat.raw"; do
        qimg $args; kimg $args
        is "$RC" "$QRC" "kimg $args: exit code $QRC as qemu-img's"
        err_line "kimg $args"
        like "$(< "$T/err")" "^kimg: Could not open '$f': $msg" "kimg $args: names the file, says why"
        is "$(wc -c < "$T/out")" 0 "kimg $args: nothing on stdout"
    done
    for fmt in raw qcow2; do
        args="convert -O $fmt $f out.$fmt"
        qimg $args; rm -f "out.$fmt"
        kimg $args
        is "$RC" "$QRC" "kimg $args: exit code $QRC as qemu-img's"
        err_line "kimg $args"
        like "$(< "$T/err")" "^kimg: Could not open '$f': $msg" "kimg $args: names the file, says why"
        leftovers=$(ls -A | grep -v -e '^aes.qcow2$' -e '^luks.qcow2$' -e '^flat.raw$' \
                                   -e '^out$' -e '^err$' -e '^qout$' -e '^qerr$' || true)
        is "$leftovers" "" "kimg $args: no output or temporary file left"
    done
    is "$(sha "$f")" "$before" "$f: unchanged by the refused commands"
done

# an overlay on the LUKS image
qemu-img create -q -f qcow2 -b luks.qcow2 -F qcow2 ov.qcow2
oracle "info --backing-chain over an encrypted base" info --backing-chain --output=json ov.qcow2
kimg compare ov.qcow2 flat.raw
is "$RC" 2 "compare of an overlay on an encrypted base: exit 2"
err_line "compare of an overlay on an encrypted base"
like "$(< "$T/err")" "$msg" "compare of an overlay on an encrypted base: says why"
kimg convert -O raw ov.qcow2 ov.raw
is "$RC" 1 "convert of an overlay on an encrypted base: exit 1"
err_line "convert of an overlay on an encrypted base"
ok "convert of an overlay on an encrypted base: no output file" test ! -e ov.raw
kimg create -q -f qcow2 -b luks.qcow2 -F qcow2 kov.qcow2
is "$RC" 0 "create -b on an encrypted base (size from its header, as qemu-img)"
qimg info --output=json kov.qcow2; cp "$T/qout" kov.json
qimg info --output=json ov.qcow2
json_norm_files actual-size,filename kov.json "$T/qout"
is_file kov.json.norm "$T/qout.norm" "its overlay is qemu-img's (actual size and name aside)"
done_testing
