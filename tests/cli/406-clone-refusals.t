#!/bin/bash
# 406-clone-refusals.t — everything is checked before anything is written:
# each refusal exits 1 with one "kimg: ..." line and creates no file.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture web01
clone_fixture db01
mkdir -p dst
snapshot_sources vm
state() { files_in vm; echo --; files_in dst; }
refuse() {   # refuse NAME REGEX ARGS...
    local name=$1 re=$2; shift 2
    state > before.list
    kimg clone "$@"
    err_line "$name"
    like "$(< err)" "$re" "$name: says why"
    state > after.list
    is "$(diff before.list after.list)" "" "$name: no file created"
}
refuse "new name = the original's" "is the original's" --original-xml vm/web01.xml -n web01 --auto-clone
refuse "destination exists" "already exists.*never overwrites" \
       --original-xml vm/web01.xml -n w2 -f dst/a -f vm/install.iso -f dst/c
touch dst/exists
refuse "destination exists (regular --file)" "dst/exists already exists" \
       --original-xml vm/web01.xml -n w2 -f dst/a -f dst/exists -f dst/c
rm dst/exists
ln -s /nonexistent dst/dangling
refuse "destination is a dangling symlink" "already exists" \
       --original-xml vm/web01.xml -n w2 -f dst/dangling -f dst/b -f dst/c
rm dst/dangling
refuse "destination folder missing" "folder $T/nope does not exist" \
       --original-xml vm/web01.xml -n w2 -f nope/a -f dst/b -f dst/c
refuse "network disk" "vdb: a network disk \(rbd\) cannot be cloned; share it with --skip-copy vdb" \
       --original-xml vm/db01.xml --auto-clone
refuse "bad name" "contains '/'" --original-xml vm/web01.xml -n a/b --auto-clone
refuse "empty name" "empty" --original-xml vm/web01.xml -n '' --auto-clone
refuse "missing XML" "cannot open the domain XML" --original-xml vm/nope.xml --auto-clone
refuse "--original NAME (needs libvirt)" "works offline" --original web01 --auto-clone
refuse "no --original-xml" "original-xml FILE is required" --auto-clone -n x
refuse "nvram destination exists" "nvram: .*already exists" \
       --original-xml vm/web01.xml -n w2 --auto-clone --nvram vm/nvram/db01_VARS.fd
refuse "--output-xml in a missing folder" "does not exist" \
       --original-xml vm/web01.xml -n w2 --auto-clone --output-xml nope/x.xml
refuse "--output-xml over a source disk" "disk or nvram" \
       --original-xml vm/web01.xml -n w2 --auto-clone --output-xml vm/data.img
mv vm/logs.qcow2 logs.qcow2.away
refuse "source missing" "vdc: the source $T/vm/logs.qcow2 does not exist" \
       --original-xml vm/web01.xml -n w2 --auto-clone
mv logs.qcow2.away vm/logs.qcow2
chmod 0555 dst
if [ "$(id -u)" = 0 ]; then
    skip "folder not writable" "root writes anywhere"; skip "x" "root"; skip "x" "root"; skip "x" "root"
else
    refuse "folder not writable" "not writable" --original-xml vm/web01.xml -n w2 -f dst/a -f dst/b -f dst/c
fi
chmod 0755 dst
ok "sources unchanged" sources_unchanged vm
kimg clone --original-xml vm/web01.xml -n w2 --bogus
err_line "an unknown option"
kimg clone --original-xml vm/web01.xml --name
err_line "an option without its argument"
done_testing
