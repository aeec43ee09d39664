#!/bin/bash
# 401-clone-auto-names.t — --auto-clone names as virt-clone makes them
# (web01 -> web01-clone, x-clone -> x-clone1, x-clone2 -> x-clone3) and
# automatic disk paths (extension of <= 7 characters kept, a base name equal
# to the domain's becomes the new name, else -clone; taken paths get -1, -2).
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

mkdir -p vm "vm/dir.d"
# mkdom NAME DISK...: a domain with one raw disk per DISK (vda, vdb, ...)
mkdom() {
    local name=$1 i=0 d; shift
    {
        echo "<domain type='kvm'><name>$name</name><memory>65536</memory>"
        echo "<os><type arch='x86_64'>hvm</type></os><devices>"
        for d; do
            [ -e "$d" ] || qemu-img create -q -f raw "$d" 1M
            printf "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='%s'/><target dev='vd%s' bus='virtio'/></disk>\n" \
                "$d" "$(printf "\\x$(printf %x $((97 + i)))")"
            i=$((i + 1))
        done
        echo "</devices></domain>"
    } > "dom-$name.xml"
}

for pair in web01:web01-clone x-clone:x-clone1 x-clone2:x-clone3 x-clone9:x-clone10 \
            x-clone10:x-clone11 a-clonex:a-clonex-clone web01-clone-b:web01-clone-b-clone; do
    old=${pair%%:*} want=${pair#*:}
    mkdom "$old" "$T/vm/$old.img"
    kimg clone --original-xml "dom-$old.xml" --auto-clone --print-xml
    is "$RC:$(xml_get out name)" "0:$want" "auto name: $old -> $want"
    is "$(disk_get out vda source)" "$T/vm/$want.img" "auto path: $old.img -> $want.img"
done

mkdom srv "$T/vm/srv.qcow2" "$T/vm/data.img" "$T/vm/disk.verylongext" "$T/vm/dir.d/noext" "$T/vm/.hidden"
kimg clone --original-xml dom-srv.xml -n new --auto-clone --print-xml
is "$(disk_get out vda source)" "$T/vm/new.qcow2" "base name = domain name: the new name"
is "$(disk_get out vdb source)" "$T/vm/data-clone.img" "other base names: -clone before the extension"
is "$(disk_get out vdc source)" "$T/vm/disk.verylongext-clone" "an 'extension' over 7 characters is part of the name"
is "$(disk_get out vdd source)" "$T/vm/dir.d/noext-clone" "a dot in a folder name is no extension"
is "$(disk_get out vde source)" "$T/vm/-clone.hidden" "a dot file keeps its 'extension' as virt-clone"

# collisions: existing files get -1, -2; two disks never get the same path
touch vm/new.qcow2 vm/data-clone.img vm/data-clone-1.img
kimg clone --original-xml dom-srv.xml -n new --auto-clone --print-xml
is "$(disk_get out vda source)" "$T/vm/new-1.qcow2" "taken path: -1"
is "$(disk_get out vdb source)" "$T/vm/data-clone-2.img" "taken twice: -2"
mkdir -p vm/a vm/b; mkdom twins "$T/vm/a/x.img" "$T/vm/b/x.img"
kimg clone --original-xml dom-twins.xml -n t2 --auto-clone --print-xml
is "$(disk_get out vda source):$(disk_get out vdb source)" "$T/vm/a/x-clone.img:$T/vm/b/x-clone.img" \
   "same base names in two folders"
# a clone of a clone: the source x-clone.img itself is never a destination
mkdom dup "$T/vm/same.img" "$T/vm/same-clone.img"
kimg clone --original-xml dom-dup.xml -n dup2 --auto-clone --print-xml
is "$(disk_get out vda source)" "$T/vm/same-clone-1.img" "a source path is never picked"
is "$(disk_get out vdb source)" "$T/vm/same-clone-clone.img" "...and the other disk keeps its rule"
done_testing
