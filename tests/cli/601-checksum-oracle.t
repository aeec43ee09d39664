#!/bin/bash
# checksum against independent oracles, on every generated fixture (all
# qcow2 variants, chains, compression, preallocation, snapshots, external
# data files) and a few digests: --raw-digest equals sha256sum (sha512sum,
# sha1sum, md5sum, b2sum, openssl dgst) of `qemu-img convert -O raw`
# output, and the default digest equals the blkhash construction computed
# by a small python script from that same raw output.
# make check: a third of the fixtures (lib.sh sampled; the digests' four
# images converted in each part); check-slow the rest.
. "$(dirname "$0")/lib.sh"
fixtures
# blkhash: H(H(block 0) || ... || H(block n-1) || le64(length)), 64 KiB blocks
cat > blkhash.py <<'PY'
import hashlib, struct, sys
name, bs = sys.argv[1], int(sys.argv[2])
new = (lambda d=b"": hashlib.blake2b(d)) if name == "blake2b512" else \
      (lambda d=b"": hashlib.new(name, d))
for path in sys.argv[3:]:
    outer, n = new(), 0
    with open(path, "rb") as f:
        while True:
            b = f.read(bs)
            if not b:
                break
            outer.update(new(b).digest())
            n += len(b)
    outer.update(struct.pack("<Q", n))
    print(outer.hexdigest())
PY
raws=()
names=()
for f in $(fixture_names); do
    c=0; sampled && c=1         # check: a third of the fixtures; check-slow: the rest
    # (the other digests below read these four in each part)
    case $f in holes.raw|zstd.qcow2|chain-top.qcow2|odd.qcow2) ;; *) [ $c = 1 ] || continue ;; esac
    # the fixtures folder is the working directory, as for qemu-img (data files)
    (cd "$FX" && qemu-img convert -O raw "$f" "$T/$f.out.raw") || { fail "$f: qemu-img convert"; continue; }
    [ $c = 1 ] || continue
    names+=("$f"); raws+=("$f.out.raw")
done
$PY blkhash.py sha256 65536 "${raws[@]}" > py.sha256
i=0
for f in "${names[@]}"; do
    i=$((i + 1))
    RC=0; (cd "$FX" && "$KIMG" checksum --raw-digest "$f") > out 2> err || RC=$?
    is "$(< out)" "$(sha256sum < "$f.out.raw" | cut -d' ' -f1)  $f" \
        "$f: --raw-digest is sha256sum of qemu-img's raw conversion"
    RC=0; (cd "$FX" && "$KIMG" checksum --threads 3 "$f") > out 2> err || RC=$?
    is "$(cut -d' ' -f1 out)" "$(sed -n "${i}p" py.sha256)" "$f: the blkhash construction (python reference)"
done

# other digests, against the matching tool, on images with holes, zeros,
# compression and a chain
oracle_tool() {   # ALG -> a command printing the digest of stdin first
    case $1 in
    sha256) echo sha256sum ;; sha512) echo sha512sum ;; sha1) echo sha1sum ;;
    md5) echo md5sum ;; blake2b512) echo b2sum ;; *) echo "openssl dgst -$1 -r" ;;
    esac
}
for alg in sha512 sha1 md5 blake2b512 sha3-256 sha384; do
    kimg checksum -a $alg --raw-digest -f raw "$FX/holes.raw"
    if [ "$RC" -ne 0 ] && [ "$alg" = md5 ]; then
        skip "$alg: disabled by the OpenSSL provider here" "$(head -1 "$T/err")"; continue
    fi
    $PY blkhash.py $alg 65536 zstd.qcow2.out.raw chain-top.qcow2.out.raw > py.$alg
    for f in holes.raw zstd.qcow2 chain-top.qcow2 odd.qcow2; do
        tool=$(oracle_tool $alg)
        RC=0; (cd "$FX" && "$KIMG" checksum -a $alg --raw-digest "$f") > out 2> err || RC=$?
        is "$(cut -d' ' -f1 out)" "$($tool < "$f.out.raw" | cut -d' ' -f1)" "$alg --raw-digest $f: as $tool"
    done
    RC=0; (cd "$FX" && "$KIMG" checksum -a $alg zstd.qcow2 chain-top.qcow2) > out 2> err || RC=$?
    is "$(cut -d' ' -f1 out)" "$(cat py.$alg)" "$alg: the blkhash construction (python reference)"
done

