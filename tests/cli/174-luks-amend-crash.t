#!/bin/bash
# A crash at every file change of a key-slot amend (KIMG_CRASH_AFTER=N,
# N = 0, 1, ... until the command finishes; under tests/cli/190 also the
# power-failure model) never locks the old key out: after each crash the
# old key still unlocks the image, kimg and qemu-io read the same data
# with it, qemu-img check is clean (qcow2) and cryptsetup luksDump accepts
# the volume and its old passphrase (luks).  The change itself is all or
# nothing from the keys' view: the new key either opens the right data or
# nothing, a removed key either still opens or not at all.  On both the
# standalone luks format and encrypted qcow2: add a slot, remove a slot by
# its secret, and --force over the only slot (the old key moves to a
# temporary copy first, so a crash leaves the old key or the new one).
# The states a crash can leave, N the changes made before it: add, N=1
# the new slot's key material written, N=3 the header too (then syncs);
# remove, N=1 the header written, then the slot wiped in 16 passes (N=2
# to 18) and syncs; --force over the only slot, N=1 the old key copied to
# a temporary slot, N=3 that slot active, N=5 slot 0's key material
# overwritten (the old key opens through the copy only), N=7 slot 0's
# header switched to the new key (both open), N=9 the copy dropped (only
# the new key), then its 16 wiping passes; each step synced.
# make check: each state on one of the two formats (luks: add 1, remove
# 1, replace 1 5 9; qcow2: add 3, remove 10, replace 3 7 16) and each loop
# to its end; check-slow (KIMG_TEST_PART=rest) every other N, and test
# 190 both parts again under the power-failure model.
. "$(dirname "$0")/lib.sh"
require cryptsetup

printf 'old-key-0000' > k0; printf 'new-key-1111' > k1
objs=(--object secret,id=s0,file=k0 --object secret,id=s1,file=k1)
log=$T/all-output

io() {   # io FMT FILE KEYID: the --image-opts string
    if [ "$1" = luks ]; then echo "driver=luks,file.filename=$2,key-secret=$3"
    else echo "driver=qcow2,file.filename=$2,encrypt.key-secret=$3"; fi
}
p() { [ "$1" = luks ] || printf encrypt.; }   # the amend option prefix
mk() {   # mk FMT FILE: data written with the old key
    rm -f "$2"
    if [ "$1" = luks ]; then
        qemu-img create -q "${objs[@]}" -f luks -o key-secret=s0,iter-time=10 "$2" 1M
    else
        qemu-img create -q "${objs[@]}" -f qcow2 -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 "$2" 1M
    fi
    qemu-io "${objs[@]}" --image-opts "$(io "$1" "$2" s0)" \
        -c 'write -P 0x5a 0 64k' -c 'write -P 0xa5 512k 4k' > /dev/null
}
# opens FMT FILE KEYID: qemu-io and kimg both read the data with that key
opens() {
    qemu-io "${objs[@]}" --image-opts "$(io "$1" "$2" "$3")" \
        -c 'read -P 0x5a 0 64k' -c 'read -P 0xa5 512k 4k' > /dev/null 2>&1 || return 1
    "$KIMG" convert "${objs[@]}" --image-opts "$(io "$1" "$2" "$3")" -O raw got.raw \
        >> "$log" 2>&1 || return 2
    cmp -s got.raw "want.$1.raw" || return 3
}
# refused FMT FILE KEYID: neither qemu-io nor kimg opens with that key
refused() {
    ! qemu-io "${objs[@]}" --image-opts "$(io "$1" "$2" "$3")" -c 'read 0 512' > /dev/null 2>&1 &&
    ! "$KIMG" convert "${objs[@]}" --image-opts "$(io "$1" "$2" "$3")" -O raw got.raw >> "$log" 2>&1
}
# sound FMT FILE KEYID KEYFILE: the format's own checker accepts the image
sound() {
    if [ "$1" = luks ]; then
        cryptsetup luksDump "$2" > /dev/null 2>&1 &&
        cryptsetup open --test-passphrase --key-file "$4" "$2" 2> /dev/null
    else
        qemu-img check "${objs[@]}" --image-opts "$(io "$1" "$2" "$3")" > /dev/null 2>&1
    fi
}

