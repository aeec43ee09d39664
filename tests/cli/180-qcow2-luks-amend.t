#!/bin/bash
# amend on the key slots of an encrypted (LUKS) qcow2, as qemu-img 7.2:
# -o encrypt.state=active,encrypt.new-secret=ID[,encrypt.keyslot=N]
# [,encrypt.iter-time=MS] and encrypt.state=inactive,encrypt.old-secret=ID
# | encrypt.keyslot=N, the key given through --image-opts.  qemu-img and
# qemu-io are the oracle both ways: what kimg amends they open with the
# new key and refuse with a removed one (qemu-img check clean, the data
# unchanged), and what qemu-img amends kimg opens the same way.  Every
# refusal word for word as qemu-img's on the same image, the image
# unchanged; --force overwrites an active slot as qemu does; the last
# slot is never erased (a deliberate difference: qemu erases it under
# --force).  No output carries a secret.
# make check: a third of the word-for-word refusals (lib.sh sampled);
# check-slow the rest.
. "$(dirname "$0")/lib.sh"
# qemu-img: lib.sh sends every LUKS command through the shim
# (tests/cli/shim/qemu-img: fastclock.so and a retry of the PBKDF2
# benchmark's flake), a sh, mktemp, two cats and an rm a call.  Only
# create, amend, convert and measure run that benchmark; the others unlock
# with the iteration count the header holds: the real qemu-img at once.
qemu-img() {
    case $1 in
    create | amend | convert | measure) command qemu-img "$@" ;;
    *) "$KIMG_REAL_QEMU_IMG" "$@" ;;
    esac
}

printf 'zero-key-0000' > k0; printf 'one-key-1111' > k1; printf 'two-key-2222' > k2
objs=(--object secret,id=s0,file=k0 --object secret,id=s1,file=k1 --object secret,id=s2,file=k2)
log=$T/all-output
io() { echo "driver=qcow2,file.filename=$1,encrypt.key-secret=$2"; }
# am FILE KEYID OPTS [--force]: kimg amend, its output kept for the secret search
am() {
    local f=$1 k=$2 o=$3; shift 3
    kimg amend "${objs[@]}" --image-opts "$(io "$f" "$k")" -o "$o" "$@"
    cat "$T/out" "$T/err" >> "$log"
}
# opens FILE KEYFILE: qemu-io reads the pattern with that key
opens() {
    qemu-io --object secret,id=x,file=$2 --image-opts "$(io "$1" x)" \
        -c 'read -P 0x5a 0 64k' -c 'read -P 0xa5 1M 64k' > /dev/null 2>&1
}
# kopens FILE KEYFILE: kimg reads the same data with that key
kopens() {
    kimg convert --object secret,id=x,file=$2 --image-opts "$(io "$1" x)" -O raw "$1.raw"
    cat "$T/out" "$T/err" >> "$log"
    [ "$RC" = 0 ] && cmp -s "$1.raw" want.raw
}
qcheck() {
    qemu-img check --object secret,id=x,file=$2 --image-opts "$(io "$1" x)" > /dev/null 2>&1
}
slots() {   # the active flags of FILE's key slots, from qemu-img info
    qemu-img info --output=json "$1" | $PY -c 'import json,sys
print("".join("1" if s["active"] else "0" for s in json.load(sys.stdin)["format-specific"]["data"]["encrypt"]["slots"]))'
}
mk() {
    rm -f "$1"
    qemu-img create -q "${objs[@]}" -f qcow2 -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 "$1" 2M
    qemu-io "${objs[@]}" --image-opts "$(io "$1" s0)" -c 'write -P 0x5a 0 64k' -c 'write -P 0xa5 1M 64k' > /dev/null
}
mk a.qcow2
qemu-img convert "${objs[@]}" --image-opts "$(io a.qcow2 s0)" -O raw want.raw

# ---- kimg amends, qemu reads -------------------------------------------------
am a.qcow2 s0 encrypt.state=active,encrypt.new-secret=s1,encrypt.iter-time=10
is "$RC" 0 "add a slot with a second secret" || diag "$(< "$T/err")"
is "$(slots a.qcow2)" 11000000 "slots 0 and 1 active"
ok "qemu-io reads with the first key" opens a.qcow2 k0
ok "qemu-io reads with the second key" opens a.qcow2 k1
ok "qemu-img check is clean" qcheck a.qcow2 k1
am a.qcow2 s1 encrypt.state=active,encrypt.new-secret=s2,encrypt.keyslot=6,encrypt.iter-time=10
is "$RC" 0 "add encrypt.keyslot=6, opened with the second key" || diag "$(< "$T/err")"
is "$(slots a.qcow2)" 11000010 "slots 0, 1 and 6 active"
ok "qemu-io reads with the third key" opens a.qcow2 k2

