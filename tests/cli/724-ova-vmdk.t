#!/bin/bash
# The usual OVA: VMware-style OVF 1.0 with a SHA256 manifest and
# streamOptimized VMDK disks (as qemu-img writes them).  Nothing in the
# OVA layer is VMDK-specific: these pass the day kimg reads vmdk; until
# then the whole file is skipped (kimg info of the plain VMDK fails).
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/ova.sh"

disks_made
qemu-img convert -f qcow2 -O vmdk -o subformat=streamOptimized d1.qcow2 vm-disk1.vmdk
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized d2.raw vm-disk2.vmdk
kimg info vm-disk1.vmdk
[ "$RC" = 0 ] || skip_all "kimg cannot read a streamOptimized vmdk yet ($(head -1 "$T/err"))"

ovf_write vm.ovf vmware1 vm-disk1.vmdk vm-disk2.vmdk
mf_write vm.mf SHA256 vm.ovf vm-disk1.vmdk vm-disk2.vmdk
ova_tar vm.ova ustar vm.ovf vm.mf vm-disk1.vmdk vm-disk2.vmdk

kimg info --output=json vm.ova
is "$($PY -c 'import json,sys; print(" ".join("%s:%s" % (o["archive-member"], o["format"]) for o in json.load(open(sys.argv[1]))))' "$T/out")" \
    "vm-disk1.vmdk:vmdk vm-disk2.vmdk:vmdk" "info lists the two vmdk disks"
for n in 1 2; do
    m=vm-disk$n.vmdk
    kimg info --disk $n --output=json vm.ova
    json_norm "$T/out" filename actual-size archive-member archive-disk > a.json
    kimg info --output=json "$m"
    json_norm "$T/out" filename actual-size > b.json
    is_file a.json b.json "disk $n: info as kimg info of the member"
    kimg convert --disk $n -O raw vm.ova out.raw
    is "$RC" 0 "disk $n: convert -O raw"
    ok "disk $n: -O raw is qemu-img's reading of the member" qemu_oracle_compare -f raw -F vmdk out.raw "$m"
    kimg convert --disk $n -O qcow2 vm.ova out.qcow2
    ok "disk $n: -O qcow2 the same" qemu_oracle_compare -F vmdk out.qcow2 "$m"
    kimg checksum --disk $n vm.ova
    a=$(cut -d' ' -f1 "$T/out")
    qemu-img convert -f vmdk -O raw "$m" ref.raw
    kimg checksum -f raw ref.raw
    is "$a" "$(cut -d' ' -f1 "$T/out")" "disk $n: checksum is that of qemu-img's raw conversion"
    kimg compare --disk $n -F vmdk vm.ova "$m"
    is "$RC:$(< "$T/out")" "0:Images are identical." "disk $n: compare with the member"
    tar -xOf vm.ova "$m" > extracted.vmdk
    kimg map --disk $n --output=json vm.ova
    qimg map -f vmdk --output=json extracted.vmdk
    is_file "$T/out" "$T/qout" "disk $n: map as qemu-img map of the extracted member"
done

# A descriptor-only VMDK member names its extent by file name: kimg never
# opens that name, neither inside the archive nor next to it on disk.
qemu-img create -q -f vmdk -o subformat=monolithicFlat flat.vmdk 1M
ovf_write vm.ovf vmware1 flat.vmdk
ova_tar flat.ova ustar vm.ovf flat.vmdk flat-flat.vmdk
kimg convert -O raw flat.ova out-flat.raw
err_line "a VMDK member's extent file is refused"
like "$(< "$T/err")" "kimg opens nothing outside the archive" "the refusal says why"
ok "no output file" test ! -e out-flat.raw

done_testing
