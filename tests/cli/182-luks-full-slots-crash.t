#!/bin/bash
# amend --force over an active slot when all 8 LUKS key slots are active
# (formats/luks/keyslot.c, luks_replace_slot's in-place path: no free slot
# to copy the old key into, so the slot is erased, header first, and then
# written with the new key, material synced before the header names it),
# crashed at its file changes (KIMG_CRASH_AFTER=N; under tests/cli/190
# also the power-failure model).  After each crash: the key that unlocked
# the amend (held by another slot) still opens the volume, kimg and qemu-io
# read the same data with it, cryptsetup luksDump and --test-passphrase
# accept the volume; the replaced key and the new key each open the right
# data or nothing.  At the end the new key opens, the replaced one does
# not, the seven others still do.  The same code serves encrypted qcow2.
# The eight slots: qemu-img's slot 0, seven added by cryptsetup.
# In make check: the first 3 changes (the header's erase), every 6th
# after them, the last 4 (material, its sync, the header switch, its
# sync; each such run costs kimg's one-second PBKDF2 benchmark);
# KIMG_TEST_PART=rest or all (make check-slow) takes every one.
. "$(dirname "$0")/lib.sh"
require cryptsetup

objs=()
for i in 0 1 2 3 4 5 6 7 8; do
    printf 'slot-key-%d-%04d' "$i" "$((i * 1111))" > k$i
    objs+=(--object "secret,id=s$i,file=k$i")
done
log=$T/all-output
io() { echo "driver=luks,file.filename=$1,key-secret=$2"; }

rm -f base.luks
for try in 1 2 3 4 5; do   # qemu-img's PBKDF2 benchmark fails now and then under load
    qemu-img create -q "${objs[@]}" -f luks -o key-secret=s0,iter-time=10 base.luks 1M 2> /dev/null && break
done
qemu-io "${objs[@]}" --image-opts "$(io base.luks s0)" \
    -c 'write -P 0x5a 0 64k' -c 'write -P 0xa5 512k 4k' > /dev/null
# the seven other slots through cryptsetup (a fixed 1000 iterations: no
# PBKDF2 benchmark, which costs a second per slot in kimg and qemu-img)
for i in 1 2 3 4 5 6 7; do
    cryptsetup luksAddKey --pbkdf-force-iterations 1000 --key-file k0 base.luks k$i
done
qemu-img info --output=json base.luks > info.json
is "$(grep -c '"active": true' info.json)" 8 "setup: all 8 slots active"
qemu-img convert "${objs[@]}" --image-opts "$(io base.luks s0)" -O raw want.raw

# opens FILE KEYID: qemu-io and kimg both read the data with that key
opens() {
    qemu-io "${objs[@]}" --image-opts "$(io "$1" "$2")" \
        -c 'read -P 0x5a 0 64k' -c 'read -P 0xa5 512k 4k' > /dev/null 2>&1 || return 1
    "$KIMG" convert "${objs[@]}" --image-opts "$(io "$1" "$2")" -O raw got.raw >> "$log" 2>&1 || return 2
    cmp -s got.raw want.raw || return 3
}
# refused FILE KEYID: neither qemu-io nor kimg opens with that key
refused() {
    ! qemu-io "${objs[@]}" --image-opts "$(io "$1" "$2")" -c 'read 0 512' > /dev/null 2>&1 &&
    ! "$KIMG" convert "${objs[@]}" --image-opts "$(io "$1" "$2")" -O raw got.raw >> "$log" 2>&1
}
# right_or_nothing FILE KEYID: the key opens the right data or nothing
right_or_nothing() { opens "$1" "$2" || refused "$1" "$2"; }
sound() {
    cryptsetup luksDump "$1" > /dev/null 2>&1 &&
    cryptsetup open --test-passphrase --key-file "$2" "$1" 2> /dev/null
}

# one NAME N: crash the replacement of slot 7 (key s7 -> s8, unlocked
# with s0) after N changes; 0 = crashed and checked, 1 = finished, 2 = bad
bad=0
one() {
    local n=$1 rc=0
    cp base.luks c.luks
    KIMG_CRASH_AFTER=$n timeout -k 5 120 "$KIMG" amend "${objs[@]}" --image-opts "$(io c.luks s0)" \
        -o state=active,new-secret=s8,keyslot=7,iter-time=10 --force >> "$log" 2>&1 || rc=$?
    [ $rc = 0 ] && return 1
    if [ $rc != 222 ]; then diag "crash $n: exit $rc"; bad=1; return 2; fi
    opens c.luks s0 || { diag "after crash $n the unlocking key does not open the volume"; bad=1; }
    right_or_nothing c.luks s7 || { diag "after crash $n the replaced key opens wrong data"; bad=1; }
    right_or_nothing c.luks s8 || { diag "after crash $n the new key opens wrong data"; bad=1; }
    sound c.luks k0 || { diag "after crash $n cryptsetup does not accept the volume"; bad=1; }
    return 0
}

crashes=0 n=0 end=
while [ $n -le 200 ]; do
    one $n; r=$?
    [ $r = 1 ] && { end=$n; break; }
    [ $r = 0 ] && crashes=$((crashes + 1))
    if [ "$KIMG_TEST_PART" != quick ] || [ $n -lt 3 ]; then n=$((n + 1)); else n=$((n + 6)); fi
done
ok "the amend finishes (after $end changes)" test -n "$end"
if [ -n "$end" ] && [ "$KIMG_TEST_PART" = quick ]; then
    # the points the stride skipped before the end: the new key's
    # material, its sync, the header switch and its sync
    for m in $((end - 4)) $((end - 3)) $((end - 2)) $((end - 1)); do
        [ $m -ge 3 ] || continue
        [ $(( (m - 3) % 6 )) = 0 ] && continue   # already taken
        one $m && crashes=$((crashes + 1))
    done
fi
if [ $bad = 0 ]; then pass "the unlocking key opens after each of $crashes crashes, the others right or nothing"
else fail "the unlocking key opens after each of $crashes crashes, the others right or nothing"; fi
ok "$crashes crashes (more than 5)" test "$crashes" -gt 5

# finished: the new key in slot 7, the replaced key gone, the others kept
ok "finished: the new key opens" opens c.luks s8
ok "finished: the replaced key is refused" refused c.luks s7
for i in 0 3 6; do ok "finished: key $i still opens" opens c.luks s$i; done
qemu-img info --output=json c.luks > info.json
is "$(grep -c '"active": true' info.json)" 8 "finished: all 8 slots active"
ok "finished: cryptsetup accepts the new passphrase" sound c.luks k8
ok "finished: cryptsetup refuses the replaced one" eval "! cryptsetup open --test-passphrase --key-file k7 c.luks 2> /dev/null"
for i in 0 7 8; do
    ok "no output carries the secret k$i" eval "! grep -qF '$(cat k$i)' '$log'"
done
done_testing
