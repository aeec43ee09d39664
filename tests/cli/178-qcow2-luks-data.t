#!/bin/bash
# Encrypted qcow2 data (issue 14), qemu-img and qemu-io as the oracle both
# ways: kimg-written images read by qemu, qemu-written images read by kimg
# (convert, compare, map, check, checksum, info with the key), plain ->
# encrypted through the parallel engine (any -m, serial, -S 0, v2/v3,
# extended L2, small and large clusters), encrypted -> plain,
# re-encryption with another key, writes at any alignment (overlays,
# commit); a wrong or missing key: one line, exit 1, no output; and no
# plaintext pattern of the guest ever in the image file.
# make check: a third of the layout x way-of-writing cases (each layout in
# one or two; lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
require qemu-io
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
printf 'kimg-luks-passphrase' > key
printf 'another-passphrase' > key2
sec=(--object secret,id=sec0,file=key --object secret,id=sec1,file=key2)
E=encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10
kopen() { echo "driver=qcow2,encrypt.key-secret=${2:-sec0},file.filename=$1"; }
qcompare() { qemu-img compare -q "${sec[@]}" --image-opts "$(kopen "$1" "${3:-sec0}")" "driver=raw,file.filename=$2"; }
qcheck() { qemu-img check -q "${sec[@]}" --image-opts "$(kopen "$1" "${2:-sec0}")" > /dev/null 2>&1; }
MARK=KIMG-PLAINTEXT-MARKER-0123456789
noplain() { if grep -q "$MARK" "$1"; then fail "$2: no plaintext in the file" "$MARK found"; else pass "$2: no plaintext in the file"; fi; }

# a guest: random data, a text pattern, zeros, an unaligned tail
head -c 3M /dev/urandom > src.raw
yes "$MARK" | head -c 1M >> src.raw
head -c 1M /dev/zero >> src.raw
yes "$MARK" | head -c 70000 >> src.raw
truncate -s 7M src.raw
printf 'end' | dd of=src.raw bs=1 seek=$((7 * 1024 * 1024 - 3)) conv=notrunc 2> /dev/null

# plain -> encrypted: into an encrypted image kimg made, through the engine
i=0
for o in "" ",compat=0.10" ",extended_l2=on" ",cluster_size=512" ",cluster_size=2M" \
         ",extended_l2=on,cluster_size=16k"; do
    # one create per layout (a LUKS create measures PBKDF2 for a while),
    # copied for each way of writing
    kimg create -q -f qcow2 "${sec[@]}" -o "$E$o" empty.qcow2 7M
    for how in "" "-m 1" "-S 0" "KIMG_CONVERT_SERIAL=1"; do
        i=$((i + 1)); f=t$i.qcow2
        sampled || continue     # check: a third of the cases; check-slow: the rest
        cp empty.qcow2 $f
        case $how in K*) env=$how; m="";; *) env=""; m=$how;; esac
        run env $env timeout 60 "$KIMG" convert -n $m "${sec[@]}" --target-image-opts src.raw "$(kopen $f)"
        is "$RC" 0 "convert -n $m $env into -o luks$o: exit 0"
        ok "convert $m $env into -o luks$o: qemu-img compare with the key: identical" qcompare $f src.raw
        ok "convert $m $env into -o luks$o: qemu-img check clean" qcheck $f
        noplain $f "convert $m $env into -o luks$o"
    done
done
# convert -O qcow2 -o encrypt...: the new target is opened with the -o
# key-secret as its open option (qemu-img's img_add_key_secrets)
kimg convert -O qcow2 "${sec[@]}" -o $E src.raw direct.qcow2
is "$RC" 0 "convert -O qcow2 -o encrypt.format=luks,...: exit 0"
ok "convert -O qcow2 -o luks: qemu-img compare with the key: identical" qcompare direct.qcow2 src.raw
[ -e direct.qcow2 ] && noplain direct.qcow2 "convert -O qcow2 -o luks"

# qemu-img's image read by kimg, and the commands with the key
qemu-img convert -q "${sec[@]}" -O qcow2 -o $E src.raw q.qcow2
qemu-io "${sec[@]}" --image-opts "$(kopen q.qcow2)" -c 'write -P 0x5a 1000 3000' \
    -c 'write -z 65536 65536' -c 'write -P 0x77 5000000 70001' > /dev/null
qemu-img convert "${sec[@]}" --image-opts "$(kopen q.qcow2)" -O raw q.raw
kimg convert "${sec[@]}" --image-opts "$(kopen q.qcow2)" -O raw k.raw
is "$RC" 0 "encrypted -> raw: exit 0"
ok "encrypted -> raw: the guest as qemu-img reads it" cmp -s k.raw q.raw
ko=(--image-opts "$(kopen q.qcow2)")
oracle "compare with the key" compare "${sec[@]}" "${ko[@]}" "driver=raw,file.filename=q.raw"
oracle "compare with the key, a difference" compare "${sec[@]}" "${ko[@]}" "driver=raw,file.filename=src.raw"
oracle "map --output=json with the key" map --output=json "${sec[@]}" "${ko[@]}"
oracle "map with the key" map "${sec[@]}" "${ko[@]}"
oracle "check with the key" check "${sec[@]}" "${ko[@]}"
oracle "check --output=json with the key" check --output=json "${sec[@]}" "${ko[@]}"
kimg checksum "${sec[@]}" "${ko[@]}"; cut -d' ' -f1 "$T/out" > sum.enc
kimg checksum -f raw q.raw
is "$(< sum.enc)" "$(cut -d' ' -f1 "$T/out")" "checksum of the encrypted image is the raw guest's"

