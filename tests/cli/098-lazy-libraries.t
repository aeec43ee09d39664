#!/bin/bash
# 098-lazy-libraries.t — libnbd and libxml2 are loaded on first use
# (lazylib/): not linked into kimg, libkimg.so or the nbdkit plugin, not
# loaded by a command on local images, and loaded by the first NBD name,
# OVF descriptor or domain XML.  A library that cannot be loaded gives one
# clear error line and a non-zero exit, only where it is needed.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/ova.sh"
require ldd

lazy='libnbd\.so|libxml2\.so|libgnutls|libicuuc|libstdc\+\+'
for bin in "$KIMG" "$KIMG_BUILD/libkimg.so" "$KIMG_BUILD/plugins/nbdkit-kimg-plugin.so"; do
    [ -e "$bin" ] || { skip "$(basename "$bin") links neither" "not built"; continue; }
    ok "$(basename "$bin") links neither libnbd nor libxml2" \
        sh -c "! ldd '$bin' | grep -Eq '$lazy'"
done

qemu-img create -q -f qcow2 a.qcow2 1M
qemu-img create -q -f raw r.raw 1M
loaded() { grep -E 'calling init: .*('"$lazy"')' "$T/err" | sed 's/.*init: //'; }
LD_DEBUG=libs kimg info a.qcow2
is "$RC" 0 "info of a local qcow2 image: exit 0"
is "$(loaded)" "" "... loads neither"
LD_DEBUG=libs kimg convert -O qcow2 a.qcow2 c.qcow2
is "$(loaded)" "" "convert of local images loads neither"

# the first NBD name loads both (libxml2 splits the URI)
LD_DEBUG=libs kimg info nbd://127.0.0.1:1/x
is "$RC" 1 "an NBD name (nothing listening): exit 1"
like "$(loaded)" "libxml2\.so" "... loads libxml2"
like "$(loaded)" "libnbd\.so" "... and libnbd"

# The libraries made unloadable: a file by each soname, first in the path.
mkdir bogus
: > bogus/libnbd.so.0
: > bogus/libxml2.so.2
nolib() { LD_LIBRARY_PATH=$T/bogus kimg "$@"; }
nolib info a.qcow2
is "$RC" 0 "unloadable libraries: info of a qcow2 image still works"
nolib convert -O raw a.qcow2 r2.raw
is "$RC" 0 "... and convert"
nolib info nbd:127.0.0.1:1
is "$RC" 1 "an NBD name without libnbd: exit 1"
is "$(cat err)" "kimg: Could not open 'nbd:127.0.0.1:1': NBD support needs libnbd.so.0, which could not be loaded: $T/bogus/libnbd.so.0: file too short" \
    "... one line: what needs which library and why it did not load"
nolib info nbd://127.0.0.1:1/x
is "$RC" 1 "an NBD URI without libxml2: exit 1"
like "$(cat err)" "^kimg: Could not open 'nbd://127.0.0.1:1/x': XML and URI parsing needs libxml2.so.2, which could not be loaded: .*file too short\$" \
    "... one line naming libxml2"

disks_made
ovf_write x.ovf vmware1 d2.raw
ova_tar x.ova ustar x.ovf d2.raw
kimg info x.ova
is "$RC" 0 "an OVA with libxml2: info works"
nolib info x.ova
is "$RC" 1 "an OVA without libxml2: exit 1"
like "$(cat err)" "XML and URI parsing needs libxml2.so.2, which could not be loaded" \
    "... the message names libxml2"
is "$(wc -l < err)" 1 "... on one line"

cat > dom.xml <<'XML'
<domain type='kvm'><name>d</name><memory>1024</memory><os><type>hvm</type></os>
<devices><disk type='file' device='disk'><source file='DISK'/><target dev='vda'/></disk></devices></domain>
XML
sed -i "s|DISK|$T/a.qcow2|" dom.xml
nolib clone --original-xml dom.xml --auto-clone --print-xml
is "$RC" 1 "clone without libxml2: exit 1"
like "$(cat err)" "XML and URI parsing needs libxml2.so.2" "... the message names libxml2"
is "$(wc -l < err)" 1 "... on one line"
kimg clone --original-xml dom.xml --auto-clone --print-xml
is "$RC" 0 "clone with libxml2: --print-xml works"
done_testing
