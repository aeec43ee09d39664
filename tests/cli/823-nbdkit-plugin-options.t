#!/bin/bash
# nbdkit-kimg-plugin's parameters: disk=N serves each disk of an OVA
# (qcow2, raw and vpc members, read-only, checked against the extracted
# members); object= and image-opts= serve a LUKS volume and a
# LUKS-encrypted qcow2 (read, and written with readonly=false, checked
# through qemu with the same secret), a wrong or missing key fails the
# open; force-share=true serves an image another process holds the
# write lock of, and without it the export is refused; the magic key
# (`nbdkit kimg.so PATH`); bad parameters fail at startup with one error;
# --help lists them and --dump-plugin shows kimg's version and formats.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/nbdkit.sh"
# A sanitizer build's plugin runs in nbdkit with libasan preloaded, and
# nbdkit then hangs for good in libc's exit handlers after the refused
# starts this test makes (p11-kit freeing its locale; not kimg's code):
# skipped there.  820-822 run the plugin's code under ASan+UBSan.
[ ${#NBDKIT_ENV[@]} -gt 0 ] && skip_all "nbdkit hangs at exit with libasan preloaded after refused starts"
. "$KIMG_SRC/tests/cli/ova.sh"

# OVA disks
disks_made
ovf_write vm.ovf vmware1 d1.qcow2 d2.raw d3.vhd
ova_tar vm.ova ustar vm.ovf d1.qcow2 d2.raw d3.vhd
i=0
for d in d1.qcow2:qcow2 d2.raw:raw d3.vhd:vpc; do
    i=$((i + 1)); f=${d%:*} fmt=${d#*:}
    qemu-img convert -f "$fmt" -O raw "$f" want.raw
    nbd_run file=vm.ova disk=$i -- 'nbdcopy "$uri" got.raw'
    is "$RC" 0 "OVA disk=$i ($f): nbdcopy"
    ok "  the member's content" cmp -s got.raw want.raw
    rm -f got.raw
done
nbd_run file=vm.ova -- 'nbdcopy "$uri" got.raw'
qemu-img convert -f qcow2 -O raw d1.qcow2 d1.raw
ok "OVA without disk=: the first disk" cmp -s got.raw d1.raw
nbd_run file=vm.ova disk=1 readonly=false -- 'nbdinfo --json "$uri"'
like "$(< "$T/out")" '"is_read_only": true' "OVA disk with readonly=false: read-only"
nbd_run file=vm.ova disk=4 -- 'nbdinfo "$uri"'
isnt "$RC" 0 "OVA disk=4 of 3: refused"
like "$(grep -m1 'error:' "$T/err")" "the archive has 3 disks, not 4" "  with kimg's reason"
nbd_run file=d1.qcow2 disk=2 -- 'nbdinfo "$uri"'
like "$(grep -m1 'error:' "$T/err")" "not an OVA archive" "disk= on a plain image: refused"

# LUKS and encrypted qcow2 through object= and image-opts=
printf 'pass phrase' > pw
printf 'wrong' > bad
sec=secret,id=s0,file=pw
qemu-img create -q -f luks --object $sec -o key-secret=s0,iter-time=10 v.luks 8M
qemu-img create -q -f qcow2 --object $sec -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 \
    e.qcow2 8M
L="driver=luks,file.filename=v.luks,key-secret=s0"
E="driver=qcow2,file.filename=e.qcow2,encrypt.key-secret=s0"
for spec in "$L" "$E"; do
    name=${spec%%,*}; name=${name#driver=}
    qemu-io --object $sec --image-opts "$spec" -c 'write -P 0x5a 1M 1M' > /dev/null
    nbd_run object=$sec image-opts="$spec" -- 'nbdcopy "$uri" got.raw'
    is "$RC" 0 "$name: served with object= and image-opts="
    qemu-img convert --object $sec --image-opts "$spec" -O raw want.raw
    ok "  the plaintext, as qemu-img reads it" cmp -s got.raw want.raw
    rm -f got.raw
    nbd_run object=$sec image-opts="$spec" readonly=false -- \
        'qemu-io -f raw -c "write -P 0x66 3M 64k" -c "write -z 1M 4k" "$uri"'
    is "$RC" 0 "$name: written through the export"
    qemu-io --object $sec --image-opts "$spec" -c 'read -P 0x66 3M 64k' -c 'read -P 0 1M 4k' \
        -c 'read -P 0x5a 1052672 1044480' > q.out 2>&1
    is "$(grep -c '^read ' q.out)" 3 "  qemu reads the writes with the key"
    nbd_run object=secret,id=s0,file=bad image-opts="$spec" -- 'nbdinfo "$uri"'
    isnt "$RC" 0 "$name: a wrong key fails"
    like "$(grep -m1 'error:' "$T/err")" "Invalid password" "  with kimg's reason"
done
qemu-img check -q --object $sec --image-opts "$E" && pass "encrypted qcow2: qemu-img check clean" ||
    fail "encrypted qcow2: qemu-img check clean"
nbd_run file=v.luks -- 'nbdinfo "$uri"'
like "$(grep -m1 'error:' "$T/err")" "key-secret" "luks without a key: refused, kimg's reason"
grep -q 'pass phrase' "$T/err" && fail "no secret in the messages" || pass "no secret in the messages"

# force-share and the image's locks
qemu-img create -q -f qcow2 busy.qcow2 4M
hold_lock busy.qcow2
nbd_run file=busy.qcow2 -- 'nbdinfo "$uri"'
isnt "$RC" 0 "an image another process writes: refused"
like "$(grep -m1 'error:' "$T/err")" "lock" "  kimg's reason names the lock"
nbd_run file=busy.qcow2 force-share=true -- 'nbdcopy "$uri" null:'
is "$RC" 0 "force-share=true: served"

# the magic key, bad parameters, help, dump-plugin
qemu-img create -q -f qcow2 m.qcow2 4M
RC=0; "${NBDKIT_ENV[@]}" nbdkit -U - "$PLUGIN" m.qcow2 --run "${NBDKIT_UNENV}"'nbdinfo --size "$uri"' > out 2>&1 || RC=$?
is "$(< out)" 4194304 "the magic key: nbdkit kimg.so PATH"
bad() {   # bad NAME WANT ARGS...: nbdkit refuses to start, one error line
    local name=$1 want=$2; shift 2
    RC=0; "${NBDKIT_ENV[@]}" nbdkit -U - "$PLUGIN" "$@" --run true > out 2>&1 || RC=$?
    isnt "$RC" 0 "$name: nbdkit does not start"
    like "$(< out)" "$want" "  $name: $want"
}
bad "no file" "file=PATH" format=qcow2
bad "file and image-opts" "name the image twice" file=m.qcow2 image-opts=driver=qcow2,file.filename=m.qcow2
bad "image-opts and format" "no format= or disk=" image-opts=driver=qcow2,file.filename=m.qcow2 format=raw
bad "disk and format" "not with format=" file=m.qcow2 disk=1 format=qcow2
bad "unknown parameter" "unknown parameter 'color'" file=m.qcow2 color=red
bad "readonly=maybe" "maybe" file=m.qcow2 readonly=maybe
bad "force-share with readonly=false" "read-only exports" file=m.qcow2 force-share=true readonly=false
bad "missing file" "No such file" file=nothere.qcow2
bad "a bad object" "'file' or 'data'" object=secret,id=s1
bad "bad image-opts" "expects an identifier" image-opts=id=9x,driver=qcow2,file.filename=m.qcow2
nbd_run image-opts=driver=qcow2,file.filename=m.qcow2,bogus=1 -- 'nbdinfo "$uri"'
like "$(grep -m1 'error:' "$T/err")" "does not support the option 'bogus'" \
    "image-opts with an option no part of kimg reads: the export is refused"
"${NBDKIT_ENV[@]}" nbdkit "$PLUGIN" --help > help.out 2>&1
for k in file= format= disk= readonly=false untrusted=true force-share=true object= image-opts=; do
    grep -q -- "^$k" help.out && pass "--help lists $k" || fail "--help lists $k" "$(< help.out)"
done
"${NBDKIT_ENV[@]}" nbdkit "$PLUGIN" --dump-plugin > dump.out 2>&1
like "$(grep '^kimg_version=' dump.out)" "^kimg_version=$("$KIMG" --version | sed 's/.* //')$" \
    "--dump-plugin: kimg_version"
like "$(grep '^kimg_formats=' dump.out)" "^kimg_formats=.*qcow2.*raw" "--dump-plugin: kimg_formats"
like "$(grep '^thread_model=' dump.out)" "^thread_model=parallel$" "--dump-plugin: parallel thread model"
done_testing
