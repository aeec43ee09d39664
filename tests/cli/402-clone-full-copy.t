#!/bin/bash
# 402-clone-full-copy.t — a full clone: every cloneable disk copied in its
# own format (qemu-img compare / check), holes stay holes, an overlay
# flattened into a standalone image, nvram copied, shared disks untouched,
# the sources never modified, the XML valid and pointing at the copies.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture web01
snapshot_sources vm
kimg clone --original-xml vm/web01.xml -n web02 --auto-clone -q
is "$RC" 0 "exit 0"
is "$(< err)" "" "-q: nothing on stderr"
cp out new.xml
validate new.xml "the new XML validates"
ok "sources unchanged" sources_unchanged vm

for pair in vda:web01.qcow2:web02.qcow2 vdb:data.img:data-clone.img vdc:logs.qcow2:logs-clone.qcow2; do
    IFS=: read -r tgt src dst <<< "$pair"
    is "$(disk_get new.xml "$tgt" source)" "$T/vm/$dst" "$tgt: XML points at $dst"
    ok "$tgt: qemu-img compare $src $dst" qemu_oracle_compare "vm/$src" "vm/$dst"
    fmt=$(qemu-img info --output=json "vm/$src" | $PY -c 'import json,sys; print(json.load(sys.stdin)["format"])')
    is "$(qemu-img info --output=json "vm/$dst" | $PY -c 'import json,sys; print(json.load(sys.stdin)["format"])')" \
       "$fmt" "$tgt: same format ($fmt)"
done
ok "web02.qcow2: qemu-img check" check_clean vm/web02.qcow2
ok "logs-clone.qcow2: qemu-img check" check_clean vm/logs-clone.qcow2
is "$(qemu-img info --output=json vm/logs-clone.qcow2 | $PY -c 'import json,sys; print(json.load(sys.stdin).get("backing-filename", "none"))')" \
   none "the overlay is flattened (no backing file)"
is "$(disk_get new.xml vdc backing)" "" "the flattened disk's <backingStore> is gone"

# sparse: the raw copy allocates about what the original does, not 32M
src_k=$(du -k vm/data.img | cut -f1); dst_k=$(du -k vm/data-clone.img | cut -f1)
ok "data-clone.img stays sparse (${dst_k}K allocated, original ${src_k}K, 32M virtual)" \
   test "$dst_k" -le $((src_k + 64))
src_k=$(du -k vm/web01.qcow2 | cut -f1); dst_k=$(du -k vm/web02.qcow2 | cut -f1)
ok "web02.qcow2 stays sparse (${dst_k}K, original ${src_k}K)" test "$dst_k" -le $((src_k + 256))
is "$(qemu-img info --output=json vm/web02.qcow2 | $PY -c 'import json,sys; print(json.load(sys.stdin)["cluster-size"])')" \
   65536 "qcow2 properties kept (cluster size)"

ok "nvram copied" cmp -s vm/nvram/web01_VARS.fd vm/nvram/web02_VARS.fd
is "$(xml_get new.xml os/nvram)" "$T/vm/nvram/web02_VARS.fd" "nvram re-pointed"
is "$(disk_get new.xml sda source)" "$T/vm/install.iso" "readonly cdrom shared"
is "$(disk_get new.xml vdd source)" "$T/vm/shared.img" "shareable disk shared"
is "$(disk_get new.xml sdb source)" "" "empty cdrom stays empty"
ok "no copy of shared disks" test ! -e vm/install-clone.iso -a ! -e vm/shared-clone.img
is "$(files_in vm | grep -c '\.kimg-')" 0 "no temporary file left"
is "$(stat -c %a vm/web02.qcow2)" "$(stat -c %a vm/web01.qcow2)" "the copy has the source's mode"
done_testing
