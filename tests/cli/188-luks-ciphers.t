#!/bin/bash
# Every cipher, mode and IV generator qemu-img 7.2 can create a luks volume
# with (aes-128/192/256, cast5-128, serpent-*, twofish-*; xts, cbc, ecb,
# ctr; plain, plain64, essiv): qemu-img creates and qemu-io writes, kimg
# reads the same bytes; kimg creates and writes, qemu-img reads the same
# bytes; cryptsetup accepts kimg's volume wherever it opens qemu's (its
# kernel backend here knows AES only).  Encrypted qcow2 with a few of them
# both ways.  qemu's refusals (cast5 with xts or essiv) with its words;
# 192-bit keys outside xts, which qemu-img 7.2 aborts on, kimg writes as
# cryptsetup does.  Each create runs qemu's PBKDF2 benchmark, so every
# cipher meets two of its modes, the IV generators taking turns (17 of the
# 87 combinations), split between the two make targets: make check runs 5
# of them that meet every cipher family, key size, mode and IV generator
# (the aes ones also through cryptsetup) and 2 of the 5 qcow2 cases;
# make check-slow (its KIMG_TEST_MORE=1 stage, or lib.sh's test part
# rest) the other 12 and 3; the part all runs both; KIMG_LUKS_ALL=1 (make
# check-ciphers) all 87 and all 5.  The refusals and the 192-bit keys run
# in every part.  (This file stays out of the Makefile's list of files
# that split their cases: check-slow runs it once, in its own stage.)
. "$(dirname "$0")/lib.sh"

printf 'cipher-test-key' > KEY
obj=(--object secret,id=s,file=KEY)
# the data both tools write: three patterns, one across a sector boundary
io_cmds=(-c 'write -P 0x5a 0 64k' -c 'write -P 0x11 4608 1024' -c 'write -P 0xa5 960k 64k')
qemu-img create -q -f raw ref.raw 1M
qemu-io -f raw "${io_cmds[@]}" ref.raw > /dev/null

