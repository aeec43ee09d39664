#!/bin/bash
# 419-clone-batch.t — a batch of clones in one run: repeatable -n, and
# -n 'web-{n}' --count N ({n} from 1); each clone its own name, UUID, MACs
# (unique across the batch and against the template's), disk files, NVRAM
# and XML (--output-xml as a {n}/{name} template or a folder); --print-xml
# prints NUL-terminated documents; --report-json lists every clone; the
# refusals (templates without {n}, --uuid, fixed --mac, existing files).
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture web01
snapshot_sources vm
files_in vm > before.list
new_files() { files_in vm | diff before.list - | sed -n 's/^> //p'; }

# ---- -n 'web-{n}' --count 3, XML into a template, a report ----
kimg clone --original-xml vm/web01.xml -n 'web-{n}' --count 3 --auto-clone -q \
     --output-xml 'xml/{name}.xml' --report-json r.json
is "$RC" 1 "--output-xml into a missing folder is refused"
like "$(< err)" "folder .*xml does not exist" "says so"
is "$(new_files)" "" "nothing made"
mkdir xml
kimg clone --original-xml vm/web01.xml -n 'web-{n}' --count 3 --auto-clone -q \
     --output-xml 'xml/{name}.xml' --report-json r.json
is "$RC" 0 "a batch of three"
is "$(< out)" "" "nothing on stdout"
is "$(ls xml | tr '\n' ' ')" "web-1.xml web-2.xml web-3.xml " "one XML per clone"
for i in 1 2 3; do
    validate xml/web-$i.xml "web-$i.xml validates"
    is "$(xml_get xml/web-$i.xml name)" "web-$i" "web-$i: its name"
    is "$(disk_get xml/web-$i.xml vda source)" "$T/vm/web-$i.qcow2" "web-$i: its own vda"
    ok "web-$i: vda's data" qemu_oracle_compare vm/web01.qcow2 vm/web-$i.qcow2
    ok "web-$i: vda passes qemu-img check" check_clean vm/web-$i.qcow2
    ok "web-$i: vdb's data" cmp -s vm/data.img "$(disk_get xml/web-$i.xml vdb source)"
    ok "web-$i: vdc flattened" qemu_oracle_compare vm/logs.qcow2 "$(disk_get xml/web-$i.xml vdc source)"
    ok "web-$i: its nvram" cmp -s vm/nvram/web01_VARS.fd vm/nvram/web-${i}_VARS.fd
