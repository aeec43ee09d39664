#!/bin/bash
# 415-clone-report-output.t — --report-json FILE (name, uuid, MACs, and per
# disk its source, destination and action) and --output-xml FILE (the XML
# there, nothing on stdout), for a clone and for a dry run.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture web01
kimg clone --original-xml vm/web01.xml -n w2 --auto-clone --linked --report-json r.json --output-xml w2.xml -q
is "$RC" 0 "exit 0"
is "$(< out)" "" "--output-xml: nothing on stdout"
validate w2.xml "the XML file validates"
$PY - r.json w2.xml "$T" > check.txt <<'PYEOF'
import json, sys, xml.etree.ElementTree as ET
r = json.load(open(sys.argv[1])); x = ET.parse(sys.argv[2]).getroot(); T = sys.argv[3]
def out(k, v): print("%s=%s" % (k, v))
out("keys", ",".join(r.keys()))
out("name", r["name"] == x.findtext("name"))
out("uuid", r["uuid"] == x.findtext("uuid"))
out("macs", r["macs"] == [m.get("address") for m in x.iter("mac")])
out("dry", r["dry-run"])
for d in r["disks"]:
    out(d["target"], "%s %s %s %s" % (d["action"], d.get("reason", "-"),
        (d["source"] or "-").replace(T, "T"), (d["destination"] or "-").replace(T, "T")))
out("vda-backing", "%s %s" % (r["disks"][0]["backing-filename"], r["disks"][0]["backing-format"]))
out("nvram", "%s %s" % (r["nvram"]["action"], r["nvram"]["destination"].replace(T, "T")))
PYEOF
is "$(< check.txt)" "keys=name,uuid,original-name,original-uuid,dry-run,macs,disks,nvram,logs
name=True
uuid=True
macs=True
dry=False
vda=linked - T/vm/web01.qcow2 T/vm/w2.qcow2
vdb=linked - T/vm/data.img T/vm/data-clone.img
vdc=linked - T/vm/logs.qcow2 T/vm/logs-clone.qcow2
sda=share readonly T/vm/install.iso T/vm/install.iso
vdd=share shareable T/vm/shared.img T/vm/shared.img
sdb=share empty - -
vda-backing=web01.qcow2 qcow2
nvram=copy T/vm/nvram/w2_VARS.fd" "the report matches the XML and the plan"

echo old > old.json
kimg clone --original-xml vm/web01.xml -n w3 --auto-clone --print-xml --report-json old.json
is "$($PY -c 'import json; print(json.load(open("old.json"))["dry-run"])')" True "dry run: dry-run true, an existing report replaced"
ok "dry run: XML still on stdout" grep -q '<name>w3</name>' out
ok "dry run: no disk written" test ! -e vm/w3.qcow2
done_testing
