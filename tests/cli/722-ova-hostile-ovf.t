#!/bin/bash
# Hostile descriptors and manifests in an OVA: digests that do not match
# (the disk's, the descriptor's: convert writes nothing), manifest lines
# for missing members, malformed or unknown-algorithm lines, a disk the
# manifest does not cover, two manifests; gzip-compressed and chunked
# disks; OVF documents with an external entity, a DTD, an entity bomb
# (refused without reading a file or opening a socket: checked under
# strace), more than 1 MiB, not well-formed, not an OVF Envelope; disks
# naming missing members, members outside the archive ('../x', 'a/b',
# URLs), unknown file references, sizes that disagree, no disk at all.
# Each: one "kimg:" line, a non-zero exit, no output file.
# make check: every archive through convert, info and checksum in a
# third of the cases each, and a third of the outside-member names
# (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
KIMG_TIMEOUT=30     # hostile input: each command under timeout, a hang fails on its own
. "$KIMG_SRC/tests/cli/ova.sh"

qemu-img create -q -f qcow2 d1.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x5a 1M 1M' d1.qcow2 > /dev/null
qemu-img create -q -f raw d2.raw 1M

# refused NAME [WHAT]: info (unless WHAT is "data": the refusal comes from
# reading data, which info does not), convert and checksum refuse NAME.ova
# (convert in both parts; info and checksum are sampled cases)
refused() {
    local name=$1 what=${2:-}
    if [ "$what" != data ] && sampled; then
        kimg info "$name.ova"
        err_line "$name: info"
    fi
    rm -f out.raw
    kimg convert -O raw "$name.ova" out.raw
    err_line "$name: convert"
    ok "$name: convert left no output file" test ! -e out.raw
    if sampled; then
        kimg checksum "$name.ova"
        err_line "$name: checksum"
    fi
}
# msg NAME REGEX: convert's message for NAME.ova matches
msg() { kimg convert -O raw "$1.ova" out.raw; like "$(< "$T/err")" "$2" "$1: the message says why"; }

# ---- manifests ----------------------------------------------------------
ovf_write vm.ovf vmware1 d1.qcow2 d2.raw
mf_write vm.mf SHA256 vm.ovf d1.qcow2 d2.raw
ova_tar good.ova ustar vm.ovf vm.mf d1.qcow2 d2.raw
kimg convert -O raw good.ova out.raw
is "$RC" 0 "the good archive converts"

# mf_flip IN NAME > OUT: IN with the first digit of NAME's digest changed
mf_flip() {
    awk -v n="$2" '{ p = index($0, "(" n ")= "); if (p) { i = p + length(n) + 4;
        c = substr($0, i, 1); $0 = substr($0, 1, i - 1) (c == "0" ? "1" : "0") substr($0, i + 1) } print }' "$1"
}
# the disk's digest differs (one hex digit changed)
mf_flip vm.mf d1.qcow2 > m
mkdir -p w && cp vm.ovf d1.qcow2 d2.raw w/ && cp m w/vm.mf
(cd w && ova_tar ../digest.ova ustar vm.ovf vm.mf d1.qcow2 d2.raw)
refused digest data
msg digest "member 'd1.qcow2' does not match its SHA256 digest"
kimg convert --disk 2 -O raw digest.ova out.raw
is "$RC" 0 "digest: disk 2 (its own digest right) still converts"
kimg info digest.ova
is "$RC" 0 "digest: info (metadata only, no digests read) still lists the disks"
# the descriptor's digest differs: every disk refused
(cd w && cp ../vm.mf vm.mf && echo '<!-- changed -->' >> vm.ovf &&
 ova_tar ../ovfdigest.ova ustar vm.ovf vm.mf d1.qcow2 d2.raw)
