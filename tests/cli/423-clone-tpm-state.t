#!/bin/bash
# 423-clone-tpm-state.t — --copy-tpm-state copies swtpm's state folder
# (STATEDIR/UUID, --tpm-state-dir, libvirt's layout) to the clone's UUID
# with modes kept, warning that the clone shares the template's TPM
# identity; without it nothing is copied and kimg says so once; a template
# never started has no state; refusals (a symlink inside, an existing
# folder for the new UUID); a failure or a signal after the copy removes
# it, its folders too.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture web01
clone_fixture tiny
old=4dea22b3-1d52-d8f3-2516-782e98ab3fa0
mkdir -p sd/$old/tpm2
head -c 9000 /dev/urandom > sd/$old/tpm2/tpm2-00.permall
echo log > sd/$old/tpm2/tpm2-00.volatilestate
chmod 600 sd/$old/tpm2/tpm2-00.permall
chmod 640 sd/$old/tpm2/tpm2-00.volatilestate
chmod 711 sd/$old
chmod 700 sd/$old/tpm2
modes() { (cd "sd/$1" && find . -printf '%p %m %s\n' | sort); }

kimg clone --original-xml vm/web01.xml -n t1 --auto-clone --skip-copy vda --skip-copy vdb \
     --skip-copy vdc --copy-tpm-state --tpm-state-dir sd
is "$RC" 0 "--copy-tpm-state"
new=$(xml_get out uuid)
ok "the clone's state folder is named by its UUID" test -d "sd/$new"
is "$(modes "$new")" "$(modes $old)" "the same files, sizes and modes"
ok "the same content" cmp -s sd/$old/tpm2/tpm2-00.permall sd/$new/tpm2/tpm2-00.permall
like "$(< err)" "shares its TPM identity \(endorsement key, sealed secrets\)" "a warning about the shared identity"
is "$(grep -c TPM err)" 1 "said once"

kimg clone --original-xml vm/web01.xml -n t2 --auto-clone --skip-copy vda --skip-copy vdb \
     --skip-copy vdc
is "$(grep -c "TPM's state is not copied; the clone starts with an empty TPM" err)" 1 \
   "without the option: not copied, said once"

ls sd > before.list
kimg clone --original-xml vm/web01.xml -n 'b{n}' --count 3 --auto-clone --skip-copy vda \
     --skip-copy vdb --skip-copy vdc --copy-tpm-state --tpm-state-dir sd -q --output-xml 'b{n}.xml'
is "$RC" 0 "a batch with --copy-tpm-state"
for i in 1 2 3; do
    u=$(xml_get b$i.xml uuid)
    ok "b$i: its own state folder" cmp -s sd/$old/tpm2/tpm2-00.permall sd/$u/tpm2/tpm2-00.permall
done
is "$(grep -c TPM err)" 0 "-q: no warning"

# a failure after the copy (stdout closed) removes the copied state
ls sd > before.list
run bash -c "exec '$KIMG' clone --original-xml vm/web01.xml -n t3 --auto-clone --skip-copy vda \
     --skip-copy vdb --skip-copy vdc --copy-tpm-state --tpm-state-dir sd >&-"
is "$RC" 1 "writing the XML fails"
is "$(ls sd)" "$(< before.list)" "the copied state folder removed"
ok "no nvram copy left" test ! -e vm/nvram/t3_VARS.fd

# a signal after the copy (the XML waits on a FIFO nobody reads) removes
# the copied state, its folders too
for sig in TERM INT; do
    ls sd > before.list
    rm -f fifo.xml
    mkfifo fifo.xml
    env --default-signal=INT "$KIMG" clone --original-xml vm/web01.xml -n "s$sig" --auto-clone \
        --skip-copy vda --skip-copy vdb --skip-copy vdc --copy-tpm-state --tpm-state-dir sd -q \
        --output-xml fifo.xml > /dev/null 2>&1 &
    pid=$!
    for i in $(seq 1 2000); do   # until the clone's state folder is there
        [ "$(ls sd | wc -l)" -gt "$(wc -l < before.list)" ] && break
        nap 0.005
    done
    nap 0.2
    kill -$sig $pid
    wait $pid; rc=$?
    is "$rc" "$((128 + $(kill -l $sig)))" "SIG$sig after the state's copy: ends by the signal"
    is "$(ls sd)" "$(< before.list)" "SIG$sig: the copied state folder removed, folders too"
    ok "SIG$sig: no nvram copy left" test ! -e vm/nvram/s${sig}_VARS.fd
done
rm -f fifo.xml

# refusals
kimg clone --original-xml vm/web01.xml -n t4 --auto-clone --skip-copy vda --skip-copy vdb \
     --skip-copy vdc --copy-tpm-state --tpm-state-dir sd --uuid "$new"
is "$RC" 1 "an existing state folder for the new UUID"
like "$(< err)" "$new already exists" "is refused"
ln -s /etc/passwd sd/$old/tpm2/evil
kimg clone --original-xml vm/web01.xml -n t5 --auto-clone --copy-tpm-state --tpm-state-dir sd -q
is "$RC" 1 "a symlink in the state folder"
like "$(< err)" "evil is not a file or folder; refused" "is refused"
ok "before any write" test ! -e vm/t5.qcow2 -a ! -e vm/nvram/t5_VARS.fd
rm sd/$old/tpm2/evil

# a template never started, a domain without TPM
mv sd/$old sd/saved
kimg clone --original-xml vm/web01.xml -n t6 --auto-clone --skip-copy vda --skip-copy vdb \
     --skip-copy vdc --copy-tpm-state --tpm-state-dir sd
is "$RC" 0 "no state yet"
like "$(< err)" "no TPM state yet \(never started\); the clone starts with an empty TPM" "says so"
kimg clone --original-xml vm/tiny.xml -n t7 --auto-clone --skip-copy vda --copy-tpm-state --tpm-state-dir sd
is "$RC" 0 "a domain without TPM"
like "$(< err)" "copy-tpm-state ignored: the domain has no emulated TPM" "a warning"
done_testing
