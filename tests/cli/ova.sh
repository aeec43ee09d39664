# ova.sh — helpers for the OVA tests (720-724), sourced after lib.sh:
#   ovf_write FILE STYLE HREF...   an OVF descriptor listing each HREF as a
#                                  disk (References/File + DiskSection/Disk,
#                                  and a VirtualSystem with one hard disk
#                                  item per disk), as exporters write it:
#       vmware1    OVF 1.0, default namespace, ovf: attributes (ovftool)
#       vbox2      OVF 2.0, as VirtualBox 7 exports ("ovf:version" 2.0)
#       prefixed   OVF 1.0 with every element ovf:-prefixed (oVirt-like)
#     OVF_EXTRA_FILE_ATTRS  added to every <File> (e.g. ovf:compression)
#     OVF_BLANK_DISK=1      one more Disk without a file (a blank disk)
#   mf_write FILE ALG NAME...      a manifest: "ALG(NAME)= hex" per NAME
#                                  (ALG SHA1, SHA256 or SHA512); MF_BSD=1:
#                                  VirtualBox's "ALG (NAME) = hex"
#   ova_tar OUT FORMAT NAME...     tar --format=FORMAT of NAMEs, in order,
#                                  reproducible (owner 0, mtime 0)
#   disks_made                     d1.qcow2 (64M, data in 3 places),
#                                  d2.raw (8M), d3.vhd (dynamic vpc, 20M)
#   sizeof FILE                    its size in bytes

sizeof() { stat -L -c %s "$1"; }

ovf_write() {
    local out=$1 style=$2 ns pre= ver=1.0 i=0 h
    shift 2
    case $style in
        vmware1|prefixed) ns=http://schemas.dmtf.org/ovf/envelope/1 ;;
        vbox2) ns=http://schemas.dmtf.org/ovf/envelope/2; ver=2.0 ;;
    esac
    [ "$style" = prefixed ] && pre=ovf:
    {
        echo '<?xml version="1.0" encoding="UTF-8"?>'
        if [ "$style" = prefixed ]; then
            echo "<ovf:Envelope xmlns:ovf=\"$ns\" xmlns:rasd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData\" xmlns:vssd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" ovf:version=\"$ver\">"
        else
            echo "<Envelope ovf:version=\"$ver\" xml:lang=\"en-US\" xmlns=\"$ns\" xmlns:ovf=\"$ns\" xmlns:rasd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData\" xmlns:vssd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:vbox=\"http://www.virtualbox.org/ovf/machine\" xmlns:vmw=\"http://www.vmware.com/schema/ovf\">"
        fi
        echo "  <${pre}References>"
        i=0
        for h; do
            i=$((i + 1))
            local sz=
            [ -f "$h" ] && sz=" ovf:size=\"$(sizeof "$h")\""
            echo "    <${pre}File ovf:href=\"$h\" ovf:id=\"file$i\"$sz ${OVF_EXTRA_FILE_ATTRS:-}/>"
        done
        echo "  </${pre}References>"
        echo "  <${pre}DiskSection>"
        echo "    <${pre}Info>List of the virtual disks used in the package</${pre}Info>"
        i=0
        for h; do
            i=$((i + 1))
            echo "    <${pre}Disk ovf:capacity=\"68719476736\" ovf:diskId=\"vmdisk$i\" ovf:fileRef=\"file$i\" ovf:format=\"http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized\" vbox:uuid=\"0c0b$i-0000-4000-8000-00000000000$i\"/>"
        done
        [ -n "${OVF_BLANK_DISK:-}" ] &&
            echo "    <${pre}Disk ovf:capacity=\"1073741824\" ovf:diskId=\"blank\"/>"
        echo "  </${pre}DiskSection>"
        echo "  <${pre}NetworkSection>"
        echo "    <${pre}Info>Logical networks used in the package</${pre}Info>"
        echo "    <${pre}Network ovf:name=\"NAT\"><${pre}Description>Logical network used by this appliance.</${pre}Description></${pre}Network>"
        echo "  </${pre}NetworkSection>"
        echo "  <${pre}VirtualSystem ovf:id=\"test-vm\">"
        echo "    <${pre}Info>A virtual machine</${pre}Info>"
        echo "    <${pre}OperatingSystemSection ovf:id=\"96\"><${pre}Info>The kind of installed guest operating system</${pre}Info><${pre}Description>Debian_64</${pre}Description></${pre}OperatingSystemSection>"
        echo "    <${pre}VirtualHardwareSection>"
        echo "      <${pre}Info>Virtual hardware requirements for a virtual machine</${pre}Info>"
        echo "      <${pre}System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID><vssd:VirtualSystemIdentifier>test-vm</vssd:VirtualSystemIdentifier><vssd:VirtualSystemType>virtualbox-2.2 vmx-10</vssd:VirtualSystemType></${pre}System>"
        echo "      <${pre}Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits><rasd:ElementName>2 virtual CPU</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></${pre}Item>"
        echo "      <${pre}Item><rasd:Address>0</rasd:Address><rasd:ElementName>SCSI Controller 0</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>lsilogic</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></${pre}Item>"
        i=0
        for h; do
            i=$((i + 1))
            echo "      <${pre}Item><rasd:AddressOnParent>$((i - 1))</rasd:AddressOnParent><rasd:ElementName>Hard Disk $i</rasd:ElementName><rasd:HostResource>ovf:/disk/vmdisk$i</rasd:HostResource><rasd:InstanceID>$((9 + i))</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></${pre}Item>"
        done
        echo "    </${pre}VirtualHardwareSection>"
        echo "  </${pre}VirtualSystem>"
        if [ "$style" = prefixed ]; then echo "</ovf:Envelope>"; else echo "</Envelope>"; fi
    } > "$out"
}

mf_write() {
    local out=$1 alg=$2 tool n
    shift 2
    case $alg in SHA1) tool=sha1sum ;; SHA256) tool=sha256sum ;; SHA512) tool=sha512sum ;; esac
    for n; do
        if [ -n "${MF_BSD:-}" ]; then
            echo "$alg ($n) = $($tool < "$n" | cut -d' ' -f1)"
        else
            echo "$alg($n)= $($tool < "$n" | cut -d' ' -f1)"
        fi
    done > "$out"
}

ova_tar() {
    local out=$1 fmt=$2
    shift 2
    rm -f "$out"
    tar --format="$fmt" --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$out" -- "$@"
}

disks_made() {
    qemu-img create -q -f qcow2 d1.qcow2 64M
    qemu-io -f qcow2 -c 'write -P 0x11 0 64k' -c 'write -P 0x12 5M 3M' \
        -c 'write -P 0x13 63M 1M' d1.qcow2 > /dev/null
    qemu-img create -q -f raw d2.raw 8M
    qemu-io -f raw -c 'write -P 0x21 4k 1M' -c 'write -P 0x22 7M 4k' d2.raw > /dev/null
    qemu-img create -q -f vpc d3.vhd 20M
    qemu-io -f vpc -c 'write -P 0x31 1M 2M' -c 'write -P 0x32 17M 64k' d3.vhd > /dev/null
}
