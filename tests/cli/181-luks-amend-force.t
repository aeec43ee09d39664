#!/bin/bash
# amend --force on the standalone luks format, as qemu-img 7.2: an active
# slot gets a new passphrase in place (kimg through a temporary copy of the
# slot, erased at the end: cryptsetup then sees one slot), an inactive slot
# is erased again; the last slot is still never erased (qemu erases it).
# cryptsetup luksDump accepts every result and open --test-passphrase takes
# exactly the active passphrases; what qemu-img changes with --force kimg
# opens.  Refusals qemu-img gives with and without --force, word for word.
# No output carries a secret.
. "$(dirname "$0")/lib.sh"
require cryptsetup

printf 'first-key-aaaa' > k1; printf 'second-key-bbbb' > k2
objs=(--object secret,id=s1,file=k1 --object secret,id=s2,file=k2)
log=$T/all-output
io() { echo "driver=luks,file.filename=$1,key-secret=$2"; }
am() {
    local f=$1 k=$2; shift 2
    kimg amend "${objs[@]}" --image-opts "$(io "$f" "$k")" "$@"
    cat "$T/out" "$T/err" >> "$log"
}
opens() {   # opens FILE KEYFILE: qemu-io reads the pattern, cryptsetup takes the key
    qemu-io --object secret,id=x,file=$2 --image-opts "$(io "$1" x)" \
        -c 'read -P 0x42 0 64k' > /dev/null 2>&1 &&
    cryptsetup open --test-passphrase --key-file "$2" "$1" 2> /dev/null
}
refused() {
    ! qemu-io --object secret,id=x,file=$2 --image-opts "$(io "$1" x)" -c 'read 0 512' > /dev/null 2>&1 &&
    ! cryptsetup open --test-passphrase --key-file "$2" "$1" 2> /dev/null
}
nslots() { cryptsetup luksDump "$1" | grep -c 'ENABLED'; }
mk() {
    rm -f "$1"
    qemu-img create -q "${objs[@]}" -f luks -o key-secret=s1,iter-time=10 "$1" 1M
    qemu-io "${objs[@]}" --image-opts "$(io "$1" s1)" -c 'write -P 0x42 0 64k' > /dev/null
}

mk v.luks
am v.luks s1 -o state=active,new-secret=s2,keyslot=0,iter-time=10 --force
is "$RC" 0 "--force gives the only slot a new passphrase" || diag "$(< "$T/err")"
ok "cryptsetup luksDump accepts the volume" eval "cryptsetup luksDump v.luks > /dev/null"
is "$(nslots v.luks)" 1 "cryptsetup sees one active slot (the copy erased)"
like "$(cryptsetup luksDump v.luks)" "Key Slot 0: ENABLED" "slot 0 active"
ok "the new passphrase opens (qemu-io, cryptsetup)" opens v.luks k2
ok "the old passphrase is refused" refused v.luks k1
kimg convert "${objs[@]}" --image-opts "$(io v.luks s2)" -O raw k.raw
qemu-img convert "${objs[@]}" --image-opts "$(io v.luks s2)" -O raw q.raw
ok "kimg and qemu-img read the same data with the new key" cmp -s k.raw q.raw

# --force over an active slot when another slot holds the key too
am v.luks s2 -o state=active,new-secret=s1,keyslot=3,iter-time=10
is "$RC" 0 "a second slot" || diag "$(< "$T/err")"
am v.luks s2 -o state=active,new-secret=s2,keyslot=3,iter-time=10 --force
is "$RC" 0 "--force over slot 3" || diag "$(< "$T/err")"
is "$(nslots v.luks)" 2 "two active slots"
ok "the first passphrase is gone" refused v.luks k1
ok "the second opens" opens v.luks k2
am v.luks s2 -o state=inactive,keyslot=5 --force
is "$RC" 0 "--force erases an inactive slot, as qemu" || diag "$(< "$T/err")"
am v.luks s2 -o state=inactive,keyslot=3
is "$RC" 0 "erase slot 3" || diag "$(< "$T/err")"
am v.luks s2 -o state=inactive,keyslot=0 --force
err_line "the last slot stays even with --force"
like "$(< "$T/err")" "Attempt to erase the only active keyslot 0" "qemu's words for it"
ok "the volume still opens" opens v.luks k2

# qemu-img changes the passphrase with --force; kimg opens the result
mk q.luks
qemu-img amend "${objs[@]}" --image-opts "$(io q.luks s1)" -o state=active,new-secret=s2,keyslot=0,iter-time=10 --force
kimg convert "${objs[@]}" --image-opts "$(io q.luks s2)" -O raw qk.raw
is "$RC" 0 "kimg opens qemu-img's forced slot with the new key"
kimg convert "${objs[@]}" --image-opts "$(io q.luks s1)" -O raw qk1.raw
cat "$T/out" "$T/err" >> "$log"
like "$(< "$T/err")" "Invalid password, cannot unlock any keyslot" "and refuses the old one"

# refusals word for word as qemu-img's, each on a fresh copy of a one-slot volume
mk one.luks
for args in "state=inactive,iter-time=10,keyslot=0" "state=inactive,iter-time=10,keyslot=0 --force" \
            "state=active,new-secret=s2,old-secret=s1,keyslot=0 --force" \
            "state=active,keyslot=9 --force" "state=active,new-secret=s2,keyslot=8 --force" \
            "state=inactive,old-secret=s2,keyslot=0 --force" "state=inactive,old-secret=s2,keyslot=4 --force" \
            "state=active,new-secret=nosuch,keyslot=0 --force"; do
    cp one.luks q.luks; cp one.luks k.luks
    qimg amend "${objs[@]}" --image-opts "$(io q.luks s1)" -o $args
    am k.luks s1 -o $args
    is "$RC" "$QRC" "amend -o $args: exit code as qemu-img's"
    is "$(sed 's/^kimg: //' "$T/err")" "$(head -1 "$T/qerr" | sed 's/^qemu-img: //')" "amend -o $args: qemu-img's message"
    is "$(sha k.luks)" "$(sha one.luks)" "amend -o $args: the volume unchanged"
done

for k in k1 k2; do
    ok "no output carries the secret in $k" eval "! grep -qF '$(cat $k)' '$log'"
done
done_testing