refused ovfdigest data
msg ovfdigest "member 'vm.ovf' does not match"
# the same with SHA1
mf_write m1 SHA1 vm.ovf d1.qcow2 d2.raw
mf_flip m1 d2.raw > m
(cd w && cp ../vm.ovf . && cp ../m vm.mf && ova_tar ../sha1.ova ustar vm.ovf vm.mf d1.qcow2 d2.raw)
kimg convert --disk 2 -O raw sha1.ova out.raw
err_line "sha1: a SHA1 mismatch refused"

# mkmf NAME LINES...: NAME.ova with a manifest of those lines
mkmf() {
    local name=$1; shift
    printf '%s\n' "$@" > w/vm.mf
    (cd w && cp ../vm.ovf ../d1.qcow2 ../d2.raw . && ova_tar "../$name.ova" ustar vm.ovf vm.mf d1.qcow2 d2.raw)
}
good_lines=("$(sed -n 1p vm.mf)" "$(sed -n 2p vm.mf)" "$(sed -n 3p vm.mf)")
mkmf missing "${good_lines[@]}" "SHA256(gone.vmdk)= $(printf '0%.0s' $(seq 64))"
refused missing
msg missing "names 'gone.vmdk', which is not in the archive"
mkmf badline "${good_lines[@]}" "this is not a manifest line"
refused badline
mkmf md5 "${good_lines[@]:0:2}" "MD5(d2.raw)= 0123456789abcdef0123456789abcdef"
refused md5
mkmf shorthex "${good_lines[@]:0:2}" "SHA256(d2.raw)= 0123"
refused shorthex
mkmf uncovered "${good_lines[@]:0:2}"
refused uncovered
msg uncovered "'d2.raw' has no digest in the manifest"
mkmf dup "${good_lines[@]}" "${good_lines[2]}"
refused dup
(cd w && printf '%s\n' "${good_lines[@]}" > vm.mf && cp vm.mf other.mf &&
 ova_tar ../twomf.ova ustar vm.ovf vm.mf other.mf d1.qcow2 d2.raw)
refused twomf
# CRLF line ends and no manifest at all are fine
printf '%s\r\n' "${good_lines[@]}" > w/vm.mf
(cd w && ova_tar ../crlf.ova ustar vm.ovf vm.mf d1.qcow2 d2.raw)
kimg convert -O raw crlf.ova out.raw
is "$RC" 0 "a manifest with CRLF line ends"
ova_tar nomf.ova ustar vm.ovf d1.qcow2 d2.raw
kimg convert -O raw nomf.ova out.raw
is "$RC" 0 "no manifest: allowed"

# ---- descriptors --------------------------------------------------------
# mkovf NAME: NAME.ova from the descriptor in bad.ovf (named vm.ovf)
mkovf() {
    (cd w && rm -f vm.mf && cp ../bad.ovf vm.ovf && cp ../d1.qcow2 ../d2.raw . &&
     ova_tar "../$1.ova" ustar vm.ovf d1.qcow2 d2.raw)
}
gzip -c d1.qcow2 > d1.qcow2.gz
OVF_EXTRA_FILE_ATTRS='ovf:compression="gzip"' ovf_write bad.ovf vmware1 d1.qcow2
(cd w && cp ../bad.ovf vm.ovf && cp ../d1.qcow2.gz d1.qcow2 && ova_tar ../gzip.ova ustar vm.ovf d1.qcow2)
refused gzip
msg gzip "compressed .*gunzip"
OVF_EXTRA_FILE_ATTRS='ovf:chunkSize="1048576"' ovf_write bad.ovf vmware1 d1.qcow2; mkovf chunked
refused chunked

# entities and DTDs: refused before anything is loaded
echo "secret" > secret.txt
ovf_write vm.ovf vmware1 d1.qcow2
{ echo '<?xml version="1.0"?>'
  echo "<!DOCTYPE Envelope [ <!ENTITY xxe SYSTEM \"file://$T/secret.txt\"> ]>"
  sed 1d vm.ovf | sed 's|<Info>List of the virtual disks|<Info>\&xxe; List of the virtual disks|'; } > bad.ovf
