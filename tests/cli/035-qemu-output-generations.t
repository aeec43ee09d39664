#!/bin/bash
# KIMG_QEMU_OUTPUT (img/qemu_output.c): the output of a newer qemu-img on
# request, 7.2's by default.  QEMU 8.0 is not on this machine, so the
# oracle is qemu-img 7.2 plus what 8.0 and 8.2 add, built here:
#   8.0  info: "children", each child's own info (a file node: name as
#        opened, "format": "file", its length as "virtual-size", allocated
#        bytes, {"type": "file"} format-specific data, no children), the
#        image's children newest first; the human "Child node" blocks.  The
#        layout is checked against QEMU 8.0's own output for
#        `qemu-img create -f qcow2 foo.qcow2 4G` and a twoGbMaxExtentSparse
#        VMDK, as lima's tests quote it (pkg/qemu/imgutil/imgutil_test.go),
#        with this machine's file sizes put in.
#   8.2  map --output=json: "compressed" after "data" in every entry
#        (qemu's commit "qemu-img: map: report compressed data blocks").
# Unset, empty or 7.2: byte for byte qemu-img 7.2's (every other test).
. "$(dirname "$0")/lib.sh"

size() { stat -c %s "$1"; }
alloc() { echo $(( $(stat -c %b "$1") * $(stat -c %B "$1") )); }

# ---- info --output=json: QEMU 8.0's sample, this machine's numbers ----------
qemu-img create -q -f qcow2 foo.qcow2 4G
export KIMG_QEMU_OUTPUT=8.0
kimg info --output=json foo.qcow2
cat > want.json <<W
{
    "children": [
        {
            "name": "file",
            "info": {
                "children": [
                ],
                "virtual-size": $(size foo.qcow2),
                "filename": "foo.qcow2",
                "format": "file",
                "actual-size": $(alloc foo.qcow2),
                "format-specific": {
                    "type": "file",
                    "data": {
                    }
                },
                "dirty-flag": false
            }
        }
    ],
    "virtual-size": 4294967296,
    "filename": "foo.qcow2",
    "cluster-size": 65536,
    "format": "qcow2",
    "actual-size": $(alloc foo.qcow2),
    "format-specific": {
        "type": "qcow2",
        "data": {
            "compat": "1.1",
            "compression-type": "zlib",
            "lazy-refcounts": false,
            "refcount-bits": 16,
            "corrupt": false,
            "extended-l2": false
        }
    },
    "dirty-flag": false
}
W
is_file "$T/out" want.json "8.0 info --output=json of a new qcow2: QEMU 8.0's layout"

# the image's children newest first: extents last to first, then "file"
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse foo.vmdk 4G
kimg info --output=json foo.vmdk
$PY - "$T/out" foo-s002.vmdk foo-s001.vmdk foo.vmdk > got.txt <<'P'
import json, os, sys
info = json.load(open(sys.argv[1]))
for c, want in zip(info["children"], sys.argv[2:]):
    i = c["info"]; st = os.stat(want)
    print(c["name"], i["filename"] == want, i["virtual-size"] == st.st_size,
          i["actual-size"] == st.st_blocks * 512, i["format"], i["children"],
          i["format-specific"], i["dirty-flag"])
