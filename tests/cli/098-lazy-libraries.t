#!/bin/bash
# 098-lazy-libraries.t — libnbd, libxml2, libcrypto and nettle are loaded
# on first use (lazylib/): not linked into kimg, libkimg.so or the nbdkit
# plugin, not loaded by a command on local unencrypted images, and loaded
# by the first NBD name, OVF descriptor or domain XML (libnbd, libxml2),
# encrypted image opened with its key or created, secret with keyid=,
# checksum or OVA manifest check (libcrypto; nettle with every LUKS
# cipher).  A library that cannot be loaded gives one clear error line and
# a non-zero exit, only where it is needed.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/ova.sh"
require ldd

lazy='libnbd\.so|libxml2\.so|libgnutls|libicuuc|libcrypto\.so|libnettle\.so'
for bin in "$KIMG" "$KIMG_BUILD/libkimg.so" "$KIMG_BUILD/plugins/nbdkit-kimg-plugin.so"; do
    [ -e "$bin" ] || { skip "$(basename "$bin") links none" "not built"; continue; }
    ok "$(basename "$bin") links none of libnbd, libxml2, libcrypto, nettle" \
        sh -c "! ldd '$bin' | grep -Eq '$lazy'"
done

qemu-img create -q -f qcow2 a.qcow2 1M
qemu-img create -q -f raw r.raw 1M
loaded() { grep -E 'calling init: .*('"$lazy"')' "$T/err" | sed 's/.*init: //'; }
LD_DEBUG=libs kimg info a.qcow2
is "$RC" 0 "info of a local qcow2 image: exit 0"
is "$(loaded)" "" "... loads none of them"
LD_DEBUG=libs kimg convert -O qcow2 a.qcow2 c.qcow2
is "$(loaded)" "" "convert of local images loads none"

# libcrypto and nettle: a LUKS image (and a Serpent one: nettle's cipher),
# a LUKS qcow2, a legacy AES qcow2, all with the key "pw"
mk_enc() { qemu-img create -q "$@" || fail "qemu-img create $*"; }
mk_enc -f luks --object secret,id=s,data=pw -o key-secret=s,iter-time=10 l.luks 1M
mk_enc -f luks --object secret,id=s,data=pw -o key-secret=s,iter-time=10,cipher-alg=serpent-256 \
    sp.luks 1M
mk_enc -f qcow2 --object secret,id=s,data=pw \
    -o encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10 lq.qcow2 1M
mk_enc -f qcow2 --object secret,id=s,data=pw -o encrypt.format=aes,encrypt.key-secret=s aes.qcow2 1M
key=(--object secret,id=s,data=pw)
LD_DEBUG=libs kimg info l.luks
is "$RC:$(loaded)" "0:" "info of a LUKS image (no key): exit 0, loads none"
LD_DEBUG=libs kimg convert "${key[@]}" --image-opts driver=luks,key-secret=s,file.filename=l.luks \
    -O raw l.raw
is "$RC" 0 "convert of a LUKS image with its key: exit 0"
like "$(loaded)" "libcrypto\.so" "... loads libcrypto"
like "$(loaded)" "libnettle\.so" "... and nettle"
LD_DEBUG=libs kimg checksum r.raw
is "$RC" 0 "checksum: exit 0"
like "$(loaded)" "libcrypto\.so" "... loads libcrypto"
is "$(loaded | grep -c nettle)" 0 "... not nettle"

# the first NBD name loads both (libxml2 splits the URI)
LD_DEBUG=libs kimg info nbd://127.0.0.1:1/x
is "$RC" 1 "an NBD name (nothing listening): exit 1"
like "$(loaded)" "libxml2\.so" "... loads libxml2"
like "$(loaded)" "libnbd\.so" "... and libnbd"

# The libraries made unloadable: a file by each soname, first in the path.
mkdir bogus
: > bogus/libnbd.so.0
: > bogus/libxml2.so.2
: > bogus/libcrypto.so.3
: > bogus/libnettle.so.8
nolib() { LD_LIBRARY_PATH=$T/bogus kimg "$@"; }
nolib info a.qcow2
is "$RC" 0 "unloadable libraries: info of a qcow2 image still works"
nolib convert -O raw a.qcow2 r2.raw
is "$RC" 0 "... and convert"
nolib info l.luks
is "$RC" 0 "... and info of a LUKS image (no key)"
nolib info nbd:127.0.0.1:1
is "$RC" 1 "an NBD name without libnbd: exit 1"
is "$(< err)" "kimg: Could not open 'nbd:127.0.0.1:1': NBD support needs libnbd.so.0, which could not be loaded: $T/bogus/libnbd.so.0: file too short" \
    "... one line: what needs which library and why it did not load"
nolib info nbd://127.0.0.1:1/x
is "$RC" 1 "an NBD URI without libxml2: exit 1"
like "$(< err)" "^kimg: Could not open 'nbd://127.0.0.1:1/x': XML and URI parsing needs libxml2.so.2, which could not be loaded: .*file too short\$" \
    "... one line naming libxml2"

