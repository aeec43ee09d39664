#!/bin/bash
# 404-clone-files.t — -f/--file: one per disk to clone, in disk order
# (shared disks take none), relative paths made absolute, --auto-clone
# filling in the rest; too few or too many refused with one line.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture web01
mkdir -p out2
kimg clone --original-xml vm/web01.xml -n w2 -f out2/a.qcow2 -f "$T/out2/b.img" -f ./out2/../out2/c.qcow2 --print-xml
is "$RC" 0 "three --file for three cloneable disks"
is "$(disk_get out vda source)|$(disk_get out vdb source)|$(disk_get out vdc source)" \
   "$T/out2/a.qcow2|$T/out2/b.img|$T/out2/c.qcow2" "in disk order, made absolute and normalised"

kimg clone --original-xml vm/web01.xml -n w2 -f out2/a.qcow2 --auto-clone --print-xml
is "$(disk_get out vda source)|$(disk_get out vdb source)|$(disk_get out vdc source)" \
   "$T/out2/a.qcow2|$T/vm/data-clone.img|$T/vm/logs-clone.qcow2" "--auto-clone fills in the rest"

kimg clone --original-xml vm/web01.xml -n w2 -f out2/a.qcow2
err_line "too few --file"
like "$(< err)" "3 disks to clone \(vda, vdb, vdc\) but 1 --file given" "...names the disks"
kimg clone --original-xml vm/web01.xml -n w2 -f 1 -f 2 -f 3 -f 4
err_line "too many --file"
kimg clone --original-xml vm/web01.xml -n w2
err_line "neither --file nor --auto-clone"
kimg clone --original-xml vm/web01.xml --auto-clone -f out2/a -f out2/a -f out2/c --print-xml
err_line "one --file for two disks"
kimg clone --original-xml vm/web01.xml -n w2 -f vm/web01.qcow2 -f out2/b -f out2/c --print-xml
err_line "--file is the disk's own source"
kimg clone --original-xml vm/web01.xml -n w2 -f vm/data.img -f out2/b -f out2/c --print-xml
err_line "--file is another disk's source (exists)"
is "$(files_in out2)" "" "no file created by any refusal"
done_testing
