#!/bin/bash
# 418-clone-output-paths.t — clone's files are kimg/output.h's outputs, as
# convert's are: --output-xml and --report-json follow a symlink (the link
# stays, its target gets the content), write a device or a FIFO in place
# (no temporary file, no rename); a disk's destination is never an existing
# path, a symlink included.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"
leftovers() { find "$T" /dev -maxdepth 3 -name '*.kimg-*' 2> /dev/null | wc -l; }

clone_fixture tiny
dry() { kimg clone --original-xml vm/tiny.xml -n "$1" --auto-clone --print-xml "${@:2}"; }

# a symlink to a file, in another folder: XML and report written through it
mkdir real
echo old > real/x.xml
echo old > real/r.json
ln -s real/x.xml x.xml
ln -s real/r.json r.json
kimg clone --original-xml vm/tiny.xml -n t2 --auto-clone -q --output-xml x.xml --report-json r.json
is "$RC" 0 "clone with --output-xml and --report-json through symlinks"
ok "the XML link is still a link" test -L x.xml
ok "the report link is still a link" test -L r.json
is "$(xml_get real/x.xml name)" t2 "the link's target holds the new XML"
is "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["name"])' real/r.json)" t2 \
   "the link's target holds the report"
ok "the disk was copied" cmp -s vm/tiny.img vm/t2.img
is "$(leftovers)" 0 "no temporary file left"

# a dangling symlink: its target is created
ln -s real/new.xml dangling.xml
dry t3 --output-xml dangling.xml
is "$RC" 0 "--output-xml into a dangling symlink"
ok "the link is kept" test -L dangling.xml
is "$(xml_get real/new.xml name)" t3 "its target was created with the XML"

# /dev/null through a symlink: written in place, never replaced
ln -s /dev/null null.xml
ln -s /dev/null null.json
dry t4 --output-xml null.xml --report-json null.json
is "$RC" 0 "--output-xml and --report-json into /dev/null through a symlink"
ok "the link is kept" test -L null.xml
ok "/dev/null is still a character device" test -c /dev/null
is "$(< out)" "" "nothing on stdout"
is "$(leftovers)" 0 "no temporary file left (nor in /dev)"

# a FIFO read by cat gets the XML
mkfifo fifo
cat fifo > got & cpid=$!
dry t5 --output-xml fifo
[ "$RC" = 0 ] || { exec 3<> fifo; exec 3>&-; }   # release the reader
is "$RC" 0 "--output-xml into a FIFO read by cat"
wait $cpid
ok "it is still a FIFO" test -p fifo
is "$(xml_get got name)" t5 "the reader got the XML"

# a symlink to a block device: written in place
loop_attach loop.img 1M
if [ -n "$LOOPDEV" ]; then
    ln -s "$LOOPDEV" loop.xml
    dry t6 --output-xml loop.xml
    is "$RC" 0 "--output-xml into a loop device through a symlink"
    ok "the link is kept" test -L loop.xml
    ok "the device is still a block device" test -b "$LOOPDEV"
    head -c "$(stat -c %s real/new.xml)" "$LOOPDEV" | tr -d '\0' > fromdev.xml
    is "$(xml_get fromdev.xml name)" t6 "the device holds the XML"
else
    for i in 1 2 3 4; do skip "loop device through a symlink" "needs root and losetup"; done
fi

kimg clone --original-xml vm/tiny.xml -n t8 --auto-clone --print-xml --output-xml real
is "$RC" 1 "--output-xml naming a folder is refused"
like "$(< err)" "output-xml real: is a folder" "says so"

# a disk's destination: never an existing path, a symlink included
ln -s real/disk.img link.img
kimg clone --original-xml vm/tiny.xml -n t7 -f link.img -q
is "$RC" 1 "a symlink as a disk's destination is refused"
like "$(< err)" "already exists; kimg clone never overwrites" "as an existing file"
ok "the link is untouched" test -L link.img -a ! -e real/disk.img
done_testing