disks_made
ovf_write x.ovf vmware1 d2.raw
ova_tar x.ova ustar x.ovf d2.raw
kimg info x.ova
is "$RC" 0 "an OVA with libxml2: info works"
nolib info x.ova
is "$RC" 1 "an OVA without libxml2: exit 1"
like "$(< err)" "XML and URI parsing needs libxml2.so.2, which could not be loaded" \
    "... the message names libxml2"
is "$(wc -l < err)" 1 "... on one line"

cat > dom.xml <<'XML'
<domain type='kvm'><name>d</name><memory>1024</memory><os><type>hvm</type></os>
<devices><disk type='file' device='disk'><source file='DISK'/><target dev='vda'/></disk></devices></domain>
XML
sed -i "s|DISK|$T/a.qcow2|" dom.xml
nolib clone --original-xml dom.xml --auto-clone --print-xml
is "$RC" 1 "clone without libxml2: exit 1"
like "$(< err)" "XML and URI parsing needs libxml2.so.2" "... the message names libxml2"
is "$(wc -l < err)" 1 "... on one line"
kimg clone --original-xml dom.xml --auto-clone --print-xml
is "$RC" 0 "clone with libxml2: --print-xml works"

# without libcrypto (the others there): each use fails with one line
# naming it, exit 1
mkdir bogus-crypto
: > bogus-crypto/libcrypto.so.3
nocrypto() { LD_LIBRARY_PATH=$T/bogus-crypto kimg "$@"; }
# one_line NAME REGEX: exit 1 and $T/err one line matching REGEX
one_line() {
    is "$RC" 1 "$1: exit 1"
    like "$(< err)" "$2" "... the message names what needs which library"
    is "$(wc -l < err)" 1 "... on one line"
}
why="needs libcrypto\.so\.3, which could not be loaded: $T/bogus-crypto/libcrypto\.so\.3: file too short\$"
nocrypto convert "${key[@]}" --image-opts driver=luks,key-secret=s,file.filename=l.luks -O raw l2.raw
one_line "a LUKS image with its key, no libcrypto" \
    "^kimg: Could not open 'driver=luks,key-secret=s,file\.filename=l\.luks': LUKS encryption $why"
nocrypto compare "${key[@]}" --image-opts driver=qcow2,encrypt.key-secret=s,file.filename=lq.qcow2 \
    driver=qcow2,encrypt.key-secret=s,file.filename=lq.qcow2
is "$RC" 2 "compare of a LUKS qcow2 image, no libcrypto: exit 2 (compare's error status)"
like "$(< err)" "^kimg: Could not open '[^']*lq\.qcow2': LUKS encryption $why" "... naming libcrypto"
is "$(wc -l < err)" 1 "... on one line"
nocrypto convert "${key[@]}" --image-opts driver=qcow2,encrypt.key-secret=s,file.filename=aes.qcow2 \
    -O raw aes.raw
one_line "a legacy AES qcow2 image with its key, no libcrypto" "qcow2 AES encryption $why"
nocrypto create -f luks "${key[@]}" -o key-secret=s,iter-time=10 n.luks 1M
one_line "create -f luks, no libcrypto" "^kimg: n\.luks: LUKS encryption $why"
nocrypto checksum r.raw
one_line "checksum, no libcrypto" "^kimg: Computing a checksum $why"
K32=$(printf 'K%.0s' $(seq 32) | base64 -w0) IV=$(printf 'I%.0s' $(seq 16) | base64 -w0)
nocrypto info --object "secret,id=k,data=$K32,format=base64" \
    --object "secret,id=s0,data=abcdabcdabcdabcd,keyid=k,iv=$IV" a.qcow2
one_line "a secret with keyid=, no libcrypto" "^kimg: Decrypting a secret \(keyid=\) $why"
mf_write m.mf SHA256 x.ovf d2.raw
ova_tar m.ova ustar x.ovf m.mf d2.raw
kimg convert -O raw m.ova m.raw
is "$RC" 0 "convert of an OVA with a manifest: exit 0"
nocrypto info m.ova
is "$RC" 0 "... info without libcrypto: exit 0 (the manifest is checked on reading)"
nocrypto convert -O raw m.ova m2.raw
one_line "convert of an OVA with a manifest, no libcrypto" "OVA manifest verification $why"

# without nettle (libcrypto there): every LUKS cipher takes nettle's description
mkdir bogus-nettle
: > bogus-nettle/libnettle.so.8
LD_LIBRARY_PATH=$T/bogus-nettle kimg convert "${key[@]}" \
    --image-opts driver=luks,key-secret=s,file.filename=sp.luks -O raw sp.raw
one_line "a Serpent LUKS image, no nettle" \
    "^kimg: Could not open '[^']*sp\.luks': LUKS encryption needs libnettle\.so\.8, which could not be loaded: $T/bogus-nettle/libnettle\.so\.8: file too short\$"
LD_LIBRARY_PATH=$T/bogus-nettle kimg checksum r.raw
is "$RC" 0 "checksum without nettle: exit 0"
kimg convert "${key[@]}" --image-opts driver=luks,key-secret=s,file.filename=sp.luks -O raw sp.raw
is "$RC" 0 "a Serpent LUKS image with both: convert works"
done_testing