done
$PY - xml/*.xml vm/web01.xml <<'PYEOF' > ids.txt
import sys, xml.etree.ElementTree as ET
docs = [ET.parse(f).getroot() for f in sys.argv[1:]]
clones, tmpl = docs[:-1], docs[-1]
uuids = [d.findtext("uuid") for d in docs]
macs = [m.get("address") for d in clones for m in d.iter("mac")]
tmacs = {m.get("address") for m in tmpl.iter("mac")}
files = [s.get("file") for d in clones for s in d.iter("source") if s.get("file")]
shared = [f for f in files if files.count(f) > 1]
print("uuids", len(set(uuids)) == len(uuids))
print("macs", len(macs), len(set(macs)) == len(macs), not (set(macs) & tmacs))
print("shared", sorted(set(f.rsplit("/", 1)[1] for f in shared)))
print("nvram", len({d.findtext("os/nvram") for d in clones}))
PYEOF
is "$(< ids.txt)" "uuids True
macs 9 True True
shared ['install.iso', 'shared.img']
nvram 3" "UUIDs, MACs, disks and NVRAMs their own (the readonly and shareable disks shared)"
$PY - r.json "$T" <<'PYEOF' > rep.txt
import json, sys
r = json.load(open(sys.argv[1]))
print(list(r.keys()), r["count"], r["failed"], r["dry-run"])
for c in r["clones"]:
    print(c["name"], c["status"], c["error"], c["disks"][0]["destination"].replace(sys.argv[2], "T"),
          c["nvram"]["destination"].replace(sys.argv[2], "T"))
PYEOF
is "$(< rep.txt)" "['dry-run', 'count', 'failed', 'clones'] 3 0 False
web-1 created None T/vm/web-1.qcow2 T/vm/nvram/web-1_VARS.fd
web-2 created None T/vm/web-2.qcow2 T/vm/nvram/web-2_VARS.fd
web-3 created None T/vm/web-3.qcow2 T/vm/nvram/web-3_VARS.fd" "the report lists every clone"
ok "sources unchanged" sources_unchanged vm

# ---- a second batch with the same names: refused, nothing made ----
files_in vm > before.list
kimg clone --original-xml vm/web01.xml -n 'web-{n}' --count 4 -f 'vm/web-{n}.qcow2' \
     -f 'vm/d-{n}.img' -f 'vm/l-{n}.qcow2' -q --print-xml
is "$RC" 1 "a batch whose file exists is refused"
like "$(< err)" "web-1.qcow2 already exists" "names the file"
is "$(new_files)" "" "nothing made"

# ---- repeatable -n, --file templates, --print-xml: NUL-terminated documents ----
kimg clone --original-xml vm/web01.xml -n alpha -n beta --print-xml \
     -f 'vm/{name}-root.qcow2' -f 'vm/{name}-data.img' -f 'vm/{name}-logs.qcow2'
is "$RC" 0 "--print-xml for two named clones"
is "$(new_files)" "" "a dry run makes no file"
is "$(tr -cd '\0' < out | wc -c)" 2 "two documents, each ending with a NUL byte"
n=0
while IFS= read -r -d '' doc; do
    n=$((n + 1))
    printf '%s' "$doc" > doc$n.xml
    validate doc$n.xml "document $n validates"
done < out
is "$n" 2 "read -d '' splits them"
is "$(xml_get doc1.xml name) $(xml_get doc2.xml name)" "alpha beta" "in the order of -n"
is "$(disk_get doc2.xml vdb source)" "$T/vm/beta-data.img" "--file templates expanded per clone"

# ---- --auto-clone --count: the automatic names follow each other ----
kimg clone --original-xml vm/web01.xml --auto-clone --count 2 --print-xml
is "$RC" 0 "--auto-clone --count 2"
tr '\0' '\n' < out | grep -o '<name>[^<]*</name>' > names.txt
is "$(cat names.txt | tr '\n' ' ')" "<name>web01-clone</name> <name>web01-clone1</name> " \
   "web01-clone, then web01-clone1"

# ---- --output-xml a folder ----
mkdir xml2
kimg clone --original-xml vm/web01.xml -n a1 -n a2 --auto-clone --print-xml --output-xml xml2
is "$RC" 0 "--output-xml FOLDER"
is "$(ls xml2 | tr '\n' ' ')" "a1.xml a2.xml " "FOLDER/NAME.xml"
kimg clone --original-xml vm/web01.xml -n a1 -n a2 --auto-clone --print-xml --output-xml xml2
is "$RC" 1 "a batch never replaces an XML file"
like "$(< err)" "a1.xml already exists" "says so"

# ---- a big batch: linear, its memory the XML text and a small plan per clone ----
/usr/bin/time -f %M -o mem.txt "$KIMG" clone --original-xml vm/web01.xml -n 'big{n}' --count 2000 \
    --auto-clone --linked --print-xml > big.out 2> big.err
is "$(tr -cd '\0' < big.out | wc -c)" 2000 "2000 documents"
# (a sanitizer build's memory is ASan's: shadow, quarantine; not measured)
if [ -n "${KIMG_SANFLAGS:-}" ]; then skip "peak memory under 48 MiB" "sanitizer build"
else ok "peak memory under 48 MiB ($(< mem.txt) KiB)" test "$(< mem.txt)" -lt 49152; fi
tr '\0' '\n' < big.out | grep -o 'data-big[0-9]*\.img' | sort -u | wc -l > n.txt
is "$(< n.txt)" 2000 "2000 different vdb files"
rm -f big.out

# ---- refusals ----
refused() {
    local msg=$1; shift
    kimg clone --original-xml vm/web01.xml "$@"
    is "$RC" 1 "refused: $*"
    like "$(< err)" "$msg" "  says: $msg"
    is "$(new_files)" "" "  nothing made"
}
refused "has no \{n\}" -n web --count 2 --auto-clone
refused "one --name template" -n 'a{n}' -n 'b{n}' --count 2 --auto-clone
refused "count" -n 'a{n}' --count 0 --auto-clone
refused "count" -n 'a{n}' --count 10001 --auto-clone
refused "--uuid gives one clone" -n a -n b --auto-clone --uuid 11111111-2222-3333-4444-555555555555
refused "--mac 52:54:00:00:00:01 gives one clone" -n a -n b --auto-clone -m 52:54:00:00:00:01
refused "a batch needs a template" -n a -n b -f vm/x.qcow2 -f vm/y.img -f vm/z.qcow2
refused "a batch needs a template" -n a -n b --auto-clone --nvram vm/n.fd
refused "a batch needs a folder or a template" -n a -n b --auto-clone --output-xml one.xml
refused "the name 'a' is given to two clones" -n a -n a --auto-clone
refused "original's" -n a -n web01 --auto-clone
refused "too big for one run" -n 'a{n}' --count 10000 --auto-clone --print-xml
ok "sources unchanged" sources_unchanged vm
done_testing
