#!/bin/bash
# 400-clone-print-xml.t — `kimg clone --print-xml` is a dry run: the new
# domain XML on stdout (valid for libvirt, nothing else there), no file
# created, the sources untouched, and what a clone changes changed.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture web01
files_in vm > before.list
snapshot_sources vm
kimg clone --original-xml vm/web01.xml --auto-clone --print-xml
is "$RC" 0 "exit 0"
is "$(< err)" "" "nothing on stderr"
cp out new.xml
validate new.xml "the new XML validates (virt-xml-validate)"
files_in vm > after.list
is_file after.list before.list "no file created"
ok "sources unchanged" sources_unchanged vm

is "$(xml_get new.xml name)" "web01-clone" "name: virt-clone's auto name"
uuid=$(xml_get new.xml uuid)
like "$uuid" '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' "a new UUID"
isnt "$uuid" "4dea22b3-1d52-d8f3-2516-782e98ab3fa0" "the UUID differs from the original's"
is "$(xml_get new.xml "sysinfo/system/entry[@name='uuid']")" "$uuid" "the sysinfo uuid follows"
is "$(xml_get new.xml ./@id)" "" "id= dropped"
is "$(xml_get new.xml title)" "" "<title> dropped"
is "$(disk_get new.xml vda source)" "$T/vm/web01-clone.qcow2" \
   "vda: the new name replaces a base name equal to the domain's"
is "$(disk_get new.xml vdb source)" "$T/vm/data-clone.img" \
   "vdb: -clone appended, extension kept"
is "$(disk_get new.xml sda source)" "$T/vm/install.iso" \
   "readonly cdrom shared"
is "$(xml_get new.xml os/nvram)" "$T/vm/nvram/web01-clone_VARS.fd" "nvram re-pointed"

# untouched parts: everything but the expected lines is as it was
$PY - vm/web01.xml new.xml <<'PYEOF' > diff.txt
import sys, re
def norm(path):
    # libxml2 writes attributes with double quotes: compare the text otherwise
    t = open(path).read()
    t = re.sub(r"(\w[\w:]*)='([^']*)'", r'\1="\2"', t)
    return t.splitlines()
a, b = norm(sys.argv[1]), norm(sys.argv[2])
import difflib
for l in difflib.unified_diff(a, b, lineterm="", n=0):
    if l.startswith(("---", "+++", "@@")):
        continue
    print(l)
PYEOF
n_kept=$(grep -c -- '^-' diff.txt)
for kept in '<libosinfo:os id="http://debian.org/debian/12"/>' \
            '<kimgtest:owner xmlns:kimgtest="http://example.com/kimg-test">team-web</kimgtest:owner>' \
            '<qemu:arg value="-no-user-config"/>' '<!-- system disk -->' \
            'Second line &amp; an ampersand.</description>' \
            'xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"'; do
    ok "kept: $kept" grep -qF -- "$kept" new.xml
done
like "$(head -1 new.xml)" '^<!-- web01: a UEFI' "the comment before the root kept"
# every removed line is one of the expected changes
unexpected=$(grep -- '^-' diff.txt | grep -v -e '<domain ' -e '<name>' -e '<uuid>' -e '<title>' \
    -e "entry name=\"uuid\"" -e '<nvram' -e '<source file=' -e '<mac address' -e '<target dev="vnet' \
    -e '<source mode="bind"' -e '<graphics ' -e '<backingStore' -e '<format type' -e '</backingStore>' || true)
is "$unexpected" "" "only expected lines changed ($n_kept lines)"
done_testing
