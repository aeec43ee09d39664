#!/bin/bash
# LUKS creation options refused as qemu-img 7.2 refuses them: its words,
# its exit code and its order, for create -f luks, create -f qcow2 with
# encrypt.* and measure of both.  qemu checks in three steps, each of
# which wins over the later ones: the option visitor (compat, then the
# encrypt.* values: format, a cipher-alg/cipher-mode/ivgen-alg/
# ivgen-hash-alg/hash-alg it does not know, encrypt.* without a format,
# options the AES format does not take; then preallocation and
# compression_type), then qcow2's own checks (cluster size, refcounts,
# ...), then the encryption: key-secret missing, the secret unknown, and
# last the cipher, where des and 3des ("Algorithm 'des' not supported"),
# cast5 with xts or essiv fail.  des-rfb (qemu's old name) and sm4 are
# not qemu 7.2 values at all.  kimg leaves no file behind.
# make check: a third of each matrix's cases (not the four cast5 measures),
# every option set in at least one (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
# Every qemu-img command here is refused before qemu's PBKDF2 benchmark,
# the one thing tests/cli/shim/qemu-img is there for (a retry of its
# flake, a faster clock), so they run qemu-img itself: the shim's shell
# took four fifths of this file's time.
qemu-img() { "$KIMG_REAL_QEMU_IMG" "$@"; }

printf 'refusal-key' > KEY
obj=(--object secret,id=s,file=KEY)

# same NAME: kimg's stderr and exit code as qemu-img's (file name prefix
# taken off), and kimg made no file (out.img).  (In bash alone, not sed
# and rm: three processes fewer a case, a fifth of the file's time.)
same() {
    local e q a b
    mapfile -t e < "$T/err"; e=("${e[@]#kimg: }"); e=("${e[@]#out.img: }")
    mapfile -t q < "$T/qerr"; q=("${q[@]#qemu-img: }"); q=("${q[@]#q.img: }")
    local IFS=$'\n'; a="${e[*]}" b="${q[*]}"; IFS=$' \t\n'
    while [[ $a == *$'\n' ]]; do a=${a%$'\n'}; done    # as $(...) would
    while [[ $b == *$'\n' ]]; do b=${b%$'\n'}; done
    is "$RC" "$QRC" "$1: exit code as qemu-img's"
    is "$a" "$b" "$1: qemu-img's message"
    if [ "$QRC" != 0 ]; then
        err_line "$1"
        ok "$1: no file left" test ! -e out.img
    fi
    if [[ -e out.img || -e q.img || -L out.img || -L q.img ]]; then rm -f out.img q.img; fi
}

# ---- the standalone luks format ----
for o in cipher-alg=des cipher-alg=3des cipher-alg=des-rfb cipher-alg=sm4 cipher-alg=DES \
         cipher-alg=aes cipher-alg=foo-128 cipher-alg=cast5-256 cipher-mode=foo ivgen-alg=foo \
         hash-alg=foo hash-alg=sm3 ivgen-hash-alg=foo \
         cipher-alg=des,cipher-mode=foo cipher-alg=des,hash-alg=foo \
         cipher-mode=bar,cipher-alg=foo cipher-alg=des,cipher-mode=cbc,ivgen-alg=essiv \
         cipher-alg=3des,cipher-mode=ecb; do
    for k in key-secret=s key-secret=nope ""; do
        sampled || continue     # check: a third of the cases; check-slow: the rest
        opts="${k:+$k,}iter-time=10,$o"
        qimg create -q "${obj[@]}" -f luks -o "$opts" q.img 1M
        kimg create -q "${obj[@]}" -f luks -o "$opts" out.img 1M
        same "create -f luks -o $opts"
    done
    # measure looks the secret up and makes the cipher, as qemu-img
    sampled || continue         # one more case
    qimg measure "${obj[@]}" -O luks --size 1G -o "key-secret=s,$o"
    kimg measure "${obj[@]}" -O luks --size 1G -o "key-secret=s,$o"
    same "measure -O luks -o key-secret=s,$o"
