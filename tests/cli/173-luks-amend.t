#!/bin/bash
# amend on luks key slots, as qemu-img: add a slot with a new secret
# (first free, or keyslot=N), remove slots by old secret or number; qemu-io
# and cryptsetup then open the volume with exactly the active secrets;
# refusals (active slot, last slot, no match, bad state) in one line with
# the volume unchanged.
# make check: a third of the word-for-word refusals (lib.sh sampled: the
# four whose kind the file's own refusal checks above do not meet);
# check-slow the rest.
. "$(dirname "$0")/lib.sh"

printf 'first-key' > k1; printf 'second-key' > k2; printf 'third-key' > k3
objs=(--object secret,id=s1,file=k1 --object secret,id=s2,file=k2 --object secret,id=s3,file=k3)
qemu-img create -q --object secret,id=s1,file=k1 -f luks -o key-secret=s1,iter-time=10 v.luks 1M
cp v.luks one.luks      # a one-slot volume for the refusals at the end
qemu-io --object secret,id=s1,file=k1 --image-opts driver=luks,key-secret=s1,file.filename=v.luks \
    -c 'write -P 0x42 0 64k' > /dev/null
opens() {   # opens KEYFILE: qemu-io reads the pattern with it
    qemu-io --object secret,id=x,file=$1 --image-opts driver=luks,key-secret=x,file.filename=v.luks \
        -c 'read -P 0x42 0 64k' > /dev/null 2>&1
}
am() { kimg amend "${objs[@]}" --image-opts driver=luks,key-secret=$1,file.filename=v.luks -o "$2"; }

am s1 state=active,new-secret=s2,iter-time=10
is "$RC" 0 "add a slot with a second secret" || diag "$(< "$T/err")"
ok "qemu opens with the first secret" opens k1
ok "qemu opens with the second secret" opens k2
ok "cryptsetup accepts the second secret" cryptsetup open --test-passphrase --key-file k2 v.luks
am s2 state=active,new-secret=s3,keyslot=5,iter-time=10
is "$RC" 0 "add keyslot=5" || diag "$(< "$T/err")"
qimg info --output=json v.luks
is "$($PY -c 'import json,sys; print([s["active"] for s in json.load(open(sys.argv[1]))["format-specific"]["data"]["slots"]])' "$T/qout")" \
   "[True, True, False, False, False, True, False, False]" "slots 0, 1 and 5 active"

before=$(sha v.luks)
am s1 state=active,new-secret=s3,keyslot=0
err_line "an active slot is not overwritten"
like "$(< "$T/err")" "Refusing to overwrite active keyslot 0" "qemu's message"
am s1 state=bogus
err_line "a bad state"
am s1 state=inactive,old-secret=s3,keyslot=1
err_line "keyslot and old-secret together"
is "$(sha v.luks)" "$before" "refusals leave the volume unchanged"

am s2 state=inactive,old-secret=s1
is "$RC" 0 "remove the first secret's slot" || diag "$(< "$T/err")"
ok "qemu no longer opens with the first secret" eval "! opens k1"
ok "cryptsetup refuses the first secret" eval "! cryptsetup open --test-passphrase --key-file k1 v.luks 2> /dev/null"
ok "qemu still opens with the second secret" opens k2
am s2 state=inactive,keyslot=5
is "$RC" 0 "remove keyslot=5" || diag "$(< "$T/err")"
ok "qemu no longer opens with the third secret" eval "! opens k3"
am s2 state=inactive,keyslot=1
err_line "the last active slot stays"
am s2 state=inactive,old-secret=s2
err_line "erasing every slot is refused"
ok "the volume still opens with the remaining secret" opens k2

# refusals word for word as qemu-img's, on a one-slot volume (ordered so
# that check's third takes an inactive slot, no old-secret or keyslot, no
# new-secret, and an old-secret no slot matches)
for o in state=inactive,keyslot=3 state=active,new-secret=s2,keyslot=0 state=inactive,keyslot=0 \
         state=inactive state=inactive,old-secret=s1 state=bogus \
         state=active state=inactive,old-secret=s1,keyslot=1 state=inactive,new-secret=s1 \
         state=inactive,old-secret=s2; do
    sampled || continue         # check: a third of the cases; check-slow: the rest
    qimg amend "${objs[@]}" --image-opts driver=luks,key-secret=s1,file.filename=one.luks -o $o
    kimg amend "${objs[@]}" --image-opts driver=luks,key-secret=s1,file.filename=one.luks -o $o
    is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" "amend -o $o: qemu-img's message"
    is "$RC" "$QRC" "amend -o $o: qemu-img's exit code"
done
done_testing
