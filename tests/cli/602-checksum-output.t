#!/bin/bash
# checksum's output: sha256sum's "DIGEST  FILE" lines in argument order
# (names with a newline or backslash escaped exactly as sha256sum does, so
# `sha256sum -c` reads a --raw-digest list of raw images), JSON, -p
# progress on stderr with stdout unchanged, --help, and exit 1 with the
# other files still digested when one fails.
. "$(dirname "$0")/lib.sh"
truncate -s 3M a.raw
qemu-io -f raw -c 'write -P 0x61 64k 200k' a.raw > /dev/null
qemu-img convert -f raw -O qcow2 a.raw a.qcow2
yes hello | head -c 4096 > h.raw   # raw sizes count in 512-byte sectors
cp a.raw 'odd
name\x.raw'

kimg checksum --raw-digest -f raw a.raw h.raw 'odd
name\x.raw'
is "$RC" 0 "three raw files: exit 0"
sha256sum a.raw h.raw 'odd
name\x.raw' > want
is_file "$T/out" want "--raw-digest lines byte-identical to sha256sum's (escaped name too)"
cp "$T/out" list
run sha256sum -c list
is "$RC" 0 "sha256sum -c accepts kimg's list"

kimg checksum a.raw a.qcow2
is "$RC" 0 "two files: exit 0"
is "$(wc -l < "$T/out")" 2 "one line per file"
d1=$(sed -n 1p "$T/out" | cut -d' ' -f1); d2=$(sed -n 2p "$T/out" | cut -d' ' -f1)
is "$(sed -n 2p "$T/out")" "$d1  a.qcow2" "second line names the second file, same digest"

# JSON: an array, one object per file
kimg checksum --output=json a.raw a.qcow2
is "$RC" 0 "json: exit 0"
got=$($PY -c '
import json, sys
v = json.load(open(sys.argv[1]))
for o in v:
    print(o["filename"], o["format"], o["virtual-size"], o["algorithm"],
          o["construction"], o["block-size"], o["digest"])' "$T/out")
is "$got" "a.raw raw 3145728 sha256 blkhash 65536 $d1
a.qcow2 qcow2 3145728 sha256 blkhash 65536 $d1" "json: filename, format, size, algorithm, construction, block size, digest"
kimg checksum --output=json --raw-digest -a sha512 h.raw
got=$($PY -c '
import json, sys
o = json.load(open(sys.argv[1]))[0]
print(o["algorithm"], o["construction"], "block-size" in o, o["digest"])' "$T/out")
is "$got" "sha512 raw False $(sha512sum < h.raw | cut -d' ' -f1)" "json --raw-digest: construction raw, no block size"
kimg checksum --output=yaml a.raw
is "$RC" 1 "--output=yaml refused"

# -p: qemu-img's progress format, on stderr; stdout is only the digest
kimg checksum -p a.qcow2
is "$RC" 0 "-p: exit 0"
is "$(< "$T/out")" "$d1  a.qcow2" "-p: stdout carries only the digest line"
like "$(tr '\r' '\n' < "$T/err" | grep -v '^$' | tail -1)" '^    \(100\.00/100%\)$' "-p: ends at 100% on stderr"
like "$(head -c 20 "$T/err")" '^    \(0\.00/100%\)' "-p: starts at 0% on stderr"

kimg checksum --help
is "$RC" 0 "--help: exit 0"
like "$(< "$T/out")" 'usage: kimg checksum' "--help: synopsis"
like "$(< "$T/out")" 'progress, on stderr' "--help: says progress goes to stderr"
run "$KIMG" --help
like "$(< "$T/out")" 'checksum \[-f fmt\]' "kimg --help lists checksum"

# one bad file among good ones: the others are still printed, exit 1
kimg checksum a.raw nosuch.qcow2 a.qcow2
is "$RC" 1 "a missing file: exit 1"
is "$(< "$T/out")" "$d1  a.raw
$d1  a.qcow2" "the other files still digested"
is "$(wc -l < "$T/err")" 1 "one error line"
like "$(< "$T/err")" "^kimg: Could not open 'nosuch\.qcow2': " "naming the file"

# -U and --untrusted are accepted on plain images
kimg checksum -U --untrusted a.qcow2
is "$(< "$T/out")" "$d1  a.qcow2" "-U --untrusted: same digest"
# the image is opened read-only: its bytes never change
before=$(sha a.qcow2)
kimg checksum a.qcow2
is "$(sha a.qcow2)" "$before" "the image file is unchanged"
done_testing