done
for o in cipher-alg=cast5-128 cipher-alg=cast5-128,cipher-mode=cbc,ivgen-alg=essiv; do
    for k in key-secret=s key-secret=nope; do
        qimg measure "${obj[@]}" -O luks --size 1G -o "$k,$o"
        kimg measure "${obj[@]}" -O luks --size 1G -o "$k,$o"
        same "measure -O luks -o $k,$o"
    done
done

# ---- encrypted qcow2: the encryption checks among qcow2's own ----
E=encrypt.format=luks
n=0
for o in "$E,encrypt.cipher-alg=des" "$E,encrypt.cipher-alg=3des" "$E,encrypt.cipher-alg=des-rfb" \
         "$E,encrypt.cipher-alg=foo" "$E,encrypt.cipher-mode=foo" "$E,encrypt.ivgen-alg=foo" \
         "$E,encrypt.hash-alg=foo" "$E,encrypt.ivgen-hash-alg=foo" \
         "$E,encrypt.cipher-alg=des,encrypt.hash-alg=foo" \
         "$E,encrypt.cipher-alg=cast5-128" \
         encrypt.format=foo encrypt.format= encryption=off,encrypt.format=foo \
         encryption=on,$E encryption=on,encrypt.format=aes \
         encrypt.cipher-alg=aes-128 encrypt.cipher-alg=foo encrypt.iter-time=10 \
         encryption=off,encrypt.cipher-alg=aes-128 \
         encrypt.format=aes,encrypt.iter-time=10 encrypt.format=aes,encrypt.hash-alg=foo \
         encryption=on,encrypt.cipher-mode=xts; do
    # each option set with each key form alone, and against one other
    # qcow2 refusal from each step (taking turns, to keep this short)
    i=0
    for k in encrypt.key-secret=s encrypt.key-secret=nope ""; do
        i=$((i + 1))
        others=(cluster_size=1000 compat=0.9 preallocation=foo compression_type=foo
                refcount_bits=3 lazy_refcounts=on,compat=0.10 data_file_raw=on)
        for more in "" "${others[$(( (n + i) % 7 ))]}"; do
            sampled || continue     # check: a third of the cases; check-slow: the rest
            opts="$o${k:+,$k}${more:+,$more}"
            qimg create -q "${obj[@]}" -f qcow2 -o "$opts" q.img 1M
            kimg create -q "${obj[@]}" -f qcow2 -o "$opts" out.img 1M
            same "create -f qcow2 -o $opts"
        done
    done
    n=$((n + 1))
done
# measure: qcow2's checks first, then the LUKS ones in qemu's order
for o in "$E,encrypt.cipher-alg=des" "$E,encrypt.cipher-alg=foo" "$E,encrypt.cipher-alg=cast5-128"; do
    for k in encrypt.key-secret=s encrypt.key-secret=nope ""; do
        for more in "" cluster_size=1000 preallocation=foo lazy_refcounts=on,compat=0.10; do
            sampled || continue     # check: a third of the cases; check-slow: the rest
            opts="$o${k:+,$k}${more:+,$more}"
            qimg measure "${obj[@]}" -O qcow2 --size 1G -o "$opts"
            kimg measure "${obj[@]}" -O qcow2 --size 1G -o "$opts"
            same "measure -O qcow2 -o $opts"
        done
    done
done

# convert into a luks target with des: the same refusal, no output
qemu-img create -q -f raw src.raw 1M
qimg convert "${obj[@]}" -O luks -o key-secret=s,cipher-alg=des src.raw q.img
kimg convert "${obj[@]}" -O luks -o key-secret=s,cipher-alg=des src.raw out.img
same "convert -O luks -o cipher-alg=des"
qimg convert "${obj[@]}" -O qcow2 -o $E,encrypt.key-secret=s,encrypt.cipher-alg=3des src.raw q.img
kimg convert "${obj[@]}" -O qcow2 -o $E,encrypt.key-secret=s,encrypt.cipher-alg=3des src.raw out.img
same "convert -O qcow2 -o encrypt.cipher-alg=3des"
done_testing
