#!/bin/bash
# 422-clone-serial-nvram-ext.t — virt-clone 5.0's fixes: a serial or
# console of type 'file' gets a new log path, named as a disk copy is
# (NAME.log, x-clone.log, -1 on collision; a console mirroring a serial
# keeps sharing its path; nothing created); an nvram keeps its own
# extension (a .qcow2 nvram stays .qcow2, copied as qcow2), .fd without one.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture tiny
mkdir -p logs
touch logs/console-clone.log   # taken: the next free name is used
$PY - vm/tiny.xml "$T" > s.xml <<'PYEOF'
import sys
x = open(sys.argv[1]).read()
T = sys.argv[2]
x = x.replace("<interface type='user'/>", """<interface type='user'/>
    <serial type='file'>
      <source path='%s/logs/tiny.log'/>
      <target type='isa-serial' port='0'/>
    </serial>
    <serial type='file'>
      <source path='%s/logs/console.log' append='on'/>
      <target type='isa-serial' port='1'/>
    </serial>
    <serial type='pty'>
      <target type='isa-serial' port='2'/>
    </serial>
    <console type='file'>
      <source path='%s/logs/tiny.log'/>
      <target type='serial' port='0'/>
    </console>""" % (T, T, T))
print(x, end="")
PYEOF
kimg clone --original-xml s.xml -n t2 --auto-clone -q
is "$RC" 0 "a domain with serial and console files"
cp out t2.xml
validate t2.xml "the XML validates"
is "$(xml_get t2.xml devices/serial/source/@path)" "$T/logs/t2.log
$T/logs/console-clone-1.log" "serial files renamed as disks are (the taken name skipped)"
is "$(xml_get t2.xml devices/console/source/@path)" "$T/logs/t2.log" "the console mirrors its serial's new path"
is "$(xml_get t2.xml "devices/serial/source[@append='on']/@path")" "$T/logs/console-clone-1.log" \
   "other attributes kept"
is "$(files_in logs)" "console-clone.log" "no log file created"
# --report-json lists each renamed log: the template's path, the clone's
kimg clone --original-xml s.xml -n t3 --auto-clone -q --print-xml --report-json r3.json
is "$RC" 0 "--report-json of a domain with serial and console files"
$PY -c 'import json,sys; r=json.load(open(sys.argv[1])); print("\n".join(l["source"]+" "+l["destination"] for l in r["logs"]))' \
    r3.json > logs.txt
is "$(< logs.txt)" "$T/logs/tiny.log $T/logs/t3.log
$T/logs/console.log $T/logs/console-clone-1.log
$T/logs/tiny.log $T/logs/t3.log" "the report lists every serial and console log, old and new"

kimg clone --original-xml s.xml -n 'b{n}' --count 2 --auto-clone -q --output-xml 'b{n}.xml'
is "$RC" 0 "a batch"
is "$(xml_get b1.xml devices/serial/source/@path | tr '\n' ' ')$(xml_get b2.xml devices/serial/source/@path | tr '\n' ' ')" \
   "$T/logs/b1.log $T/logs/console-b1.log $T/logs/b2.log $T/logs/console-b2.log " \
   "each clone its own logs (in a batch STEM-NAME)"

# nvram extensions
clone_fixture db01
qemu-img create -q -f qcow2 vm/nvram/db01_VARS.qcow2 528K
qemu-io -f qcow2 -c "write -P 0x5e 0 128k" vm/nvram/db01_VARS.qcow2 > /dev/null
sed "s|db01_VARS.fd|db01_VARS.qcow2|; s|<nvram type='file'|<nvram type='file' format='qcow2'|" \
    vm/db01.xml > q.xml
kimg clone --original-xml q.xml -n dbq --auto-clone -q --skip-copy vdb --skip-copy vdc
is "$RC" 0 "a qcow2 nvram"
is "$(xml_get out os/nvram/source/@file)" "$T/vm/nvram/dbq_VARS.qcow2" "keeps .qcow2"
ok "a qcow2 copy of it" qemu_oracle_compare -f qcow2 -F qcow2 vm/nvram/db01_VARS.qcow2 vm/nvram/dbq_VARS.qcow2
like "$(qemu-img info vm/nvram/dbq_VARS.qcow2)" "file format: qcow2" "still qcow2"

cp vm/nvram/db01_VARS.fd vm/nvram/VARS
sed "s|db01_VARS.fd|VARS|" vm/db01.xml > n.xml
kimg clone --original-xml n.xml -n dbn --auto-clone -q --skip-copy vdb --skip-copy vdc
is "$RC" 0 "an nvram without extension"
is "$(xml_get out os/nvram/source/@file)" "$T/vm/nvram/dbn_VARS.fd" "gets .fd"
ok "copied" cmp -s vm/nvram/VARS vm/nvram/dbn_VARS.fd
done_testing