print(len(info["children"]))
P
is "$(cat got.txt)" "extents.1 True True True file [] {'type': 'file', 'data': {}} False
extents.0 True True True file [] {'type': 'file', 'data': {}} False
file True True True file [] {'type': 'file', 'data': {}} False
3" "8.0: twoGbMaxExtentSparse VMDK: extents.1, extents.0, file (QEMU 8.0's order)"

# ---- every other key as qemu-img 7.2 prints it: only "children" is new --------
# (python: the 7.2 object with the expected children added, compared as JSON)
expect_children() {   # IMAGE NAME=FILE...: the children qemu 8.0 lists
    local img=$1; shift
    unset KIMG_QEMU_OUTPUT
    qemu-img info --output=json "$img" > q.json
    export KIMG_QEMU_OUTPUT=8.0
    kimg info --output=json "$img"
    $PY - q.json "$T/out" "$@" <<'P'
import json, os, sys
q = json.load(open(sys.argv[1])); k = json.load(open(sys.argv[2]))
kids = []
for nf in sys.argv[3:]:
    name, f = nf.split("=", 1); st = os.stat(f)
    kids.append({"name": name, "info": {"children": [], "virtual-size": st.st_size,
        "filename": f, "format": "file", "actual-size": st.st_blocks * 512,
        "format-specific": {"type": "file", "data": {}}, "dirty-flag": False}})
q["children"] = kids
sys.exit(0 if q == k else 1)
P
}
qemu-img create -q -f qcow2 -F qcow2 -b foo.qcow2 bar.qcow2
ok "8.0: qcow2 with a backing file: its own file only" expect_children bar.qcow2 file=bar.qcow2
qemu-img create -q -f raw r.raw 1M
ok "8.0: raw" expect_children r.raw file=r.raw
qemu-img create -q -f qcow2 -o data_file=d.raw,data_file_raw=on dd.qcow2 1M
# info opens no external data file (qemu-img info does not either since
# the CVE-2024-4467 fix, QEMU 9.1 and the stable releases; 8.0 listed it)
ok "8.0: qcow2 with an external data file: info does not open it" \
    expect_children dd.qcow2 file=dd.qcow2
qemu-img create -q -f vmdk -o subformat=monolithicFlat flat.vmdk 1M
ok "8.0: monolithicFlat VMDK: extents.0, then the descriptor" \
    expect_children flat.vmdk extents.0=flat-flat.vmdk file=flat.vmdk
qemu-img create -q -f vmdk -o subformat=streamOptimized s.vmdk 1M
ok "8.0: a VMDK holding its own extent has one child" expect_children s.vmdk file=s.vmdk
qemu-img create -q -f vpc v.vhd 1M
ok "8.0: vpc" expect_children v.vhd file=v.vhd

# --backing-chain: an array, each image with its own children
kimg info --output=json --backing-chain bar.qcow2
$PY -c 'import json,sys; a=json.load(open(sys.argv[1])); print([[c["info"]["filename"] for c in i["children"]] for i in a])' \
    "$T/out" > got.txt
is "$(cat got.txt)" "[['bar.qcow2'], ['foo.qcow2']]" "8.0: --backing-chain: each image's children"
# a json: name (vdsm's): the file child is named by its path
kimg info --output=json 'json:{"file":{"driver":"file","filename":"foo.qcow2"},"driver":"qcow2","backing":null}'
$PY -c 'import json,sys; i=json.load(open(sys.argv[1])); print([c["info"]["filename"] for c in i["children"]])' \
    "$T/out" > got.txt
is "$(cat got.txt)" "['foo.qcow2']" "8.0: a json: name: the file child is named by its path"

# ---- human: QEMU 8.0's "Child node" blocks ---------------------------------------
kimg info foo.qcow2
unset KIMG_QEMU_OUTPUT
qemu-img info foo.qcow2 > want.txt
cat >> want.txt <<W
Child node '/file':
    filename: foo.qcow2
    protocol type: file
    file length: 192 KiB ($(size foo.qcow2) bytes)
    disk size: 196 KiB
W
is_file "$T/out" want.txt "8.0 human info: qemu-img 7.2's lines, then the Child node block"
export KIMG_QEMU_OUTPUT=8.0
kimg info foo.vmdk
like "$(grep -A1 "^Child node" "$T/out" | tr '\n' '|')" \
     "^Child node '/extents.1':|    filename: foo-s002.vmdk|--|Child node '/extents.0':|    filename: foo-s001.vmdk|--|Child node '/file':|    filename: foo.vmdk|$" \
     "8.0 human info of a split VMDK: one block per child, newest first"

# ---- map: QEMU 8.2's "compressed" -----------------------------------------------
$PY -c 'import sys; sys.stdout.buffer.write(bytes([7]) * 300 * 1024)' > p.raw
truncate -s 1M p.raw
qemu-img convert -c -O qcow2 p.raw c.qcow2
qemu-io -f qcow2 -c 'write -P 8 512k 64k' c.qcow2 > /dev/null
unset KIMG_QEMU_OUTPUT
qemu-img map --output=json c.qcow2 > q.txt
# 7.2's entries, "compressed" put after "data": true for data without an
# offset (compressed clusters: nothing else here lacks one)
sed -E 's/"data": true\}/"data": true, "compressed": true}/; t; s/"data": (true|false)(,|\})/"data": \1, "compressed": false\2/' q.txt > want.txt
KIMG_QEMU_OUTPUT=8.2 kimg map --output=json c.qcow2
is_file "$T/out" want.txt "8.2 map --output=json: compressed clusters say so, the rest false"
grep -q '"compressed": true' want.txt && grep -q '"offset"' want.txt
ok "(the image has compressed and plain data)" test $? = 0
KIMG_QEMU_OUTPUT=8.0 kimg map --output=json c.qcow2
is_file "$T/out" q.txt "8.0 map: 7.2's keys (compressed came in 8.2)"
qemu-img convert -O vmdk -o subformat=streamOptimized p.raw st.vmdk
KIMG_QEMU_OUTPUT=10.1 kimg map --output=json st.vmdk
like "$(head -1 "$T/out")" '"data": true, "compressed": true}' "10.1 map of a stream VMDK: its grains are compressed"
KIMG_QEMU_OUTPUT=8.2 kimg map --output=json --max-length 0 c.qcow2
is "$(cat "$T/out")" '[{ "start": 0, "length": 0, "depth": 0, "present": false, "zero": false, "data": false, "compressed": false}]' \
    "8.2 map of nothing: the empty entry has the key too"

# ---- the default and bad values ----------------------------------------------
for v in "" 7.2 7.2.0; do
    KIMG_QEMU_OUTPUT=$v kimg info --output=json foo.qcow2
    qemu-img info --output=json foo.qcow2 > q.json
    is_file "$T/out" q.json "KIMG_QEMU_OUTPUT='$v': qemu-img 7.2's info"
done
for v in 7.1 8 bogus 8.2.1.1 8.100 -8.2 "8.2 " $'8.2\e[31m'; do
    before=$(sha foo.qcow2)
    KIMG_QEMU_OUTPUT=$v kimg info foo.qcow2
    err_line "KIMG_QEMU_OUTPUT='$(printf %q "$v")' refused in one line"
    is "$(sha foo.qcow2)" "$before" "... nothing touched"
done
is "$(grep -c $'\e' "$T/err")" 0 "the value is escaped in the message"
ln -s "$KIMG" qemu-img
KIMG_QEMU_OUTPUT=8.2 run ./qemu-img --version
like "$(head -1 "$T/out")" '^qemu-img version 7\.2\.0 \(kimg ' "--version still claims 7.2.0 (the rest of the output is 7.2's)"
done_testing