clear=$(printf '%64s' '' | tr ' ' Z)     # 64 bytes of the 0x5a pattern
every=() two=()
n=0 t=0 a=0
for alg in aes-128 aes-192 aes-256 cast5-128 serpent-128 serpent-192 serpent-256 \
           twofish-128 twofish-192 twofish-256; do
    modes=()
    for mode in xts cbc ecb ctr; do
        case $alg-$mode in cast5-*-xts) continue ;; esac
        # qemu-img 7.2 aborts on 192-bit keys outside xts (24 x 4000 bytes
        # of key material are no whole number of sectors)
        case $alg-$mode in *-192-xts) ;; *-192-*) continue ;; esac
        modes+=("$mode")
    done
    for j in "${!modes[@]}"; do
        mode=${modes[$j]}
        ivs=(plain plain64 essiv)
        case $alg in cast5-*) ivs=(plain plain64) ;; esac
        # two modes of each cipher (rotating from cipher to cipher), the
        # IV generators taking turns
        pick=0
        [ "$j" = $((a % ${#modes[@]})) ] && pick=1
        [ "$j" = $(((a + 1) % ${#modes[@]})) ] && pick=1
        for i in "${!ivs[@]}"; do
            n=$((n + 1))
            every+=("$alg $mode ${ivs[$i]}")
            [ $pick = 1 ] && [ "$i" = $((t % ${#ivs[@]})) ] && two+=("$alg $mode ${ivs[$i]}")
        done
        t=$((t + 1))
    done
    a=$((a + 1))
done
is "$n" 87 "87 combinations qemu-img 7.2 creates"
is "${#two[@]}" 17 "17 of them: two modes of each cipher"
# make check's share of the 17: aes, cast5, serpent, twofish; 128, 192
# and 256 bits; xts, cbc, ecb, ctr; plain, plain64, essiv
check=" aes-128-xts-plain aes-256-ctr-essiv cast5-128-cbc-plain64 serpent-192-xts-plain64 twofish-256-ecb-plain64 "
k=0
for c in "${two[@]}"; do [[ $check == *" ${c// /-} "* ]] && k=$((k + 1)); done
is "$k" 5 "make check's five combinations are among the 17"
# the share this run takes: check's (quick), the others (rest), or both
part=$(test_part)
[ "$part" = quick ] && [ -n "${KIMG_TEST_MORE:-}" ] && part=rest
[ -n "${KIMG_LUKS_ALL:-}" ] && part=all
combos=()
for c in "${two[@]}"; do
    case $part in
    quick) [[ $check == *" ${c// /-} "* ]] || continue ;;
    rest) [[ $check == *" ${c// /-} "* ]] && continue ;;
    esac
    combos+=("$c")
done
[ -n "${KIMG_LUKS_ALL:-}" ] && combos=("${every[@]}")

# q_create ARGS... NAME: qemu-img create 1M
q_create() { qemu-img create -q "${obj[@]}" "$@" 1M 2> /dev/null; }

# can cryptsetup here open this combination at all?  (qemu's volume decides)
cs_knows() { command -v cryptsetup > /dev/null && cryptsetup open --test-passphrase --key-file KEY "$1" 2> /dev/null; }

for c in "${combos[@]}"; do
    read -r alg mode iv <<< "$c"
    o="key-secret=s,iter-time=10,cipher-alg=$alg,cipher-mode=$mode,ivgen-alg=$iv"
    name="$alg-$mode-$iv"
    rm -f q.luks k.luks out.raw
    # qemu-img creates, qemu-io writes, kimg reads what qemu-img reads
    # (sectors never written decrypt to noise: a luks volume is not zeroed)
    rm -f qout.raw
    q_create -f luks -o "$o" q.luks &&
        qemu-io "${obj[@]}" --image-opts "driver=luks,key-secret=s,file.filename=q.luks" \
            "${io_cmds[@]}" > /dev/null &&
        qemu-img convert "${obj[@]}" --image-opts "driver=luks,key-secret=s,file.filename=q.luks" \
            -O raw qout.raw
    kimg convert "${obj[@]}" --image-opts "driver=luks,key-secret=s,file.filename=q.luks" \
        -O raw out.raw
    if [ "$RC" = 0 ] && [ -s qout.raw ] && cmp -s out.raw qout.raw; then
        pass "$name: kimg decrypts what qemu-io wrote"
    else
        fail "$name: kimg decrypts what qemu-io wrote" "exit $RC: $(head -2 "$T/err")"
    fi
    # kimg creates and writes, qemu-img reads
    kimg create -q -f luks "${obj[@]}" -o "$o" k.luks 1M
    [ "$RC" = 0 ] && kimg convert -n "${obj[@]}" -f raw --target-image-opts ref.raw \
        "driver=luks,key-secret=s,file.filename=k.luks"
    if [ "$RC" = 0 ] && qemu-img compare -q "${obj[@]}" --image-opts \
           "driver=luks,key-secret=s,file.filename=k.luks" "driver=raw,file.filename=ref.raw"; then
        pass "$name: qemu-img reads what kimg created and wrote"
    else
        fail "$name: qemu-img reads what kimg created and wrote" "exit $RC: $(head -2 "$T/err")"
    fi
    ok "$name: the data is not in the clear" eval '! grep -q "$clear" k.luks'
    if cs_knows q.luks; then
        ok "$name: cryptsetup luksDump and --test-passphrase accept kimg's volume" eval \
            "cryptsetup luksDump k.luks > /dev/null && cryptsetup open --test-passphrase --key-file KEY k.luks"
    fi
done

# encrypted qcow2 with some of them, both ways (make check the first two,
# check-slow the other three)
i=0
for c in "serpent-128 cbc essiv" "aes-192 xts plain64" \
         "twofish-256 xts plain64" "cast5-128 ctr plain64" "twofish-192 xts essiv"; do
    i=$((i + 1))
    case $part in quick) [ $i -le 2 ] || continue ;; rest) [ $i -gt 2 ] || continue ;; esac
    read -r alg mode iv <<< "$c"
    o="encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10,encrypt.cipher-alg=$alg"
    o+=",encrypt.cipher-mode=$mode,encrypt.ivgen-alg=$iv"
    name="qcow2 $alg-$mode-$iv"
    rm -f q.qcow2 k.qcow2 out.raw
    q_create -f qcow2 -o "$o" q.qcow2 &&
        qemu-io "${obj[@]}" --image-opts "driver=qcow2,encrypt.key-secret=s,file.filename=q.qcow2" \
            "${io_cmds[@]}" > /dev/null
    kimg convert "${obj[@]}" --image-opts "driver=qcow2,encrypt.key-secret=s,file.filename=q.qcow2" \
        -O raw out.raw
    ok "$name: kimg decrypts what qemu-io wrote" eval '[ "$RC" = 0 ] && cmp -s out.raw ref.raw'
    kimg convert "${obj[@]}" -f raw -O qcow2 -o "$o" ref.raw k.qcow2
    ok "$name: qemu-img reads kimg's convert output" eval '[ "$RC" = 0 ] &&
        qemu-img compare -q "${obj[@]}" --image-opts \
            "driver=qcow2,encrypt.key-secret=s,file.filename=k.qcow2" "driver=raw,file.filename=ref.raw"'
    kimg checksum "${obj[@]}" --image-opts "driver=qcow2,encrypt.key-secret=s,file.filename=q.qcow2"
    a=$(cut -d' ' -f1 "$T/out")
    kimg checksum -f raw ref.raw
    is "$a" "$(cut -d' ' -f1 "$T/out")" "$name: checksum of the decrypted guest = the plain data's"
done

# qemu's refusals, in qemu's words; no file left
for o in "cipher-alg=cast5-128,cipher-mode=xts" "cipher-alg=cast5-128,cipher-mode=cbc,ivgen-alg=essiv" \
         "cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha1" \
         "cipher-alg=twofish-256,cipher-mode=xts,ivgen-alg=essiv,ivgen-hash-alg=sha512"; do
    rm -f q.luks k.luks
    qimg create -q -f luks "${obj[@]}" -o "key-secret=s,iter-time=10,$o" q.luks 1M
    kimg create -q -f luks "${obj[@]}" -o "key-secret=s,iter-time=10,$o" k.luks 1M
    err_line "$o"
    is "$(sed 's/^kimg: k.luks: //' "$T/err")" "$(sed 's/^qemu-img: q.luks: //' "$T/qerr")" \
        "$o: qemu-img's message"
    ok "$o: no file left" test ! -e k.luks
done

# 192-bit keys outside xts: qemu-img 7.2 aborts; kimg writes them as
# cryptsetup does (the last key-material sector padded), and cryptsetup
# opens the aes one (its kernel backend here has no serpent or twofish)
kimg create -q -f luks "${obj[@]}" -o key-secret=s,iter-time=10,cipher-alg=aes-192,cipher-mode=cbc,ivgen-alg=essiv k192.luks 1M
is "$RC" 0 "aes-192-cbc-essiv: kimg creates it"
if command -v cryptsetup > /dev/null; then
    ok "aes-192-cbc-essiv: cryptsetup accepts the key" \
        cryptsetup open --test-passphrase --key-file KEY k192.luks
fi
kimg convert -n "${obj[@]}" -f raw --target-image-opts ref.raw "driver=luks,key-secret=s,file.filename=k192.luks"
kimg compare "${obj[@]}" --image-opts "driver=luks,key-secret=s,file.filename=k192.luks" "driver=raw,file.filename=ref.raw"
is "$RC" 0 "aes-192-cbc-essiv: kimg reads back what it wrote"

done_testing
