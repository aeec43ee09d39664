#!/bin/bash
# 420-clone-batch-failure.t — a batch is all or nothing: a failure in any
# clone's copy (a file size limit, a full filesystem) or a signal removes
# every file the run made, the completed clones' too; --keep-going keeps
# the clones that completed, removes the failed ones' files, reports them
# (--report-json: status and error) and exits 1.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture web01
snapshot_sources vm
files_in vm > before.list
left() { files_in vm | diff before.list - | grep '^>' || true; }

# vda (1.4M) of three clones fits under 2 MiB each, vdc's flattened copy does not
run bash -c "ulimit -f 2048; exec '$KIMG' clone --original-xml vm/web01.xml -n 'w{n}' --count 3 --auto-clone -q"
is "$RC" 1 "a write past ulimit -f fails the batch"
like "$(< err)" "^kimg: vd.: cloning .*File too large" "one line naming the disk and the cause"
is "$(left)" "" "every file removed, the disks every clone had completed too"
ok "sources unchanged" sources_unchanged vm

if [ "$(id -u)" = 0 ] && mkdir -p small && mount -t tmpfs -o size=1m tmpfs small 2> /dev/null; then
    trap 'umount "$T/small"; _tap_cleanup' EXIT
    mkdir -p d1 d3
    ln -s "$T/small" d2
    tmplopts=(-f 'd{n}/root.qcow2' -f 'd{n}/data.img' -f 'd{n}/logs.qcow2' --nvram 'd{n}/VARS.fd')
    kimg clone --original-xml vm/web01.xml -n 'k{n}' --count 3 "${tmplopts[@]}" -q
    is "$RC" 1 "clone 2's full filesystem fails the batch"
    like "$(< err)" "No space left" "says so"
    is "$(files_in d1; files_in small; files_in d3)" "" "every file of every clone removed"

    kimg clone --original-xml vm/web01.xml -n 'k{n}' --count 3 "${tmplopts[@]}" -q \
         --keep-going --report-json r.json --output-xml 'k{n}.xml'
    is "$RC" 1 "--keep-going: exit 1 when a clone failed"
    like "$(< err)" "No space left" "the failed clone's reason"
    like "$(tail -n 1 err)" "1 of 3 clones failed; the other 2 were created" "and a summary"
    is "$(files_in d1 | tr '\n' ' ')" "VARS.fd data.img logs.qcow2 root.qcow2 " "clone 1 kept"
    is "$(files_in d3 | tr '\n' ' ')" "VARS.fd data.img logs.qcow2 root.qcow2 " "clone 3 kept"
    is "$(files_in small)" "" "clone 2's files removed"
    ok "clone 1's vda" qemu_oracle_compare vm/web01.qcow2 d1/root.qcow2
    ok "clone 3's vdc" qemu_oracle_compare vm/logs.qcow2 d3/logs.qcow2
    ok "clone 3's vdb" cmp -s vm/data.img d3/data.img
    is "$(ls k*.xml | tr '\n' ' ')" "k1.xml k3.xml " "the XML of the clones made"
    $PY - r.json <<'PYEOF' > rep.txt
import json, sys
r = json.load(open(sys.argv[1]))
print(r["count"], r["failed"])
for c in r["clones"]:
    print(c["name"], c["status"], "No space left" in (c["error"] or "-"))
PYEOF
    is "$(< rep.txt)" "3 1
k1 created False
k2 failed True
k3 created False" "the report: every clone, the failed one with its error"
else
    for i in $(seq 1 14); do skip "full filesystem" "needs root to mount a tmpfs"; done
fi

# signals: a big disk, the batch's copy still running when one comes
mkdir -p store
qemu-img create -q -f qcow2 store/big.qcow2 1G
qemu-io -f qcow2 -c "write -P 0x5a 0 256M" store/big.qcow2 > /dev/null
sed "s|$T/vm/data.img|$T/store/big.qcow2|; s|type='raw' cache|type='qcow2' cache|" vm/web01.xml > big.xml
files_in vm > before.list
for sig in TERM INT; do
    env --default-signal=INT "$KIMG" clone --original-xml big.xml -n "s$sig-{n}" --count 3 \
        --auto-clone -q > /dev/null 2>&1 &
    pid=$!
    for i in $(seq 1 2000); do   # until the big disk's temporary copies exist
        ls -a store | grep -q '^\.big-s.*-2\.qcow2\.kimg-' && break
        nap 0.005
    done
    kill -$sig $pid
    wait $pid; rc=$?
    if [ "$rc" = 0 ]; then
        skip "SIG$sig mid-copy" "the copy finished before the signal"; skip "x" "fast"
        files_in vm | diff before.list - | sed -n 's/^> //p' | (cd vm && xargs -r rm -f)
        rm -f store/big-s*.qcow2
        continue
    fi
    is "$rc" "$((128 + $(kill -l $sig)))" "SIG$sig: the batch ends by the signal"
    is "$(left; files_in store | grep -v '^big.qcow2$')" "" "SIG$sig: every file of every clone removed"
done
ok "sources unchanged" sources_unchanged vm
done_testing
