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
done_testing
