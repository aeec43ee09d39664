#!/bin/bash
# A wrong or missing key on a luks volume: one "kimg: " line with qemu's
# words, exit 1 (compare: 2), no output file, the volume unchanged; the
# secret never echoed.  --untrusted caps PBKDF2 work (a slot asking for
# more iterations than kimg allows is refused before any key derivation).
. "$(dirname "$0")/lib.sh"

SECRET=right-S3CR3T-key
printf '%s' "$SECRET" > key
printf 'wrong-key' > bad
qemu-img create -q --object secret,id=s0,file=key -f luks -o key-secret=s0,iter-time=10 v.luks 1M
before=$(sha v.luks)
leak() { ok "$1: the secret is not echoed" eval "! grep -q '$SECRET' '$T/out' '$T/err'"; }

for cmd in "convert -O raw" "checksum" "map --output=json" "compare"; do
    extra=; case $cmd in convert*) extra=out.raw;; compare) extra=driver=raw,file.filename=key;; esac
    kimg $cmd --object secret,id=s0,file=bad --image-opts driver=luks,key-secret=s0,file.filename=v.luks $extra
    err_line "$cmd with a wrong key"
    like "$(< "$T/err")" "Invalid password, cannot unlock any keyslot" "$cmd: qemu's message"
    [ "$cmd" = compare ] && is "$RC" 2 "compare: exit 2" || is "$RC" 1 "$cmd: exit 1"
    leak "$cmd"
    kimg $cmd v.luks $extra
    err_line "$cmd without a key"
    like "$(< "$T/err")" "Parameter 'key-secret' is required for cipher" "$cmd: qemu's message"
done
ok "no output file" test ! -e out.raw
kimg convert -n -f raw key --object secret,id=s0,file=bad --target-image-opts driver=luks,key-secret=s0,file.filename=v.luks
err_line "convert -n into a volume with a wrong key"
is "$(sha v.luks)" "$before" "the volume is unchanged"
kimg info --object secret,id=s0,file=key --image-opts driver=luks,key-secret=nope,file.filename=v.luks
err_line "an unknown secret id"
like "$(< "$T/err")" "No secret with id 'nope'" "qemu's message"

# the PBKDF2 work cap: slot 0 claims 2^31-1 iterations
cp v.luks big.luks
put_be 4 big.luks 212 2147483647
kimg checksum --untrusted --object secret,id=s0,file=key --image-opts driver=luks,key-secret=s0,file.filename=big.luks
err_line "a slot beyond the PBKDF2 cap under --untrusted"
like "$(< "$T/err")" "more PBKDF2 iterations than kimg allows" "the cap is named"
KIMG_TIMEOUT=20 kimg checksum --object secret,id=s0,file=key --image-opts driver=luks,key-secret=s0,file.filename=big.luks
isnt "$RC" 124 "without --untrusted too: refused at once, no spin"
like "$(< "$T/err")" "more PBKDF2 iterations than kimg allows" "the default cap is named"
done_testing