# A raw file whose length is not a multiple of 512: qemu shows it rounded
# up (the tail reads as zeros), so kimg digests that view, as --raw-digest
# digests what `qemu-img convert -O raw` writes.  blksum and nbdcopy
# --blkhash digest the file's own bytes and length instead: another digest
# (README "checksum", and checksum --help, say so).
head -c 70000 /dev/urandom > odd.raw
qemu-img convert -f raw -O raw odd.raw odd.out.raw
is "$(stat -c %s odd.out.raw)" 70144 "(qemu shows 70000 bytes as 70144)"
run "$KIMG" checksum -f raw odd.raw
is "$(cut -d' ' -f1 "$T/out")" "$($PY blkhash.py sha256 65536 odd.out.raw)" \
   "odd-length raw: the blkhash construction over qemu's 512-rounded view"
isnt "$(cut -d' ' -f1 "$T/out")" "$($PY blkhash.py sha256 65536 odd.raw)" \
   "... not blksum's digest of the file's own 70000 bytes"
run "$KIMG" checksum -f raw --raw-digest odd.raw
is "$(cut -d' ' -f1 "$T/out")" "$(sha256sum < odd.out.raw | cut -d' ' -f1)" \
   "odd-length raw --raw-digest: sha256sum of qemu-img convert's output"
run "$KIMG" checksum --help
like "$(tr '\n' ' ' < "$T/out")" "not a multiple of 512" "checksum --help tells of the difference"

# nbdcopy's published --blkhash vectors (libnbd copy/copy-blkhash-known.sh:
# nbdkit's data plugin, "nbdcopy --blkhash=DIGEST[/BLOCKSIZE]"), the data
# written to files here.  Where the length is a multiple of 512 kimg's
# digest is nbdcopy's; "hello" (5 bytes) and "hello" @1M "goodbye" are
# not: there the construction over the file's own bytes (blkhash.py) is
# nbdcopy's digest, and kimg's is that construction over qemu's
# 512-rounded view (the difference above).  md5/4 (4-byte blocks) has no
# kimg equivalent: --block-size takes multiples of 512.
: > v-empty.raw
printf hello > v-hello.raw
{ printf hello; head -c $((1048576 - 5)) /dev/zero; printf goodbye; } > v-hg.raw
$PY -c 'import sys; sys.stdout.buffer.write(b"12345678" * 512 * 256)' > v-pat.raw
for f in v-*.raw; do        # each padded with zeros to a multiple of 512: f.q
    cp "$f" "$f.q"
    truncate -s $((($(stat -c %s "$f") + 511) / 512 * 512)) "$f.q"
done
while read -r f alg bs want; do
    is "$($PY blkhash.py "$alg" "$bs" "$f")" "$want" "nbdcopy's vector $f $alg/$bs: the blkhash construction gives it"
    run "$KIMG" checksum -f raw -a "$alg" --block-size "$bs" "$f"
    if [ $(($(stat -c %s "$f") % 512)) = 0 ]; then
        is "$(cut -d' ' -f1 "$T/out")" "$want" "nbdcopy's vector $f $alg/$bs: kimg's digest is nbdcopy's"
    else
        is "$(cut -d' ' -f1 "$T/out")" "$($PY blkhash.py "$alg" "$bs" "$f.q")" \
           "nbdcopy's vector $f $alg/$bs: kimg's is over the 512-rounded view (documented)"
    fi
done <<'VECTORS'
v-empty.raw sha256 65536 af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc
v-hello.raw md5 65536 f741ac9ce55f5325906bb14e9c05d467
v-hello.raw sha256 65536 337355feb53a5309d5aba92796223c2c84ffab930e706c01fef573a2722545e6
v-hello.raw sha512 65536 eca04a593cf12ec4132993da709048e25a2f1be3526e132fb521ec9d41f023ec4018b3fd07b014a33e36bb5fa145b36991f431e62f9e1a93bebea6c9565682c1
v-hg.raw sha256 65536 61b8f3a8cea76e16eeff7ce27f1b7711c1f1e437f5038cec17773772a4bded28
v-pat.raw md5 65536 84fc21ac2f49ac283ff399378d834d1a
v-pat.raw sha256 65536 cbb388edd25e567b85f504c7b345497f9fb4f6bbf4e39768809184b9f9e678f8
v-pat.raw sha512 524288 379f7eb1628058c7abbc4c96941ac972074815ea9ef4aca95eefb2b4f9c29f64023fff8d966e9fddf08d07bdba548e75298917f10268fdf9ba636c2321a2214e
VECTORS
is "$($PY blkhash.py md5 4 v-hello.raw)" 8262896de34125dec173722c920e8bd0 \
   "nbdcopy's vector hello md5/4: the blkhash construction gives it"
done_testing