# re-encryption with another key, through kimg
kimg create -q -f qcow2 "${sec[@]}" -o encrypt.format=luks,encrypt.key-secret=sec1,encrypt.iter-time=10 r.qcow2 7M
kimg convert -n "${sec[@]}" --image-opts "$(kopen q.qcow2)" --target-image-opts "$(kopen r.qcow2 sec1)"
is "$RC" 0 "re-encryption (key 0 -> key 1): exit 0"
ok "re-encrypted: qemu-img reads the guest with key 1" qcompare r.qcow2 q.raw sec1
qemu-img convert -q -O raw --object secret,id=sec0,file=key --image-opts "$(kopen r.qcow2)" r0.raw 2> /dev/null
ok "re-encrypted: key 0 does not open it" test ! -e r0.raw

# wrong key, missing key: one line, exit 1, nothing written
before=$(sha q.qcow2)
kimg convert --object secret,id=sec0,file=key2 --image-opts "$(kopen q.qcow2)" -O raw w.raw
err_line "convert with a wrong key"
like "$(< "$T/err")" "Invalid password, cannot unlock any keyslot" "wrong key: qemu's message"
ok "wrong key: no output file" test ! -e w.raw
oracle "compare with a wrong key" compare --object secret,id=sec0,file=key2 --image-opts "$(kopen q.qcow2)" "driver=raw,file.filename=q.raw"
kimg convert -O raw q.qcow2 w.raw
err_line "convert without a key"
like "$(< "$T/err")" "Could not open 'q.qcow2': Parameter 'encrypt.key-secret' is required for cipher" \
    "no key: qemu-img's message"
ok "no key: no output file" test ! -e w.raw
oracle "check without a key" check q.qcow2
oracle "info without a key" info --output=json q.qcow2
is "$(sha q.qcow2)" "$before" "the image is unchanged by the refused commands"

# unaligned writes into an encrypted overlay over a plain base, then commit
qemu-img create -q -f qcow2 base.qcow2 4M
qemu-io -c 'write -P 0x11 0 4M' base.qcow2 > /dev/null
kimg create -q -f qcow2 "${sec[@]}" -o $E -b base.qcow2 -F qcow2 ov.qcow2
is "$RC" 0 "create an encrypted overlay over a plain base"
qemu-io "${sec[@]}" --image-opts "$(kopen ov.qcow2)" -c 'write -P 0x22 1000 3000' \
    -c 'write -P 0x33 100000 70000' -c 'write -z 300000 5000' > /dev/null
qemu-img convert "${sec[@]}" --image-opts "$(kopen ov.qcow2)" -O raw ovq.raw
kimg convert "${sec[@]}" --image-opts "$(kopen ov.qcow2)" -O raw ovk.raw
ok "encrypted overlay: kimg reads it as qemu-img" cmp -s ovk.raw ovq.raw
# kimg reads an encrypted top and writes its data down into a plain base
kimg commit "${sec[@]}" --image-opts "$(kopen ov.qcow2)"
is "$RC" 0 "commit of an encrypted overlay into its plain base: exit 0"
qemu-img convert -O raw base.qcow2 base.raw
ok "commit of an encrypted overlay: the base holds the guest" cmp -s base.raw ovq.raw
# kimg's partial-cluster writes into an encrypted base (copy-on-write of
# the rest, decrypted and encrypted again): commit from a plain overlay
# with 512-byte clusters; the base's key goes in as backing.encrypt.key-secret
kimg create -q -f qcow2 "${sec[@]}" -o $E eb.qcow2 4M
kimg convert -n "${sec[@]}" --target-image-opts ovq.raw "$(kopen eb.qcow2)"
qemu-img create -q -f qcow2 -o cluster_size=512 -b eb.qcow2 -F qcow2 top.qcow2
qemu-io "${sec[@]}" --image-opts "driver=qcow2,file.filename=top.qcow2,backing.encrypt.key-secret=sec0" \
    -c 'write -P 0x44 1024 1536' -c 'write -P 0x55 65024 100352' > /dev/null
qemu-img convert "${sec[@]}" --image-opts "driver=qcow2,file.filename=top.qcow2,backing.encrypt.key-secret=sec0" -O raw top.raw
kimg commit "${sec[@]}" --image-opts "driver=qcow2,file.filename=top.qcow2,backing.encrypt.key-secret=sec0"
is "$RC" 0 "commit of partial clusters into an encrypted base: exit 0"
ok "commit into an encrypted base: qemu-img check clean" qcheck eb.qcow2
[ "$RC" = 0 ] && ok "commit into an encrypted base: qemu-img reads the result" qcompare eb.qcow2 top.raw
done_testing