before=$(sha a.qcow2)
am a.qcow2 s0 encrypt.state=active,encrypt.new-secret=s2,encrypt.keyslot=0
err_line "an active slot is not overwritten without --force"
like "$(< "$T/err")" "Refusing to overwrite active keyslot 0 - please erase it first" "qemu's message"
am a.qcow2 s0 encrypt.state=inactive,encrypt.keyslot=1,encrypt.iter-time=10
err_line "iter-time when erasing"
is "$(sha a.qcow2)" "$before" "refusals leave the image unchanged"

am a.qcow2 s2 encrypt.state=inactive,encrypt.old-secret=s0
is "$RC" 0 "remove the first key's slot by its secret" || diag "$(< "$T/err")"
is "$(slots a.qcow2)" 01000010 "slots 1 and 6 active"
ok "qemu-io refuses the removed key" eval "! opens a.qcow2 k0"
qemu-img check "${objs[@]}" --image-opts "$(io a.qcow2 s0)" > /dev/null 2> qerr
like "$(< qerr)" "Invalid password, cannot unlock any keyslot" "qemu-img: the removed key unlocks nothing"
ok "qemu-io still reads with the second key" opens a.qcow2 k1
am a.qcow2 s1 encrypt.state=inactive,encrypt.keyslot=6
is "$RC" 0 "remove encrypt.keyslot=6" || diag "$(< "$T/err")"
ok "qemu-io refuses the third key" eval "! opens a.qcow2 k2"
ok "qemu-img check is clean after the removals" qcheck a.qcow2 k1
ok "kimg reads the same data with the remaining key" kopens a.qcow2 k1
am a.qcow2 s1 encrypt.state=inactive,encrypt.keyslot=1
err_line "the last active slot stays"
am a.qcow2 s1 encrypt.state=inactive,encrypt.keyslot=1 --force
err_line "the last active slot stays even with --force"
ok "the image still opens with the remaining key" opens a.qcow2 k1

# ---- --force over an active slot: the passphrase changed in place ------------
mk f.qcow2
am f.qcow2 s0 encrypt.state=active,encrypt.new-secret=s1,encrypt.keyslot=0,encrypt.iter-time=10 --force
is "$RC" 0 "--force gives the only slot a new key" || diag "$(< "$T/err")"
is "$(slots f.qcow2)" 10000000 "still one slot, the temporary copy erased"
ok "qemu-io reads with the new key" opens f.qcow2 k1
ok "qemu-io refuses the old key" eval "! opens f.qcow2 k0"
ok "qemu-img check is clean" qcheck f.qcow2 k1
am f.qcow2 s1 encrypt.state=inactive,encrypt.keyslot=5 --force
is "$RC" 0 "--force erases an inactive slot again, as qemu" || diag "$(< "$T/err")"

# ---- qemu-img amends, kimg reads ---------------------------------------------
mk b.qcow2
qemu-img amend "${objs[@]}" --image-opts "$(io b.qcow2 s0)" \
    -o encrypt.state=active,encrypt.new-secret=s2,encrypt.keyslot=3,encrypt.iter-time=10
ok "kimg reads qemu-img's new slot" kopens b.qcow2 k2
ok "kimg reads with the first key" kopens b.qcow2 k0
qemu-img amend "${objs[@]}" --image-opts "$(io b.qcow2 s2)" -o encrypt.state=inactive,encrypt.old-secret=s0
ok "kimg refuses the key qemu-img removed" eval "! kopens b.qcow2 k0"
like "$(< "$T/err")" "Invalid password, cannot unlock any keyslot" "kimg: the removed key unlocks nothing"
kimg check "${objs[@]}" --image-opts "$(io b.qcow2 s2)"
is "$RC" 0 "kimg check is clean"
# and kimg amends again what qemu-img amended
am b.qcow2 s2 encrypt.state=active,encrypt.new-secret=s1,encrypt.iter-time=10
is "$RC" 0 "kimg adds a slot to qemu-img's image" || diag "$(< "$T/err")"
is "$(slots b.qcow2)" 10010000 "the first free slot, 0, as qemu"
ok "qemu-io reads with that key" opens b.qcow2 k1

