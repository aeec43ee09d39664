#!/bin/bash
# 403-clone-linked.t — --linked: each cloned disk becomes a small qcow2
# overlay of its original (backing format recorded; a bare name beside the
# original, an absolute path from another folder), reads the same as the
# original, and the XML says qcow2 with a matching <backingStore>.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

info_key() { qemu-img info --output=json "$1" | $PY -c "import json,sys; print(json.load(sys.stdin).get('$2', 'none'))"; }

clone_fixture web01
snapshot_sources vm
kimg clone --original-xml vm/web01.xml -n web02 --auto-clone --linked -q
is "$RC" 0 "exit 0"
cp out new.xml
validate new.xml "the new XML validates"
ok "sources unchanged" sources_unchanged vm
for pair in vda:web01.qcow2:web02.qcow2:qcow2 vdb:data.img:data-clone.img:raw vdc:logs.qcow2:logs-clone.qcow2:qcow2; do
    IFS=: read -r tgt src dst sfmt <<< "$pair"
    is "$(info_key "vm/$dst" format)" qcow2 "$tgt: $dst is qcow2"
    is "$(info_key "vm/$dst" backing-filename)" "$src" "$tgt: backing file '$src' (same folder: bare name)"
    is "$(info_key "vm/$dst" backing-filename-format)" "$sfmt" "$tgt: backing format $sfmt recorded"
    ok "$tgt: reads as the original (qemu-img compare)" qemu_oracle_compare "vm/$src" "vm/$dst"
    ok "$tgt: qemu-img check" check_clean "vm/$dst"
    is "$(disk_get new.xml "$tgt" format)" qcow2 "$tgt: XML driver type qcow2"
    ok "$tgt: the overlay is small ($(du -k "vm/$dst" | cut -f1)K)" test "$(du -k "vm/$dst" | cut -f1)" -le 1024
done
is "$(disk_get new.xml vdc backing)" "$T/vm/logs.qcow2" "vdc: <backingStore> describes the original..."
is "$($PY -c "
import xml.etree.ElementTree as ET
r = ET.parse('new.xml').getroot()
for d in r.iter('disk'):
    if d.find('target').get('dev') == 'vdc':
        b = d.find('backingStore/backingStore/source')
        print(b.get('file'))")" "$T/vm/base.qcow2" "...then the original's own backing file"
is "$(disk_get new.xml vda backing)" "" "vda: no <backingStore> added where there was none"

# into another folder: the backing name is absolute, and works from anywhere
mkdir -p elsewhere
kimg clone --original-xml vm/web01.xml -n web03 -f elsewhere/a.qcow2 -f elsewhere/b.qcow2 \
     -f elsewhere/c.qcow2 --nvram elsewhere/VARS.fd --linked -q
is "$RC" 0 "linked clone into another folder"
is "$(info_key elsewhere/a.qcow2 backing-filename)" "$T/vm/web01.qcow2" "an absolute backing path from another folder"
ok "reads as the original from another working directory" \
   bash -c "cd / && qemu-img compare -q '$T/vm/logs.qcow2' '$T/elsewhere/c.qcow2'"
ok "the nvram is copied, not linked" cmp -s vm/nvram/web01_VARS.fd elsewhere/VARS.fd

kimg clone --original-xml vm/web01.xml -n web04 --auto-clone --linked --nonsparse
err_line "--linked with --nonsparse"
kimg clone --original-xml vm/web01.xml -n web04 --auto-clone --linked --reflink
err_line "--linked with --reflink"
done_testing