# next N QUICK: the crash point after N (-1: the first) in this part,
# QUICK the points check takes (ascending): quick, those and then 200
# (past the end: the command finishes); rest every other N; all every N.
next() {
    local n=$(($1 + 1)) p
    case $KIMG_TEST_PART in
    quick) for p in $2; do [ "$p" -ge "$n" ] && { echo "$p"; return; }; done
           [ "$n" -le 200 ] && n=200 ;;
    rest) while [[ " $2 " == *" $n "* ]]; do n=$((n + 1)); done ;;
    esac
    echo "$n"
}
# loop NAME FMT OLDKEY NEWKEY GONEKEY AMEND-OPTS QUICK [--force]: crash at
# each change this part takes (QUICK: next); OLDKEY must open after each
# crash (for --force over the only slot: OLDKEY or, past the switch,
# NEWKEY); NEWKEY opens right or not at all; at the end NEWKEY opens and
# GONEKEY (if any) is refused.
loop() {
    local name=$1 fmt=$2 old=$3 new=$4 gone=$5 opts=$6 quick=$7; shift 7
    local n bad=0 crashes=0 rc want=2 pts=($quick)
    local base=base.$fmt
    # every point check takes must crash; the other parts: more than one
    [ "$KIMG_TEST_PART" = quick ] && want=${#pts[@]}
    n=$(next -1 "$quick")
    while :; do
        cp "$base" c.img
        rc=0
        KIMG_CRASH_AFTER=$n timeout -k 5 120 "$KIMG" amend "${objs[@]}" \
            --image-opts "$(io "$fmt" c.img "$old")" -o "$opts" "$@" >> "$log" 2>&1 || rc=$?
        [ $rc = 0 ] && break
        if [ $rc != 222 ]; then
            fail "$name: crash $n" "exit $rc"; return
        fi
        crashes=$((crashes + 1))
        local via=$old
        if ! opens "$fmt" c.img "$old"; then
            if [ "$gone" = "$old" ] && opens "$fmt" c.img "$new"; then via=$new
            else diag "$name: after crash $n the old key does not open the image"; bad=1; fi
        fi
        if [ "$new" != "$old" ] && [ "$via" != "$new" ] && ! opens "$fmt" c.img "$new" &&
           qemu-io "${objs[@]}" --image-opts "$(io "$fmt" c.img "$new")" -c 'read 0 512' > /dev/null 2>&1; then
            diag "$name: after crash $n the new key opens wrong data"; bad=1
        fi
        if ! sound "$fmt" c.img "$via" "$( [ "$via" = s0 ] && echo k0 || echo k1)"; then
            diag "$name: after crash $n the image is not sound"; bad=1
        fi
        n=$(next "$n" "$quick")
        [ $n -gt 200 ] && { fail "$name" "no end after 200 crashes"; return; }
    done
    if [ $bad = 0 ]; then pass "$name: the old key opens after each of $crashes crashes"
    else fail "$name: the old key opens after each of $crashes crashes"; fi
    ok "$name: $crashes crashes (at least $want)" test "$crashes" -ge "$want"
    ok "$name: finished, the new key opens" opens "$fmt" c.img "$new"
    if [ -n "$gone" ]; then ok "$name: finished, the removed key is refused" refused "$fmt" c.img "$gone"; fi
    ok "$name: finished, the image is sound" sound "$fmt" c.img "$new" "$( [ "$new" = s0 ] && echo k0 || echo k1)"
}

# check's crash points per format: add, remove, replace (see the top)
declare -A quick=([luks.add]="1" [luks.remove]="1" [luks.replace]="1 5 9"
                  [qcow2.add]="3" [qcow2.remove]="10" [qcow2.replace]="3 7 16")
for fmt in luks qcow2; do
    P=$(p $fmt)
    mk $fmt base.$fmt
    cp base.$fmt one.$fmt    # the one-slot volume again for replace
    # (luks: unwritten sectors decrypt to noise of this volume's own key)
    qemu-img convert "${objs[@]}" --image-opts "$(io $fmt base.$fmt s0)" -O raw want.$fmt.raw
    # add a slot: the old key keeps working, the new one appears whole
    loop "$fmt add" $fmt s0 s1 "" "${P}state=active,${P}new-secret=s1,${P}iter-time=10" "${quick[$fmt.add]}"
    # remove a slot by its secret: the remaining key keeps working
    cp c.img base.$fmt
    loop "$fmt remove" $fmt s1 s1 s0 "${P}state=inactive,${P}old-secret=s0" "${quick[$fmt.remove]}"
    # --force over the only slot: the old key until the switch, then the new
    cp one.$fmt base.$fmt
    loop "$fmt replace" $fmt s0 s1 s0 "${P}state=active,${P}new-secret=s1,${P}keyslot=0,${P}iter-time=10" \
        "${quick[$fmt.replace]}" --force
done

for k in k0 k1; do
    ok "no output carries the secret in $k" eval "! grep -qF '$(cat $k)' '$log'"
done
done_testing