# ---- mixed with other amend options: the key slots first, as qemu -----------
mk m.qcow2
am m.qcow2 s0 encrypt.state=active,encrypt.new-secret=s1,encrypt.iter-time=10,lazy_refcounts=on
is "$RC" 0 "key slot and lazy_refcounts together" || diag "$(< "$T/err")"
ok "qemu-io reads with the new key" opens m.qcow2 k1
like "$(qemu-img info m.qcow2)" "lazy refcounts: true" "lazy refcounts on"
am m.qcow2 s0 encrypt.state=active,encrypt.new-secret=s2,encrypt.iter-time=10,compat=0.10,lazy_refcounts=on
err_line "a refusal after the key slots"
ok "the slot was added before it, as qemu" opens m.qcow2 k2

# ---- refusals word for word as qemu-img's, each on a fresh copy --------------
mk one.qcow2
qemu-img create -q -f qcow2 plain.qcow2 1M
for o in encrypt.state=active,encrypt.new-secret=s1,encrypt.keyslot=0 \
         encrypt.state=active,encrypt.new-secret=s1,encrypt.keyslot=8 \
         encrypt.state=active,encrypt.keyslot=9 encrypt.state=active \
         encrypt.state=active,encrypt.new-secret=nosuch \
         encrypt.state=active,encrypt.new-secret=s1,encrypt.old-secret=s0 \
         encrypt.state=inactive,encrypt.keyslot=0 encrypt.state=inactive,encrypt.old-secret=s0 \
         encrypt.state=inactive,encrypt.keyslot=3 encrypt.state=inactive \
         encrypt.state=inactive,encrypt.old-secret=s1 encrypt.state=inactive,encrypt.old-secret=nosuch \
         encrypt.state=inactive,encrypt.old-secret=s1,encrypt.keyslot=0 \
         encrypt.state=inactive,encrypt.new-secret=s1 encrypt.state=inactive,encrypt.iter-time=5 \
         encrypt.state=bogus encrypt.new-secret=s1 encrypt.keyslot=abc encrypt.iter-time=x \
         encrypt.format=aes encrypt.key-secret=s1 encrypt.cipher-alg=aes-128; do
    sampled || continue         # check: a third of the refusals; check-slow: the rest
    cp one.qcow2 q.qcow2; cp one.qcow2 k.qcow2
    qimg amend "${objs[@]}" --image-opts "$(io q.qcow2 s0)" -o $o
    kimg amend "${objs[@]}" --image-opts "$(io k.qcow2 s0)" -o $o
    cat "$T/out" "$T/err" >> "$log"
    is "$RC" "$QRC" "amend -o $o: exit code as qemu-img's"
    is "$(sed 's/^kimg: //' "$T/err")" "$(head -1 "$T/qerr" | sed 's/^qemu-img: //; s/q\.qcow2/k.qcow2/')" \
       "amend -o $o: qemu-img's message"
    is "$(sha k.qcow2)" "$(sha one.qcow2)" "amend -o $o: the image unchanged"
done
# a plain image; the key missing or wrong
one=$(sha one.qcow2)
for args in "plain.qcow2 -o encrypt.state=active,encrypt.new-secret=s1" \
            "-f qcow2 one.qcow2 -o encrypt.state=active,encrypt.new-secret=s1" \
            "--image-opts driver=qcow2,file.filename=one.qcow2 -o encrypt.state=active,encrypt.new-secret=s1" \
            "--image-opts $(io one.qcow2 s2) -o encrypt.state=active,encrypt.new-secret=s1"; do
    qimg amend "${objs[@]}" $args
    kimg amend "${objs[@]}" $args
    cat "$T/out" "$T/err" >> "$log"
    is "$RC" "$QRC" "amend $args: exit code as qemu-img's"
    is "$(sed 's/^kimg: //' "$T/err")" "$(head -1 "$T/qerr" | sed 's/^qemu-img: //')" \
       "amend $args: qemu-img's message"
done
is "$(sha one.qcow2)" "$one" "nothing written by a refused open"

# ---- no secret in any output ------------------------------------------------
for k in k0 k1 k2; do
    ok "no output carries the secret in $k" eval "! grep -qF '$(cat $k)' '$log'"
done
done_testing