mkovf xxe
refused xxe
{ echo '<?xml version="1.0"?>'
  echo '<!DOCTYPE Envelope SYSTEM "http://127.0.0.1:9/ovf.dtd">'
  sed 1d vm.ovf; } > bad.ovf
mkovf dtd
refused dtd
{ echo '<?xml version="1.0"?>'
  echo '<!DOCTYPE Envelope [ <!ENTITY a "aaaaaaaaaa"> <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
  echo '  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"> <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"> ]>'
  sed 1d vm.ovf | sed 's|<Info>List of the virtual disks|<Info>\&d;\&d;\&d;|'; } > bad.ovf
mkovf bomb
refused bomb
msg xxe "DOCTYPE"
if command -v strace > /dev/null; then
    for n in xxe dtd; do
        strace -f -qq -e trace=open,openat,connect,socket -o trace.txt "$KIMG" info "$n.ova" > /dev/null 2>&1
        ok "$n: no file named by the document opened, no socket" \
            bash -c '! grep -E "secret\.txt|connect\(|socket\(" trace.txt'
    done
else
    skip "xxe: no file opened" "strace not installed"
    skip "dtd: no socket" "strace not installed"
fi

# larger than 1 MiB (a comment pads it), not well-formed, not an Envelope
{ sed '$d' vm.ovf; echo "<!-- $(head -c 1100000 /dev/zero | tr '\0' x) -->"; tail -1 vm.ovf; } > bad.ovf
mkovf huge
refused huge
head -c 600 vm.ovf > bad.ovf; mkovf truncated
refused truncated
sed 's|envelope/1|envelope/9|g' vm.ovf > bad.ovf; mkovf wrongns
refused wrongns
echo '<?xml version="1.0"?><html/>' > bad.ovf; mkovf html
refused html
# a declared encoding whose converter fails: libxml2's own error lines
# stay silent, one kimg line only (found by fuzz_ova)
{ echo '<?xml version="1.0" encoding="UTF-7"?>'; sed 1d vm.ovf | head -c 300; printf '\xb7\xb7\xb7\n'; } > bad.ovf
mkovf utf7
refused utf7

# disks naming what the archive does not hold, or what lies outside it
for h in gone.qcow2 ../d1.qcow2 sub/d1.qcow2 http://127.0.0.1:9/d1.qcow2 file:///etc/passwd /etc/passwd; do
    sampled || continue
    sed "s|ovf:href=\"d1.qcow2\"|ovf:href=\"$h\"|" vm.ovf > bad.ovf
    n=href-$(echo "$h" | tr -c 'a-z0-9\n' _)
    mkovf "$n"
    refused "$n"
done
sed 's|ovf:fileRef="file1"|ovf:fileRef="nosuchfile"|' vm.ovf > bad.ovf; mkovf fileref
refused fileref
sed 's|ovf:size="[0-9]*"|ovf:size="12345"|' vm.ovf > bad.ovf; mkovf size
refused size
sed 's|ovf:size="[0-9]*"|ovf:size="-5"|' vm.ovf > bad.ovf; mkovf negsize
refused negsize
grep -v '<Disk ' vm.ovf > bad.ovf; mkovf nodisk
refused nodisk
sed 's|ovf:href="d1.qcow2"|ovf:href="vm.ovf"|' vm.ovf > bad.ovf; mkovf self
refused self
# a disk member that is itself an OVA is read as raw bytes, not opened
# as an archive again (no nesting)
cp good.ova inner.raw
ovf_write vm.ovf vmware1 inner.raw
ova_tar nested.ova ustar vm.ovf inner.raw
kimg info --output=json nested.ova
is "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["format"])' "$T/out")" raw \
    "an OVA inside an OVA is a raw disk, not opened as an archive"

done_testing
