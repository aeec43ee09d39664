#!/bin/bash
# checksum refuses what it cannot do, each time with one "kimg: " line on
# stderr, exit 1 and no digest on stdout: unknown or unusable digest
# algorithms, bad --block-size / --threads, and hostile or broken images
# (absurd L1 size, an unaligned L2 entry, garbage in a compressed cluster,
# a backing loop, a json: backing name, a chain under --untrusted).  Data
# clusters past the end of the file read as zeros, as in qemu: there the
# digest is that of qemu-img's raw conversion.
. "$(dirname "$0")/lib.sh"
fixtures
cp "$FX/v3.qcow2" v3.qcow2

no_digest() {   # NAME: failed cleanly, nothing on stdout
    err_line "$1"
    is "$(< "$T/out")" "" "$1: no digest printed"
}

for a in nosuch-digest null SHA-999 ""; do
    kimg checksum -a "$a" v3.qcow2
    no_digest "-a '$a'"
done
kimg checksum -a nosuch-digest v3.qcow2
like "$(< "$T/err")" "nosuch-digest" "the unknown algorithm is named"
for b in 1000 0 128M 64k1 abc -512; do
    kimg checksum --block-size "$b" v3.qcow2
    no_digest "--block-size $b"
done
for t in 0 300 x 2.5 -1; do
    kimg checksum --threads "$t" v3.qcow2
    no_digest "--threads $t"
done
kimg checksum
is "$RC" 1 "no file name: exit 1"
kimg checksum --bogus v3.qcow2
is "$RC" 1 "unknown option: exit 1"
kimg checksum -f bogus v3.qcow2
no_digest "-f bogus"
kimg checksum -f qcow2 "$FX/holes.raw"
no_digest "-f qcow2 on a raw file"

# hostile headers and tables
cp v3.qcow2 l1size.qcow2
put_be 4 l1size.qcow2 36 $((0x7fffffff))
cp v3.qcow2 unaligned.qcow2
$Q2 set-l2 unaligned.qcow2 0 $((0x8000000000000000 | ($($Q2 host v3.qcow2 0) + 512)))
cp v3.qcow2 beyond.qcow2
$Q2 set-l2 beyond.qcow2 0 $((0x8000000000000000 | (1 << 40)))
cp "$FX/zlib.qcow2" garbage.qcow2
poke garbage.qcow2 "$($Q2 host garbage.qcow2 0)" 676172626167652067617262616765676172626167652067617262616765
cp v3.qcow2 truncated.qcow2
truncate -s $(($(stat -c %s v3.qcow2) - 65536)) truncated.qcow2
qemu-img create -q -f qcow2 loop-a.qcow2 1M
qemu-img create -q -f qcow2 -b loop-a.qcow2 -F qcow2 loop-b.qcow2
qemu-img rebase -u -f qcow2 -b loop-b.qcow2 -F qcow2 loop-a.qcow2
qemu-img create -q -f qcow2 -u -b 'json:{"driver":"file","filename":"/etc/passwd"}' -F raw jsonback.qcow2 1M
for img in beyond.qcow2 truncated.qcow2; do
    qemu-img convert -O raw "$img" "$img.raw"
    kimg checksum --raw-digest "$img"
    is "$(< "$T/out")" "$(sha256sum < "$img.raw" | cut -d' ' -f1)  $img" \
        "$img: clusters past the end read as zeros, as qemu-img reads them"
done
for img in l1size.qcow2 unaligned.qcow2 garbage.qcow2 loop-a.qcow2 jsonback.qcow2; do
    for t in 1 4; do
        kimg checksum --threads $t "$img"
        no_digest "$img ($t threads)"
        like "$(< "$T/err")" "^kimg: (Could not open '$img'|$img): " "$img ($t threads): the message names the file"
    done
    kimg checksum --raw-digest "$img"
    no_digest "$img (--raw-digest)"
done
kimg checksum --untrusted "$FX/chain-top.qcow2"
no_digest "--untrusted on an overlay"
# a bad image among good ones: the others still get their digest
kimg checksum v3.qcow2 garbage.qcow2 v3.qcow2
is "$RC" 1 "good, bad, good: exit 1"
is "$(wc -l < "$T/out")" 2 "good, bad, good: two digests printed"
is "$(wc -l < "$T/err")" 1 "good, bad, good: one error line"
done_testing
