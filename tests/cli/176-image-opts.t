#!/bin/bash
# --image-opts (and convert's --target-image-opts, compare's two sides):
# the image argument is a QemuOpts string "driver=FMT,file.filename=PATH,
# ...".  Every command that takes it in qemu-img 7.2 gives qemu-img's
# output and exit code on twins; wrong strings fail with qemu-img's first
# line ("Could not open 'STRING': why"), exit code as qemu-img's; -f with
# it, --target-image-opts without -n refused as qemu-img refuses them.
# make check: a third of the wrong strings' string x command cases and of
# the writing cases beyond one per command (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"

qemu-img create -q -f qcow2 base.qcow2 1M
qemu-io -f qcow2 -c "write -P 0x5a 0 64k" base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -f qcow2 -c "write -P 0x33 128k 64k" top.qcow2 > /dev/null
qemu-img create -q -f raw flat.raw 1M
BO=driver=qcow2,file.filename=base.qcow2
TO=driver=qcow2,file.filename=top.qcow2

# reading commands: stdout and exit code as qemu-img's
for args in "info --image-opts $BO" "info --output=json --image-opts $TO" \
            "info --backing-chain --image-opts $TO" "info --image-opts file.filename=top.qcow2" \
            "info --image-opts driver=raw,file.filename=base.qcow2" \
            "info --image-opts $BO,file.driver=file,node-name=n0,read-only=on,cache.direct=off" \
            "info --image-opts $BO,force-share=on,file.locking=off,discard=unmap,detect-zeroes=on" \
            "info --image-opts driver=qcow2,file.filename=base.qcow2,driver=raw" \
            "check --image-opts $BO" "check --output=json --image-opts $TO" \
            "map --output=json --image-opts $TO" "map --image-opts $TO" \
            "measure -O qcow2 --image-opts $TO" "snapshot -l --image-opts $BO" \
            "compare --image-opts $BO $TO" "compare --image-opts $TO $TO" \
            "compare -s --image-opts $BO $BO"; do
    oracle "$args" $args
done

# wrong option strings: qemu-img's message and exit code
while IFS= read -r s; do
    for cmd in info check "map --output=json" "compare base.qcow2" "measure -O qcow2"; do
        sampled || continue     # check: a third of the cases; check-slow: the rest
        qimg $cmd --image-opts "$s"; kimg $cmd --image-opts "$s"
        is "$RC" "$QRC" "$cmd --image-opts '$s': exit code $QRC as qemu-img's"
        err_line "$cmd --image-opts '$s'"
        # qemu-img warns first about a bare "foo" and adds a line after "id"
        # (its first other line, read by bash: no grep, head, sed)
        want=; while IFS= read -r l; do
            case $l in Please* | *'warning: short'* | Identifiers*) continue ;; esac
            want=${l#qemu-img: }; break
        done < "$T/qerr"
        got=$(< "$T/err")
        is "${got#kimg: }" "$want" "$cmd --image-opts '$s': qemu-img's message"
    done
done <<'EOF'
base.qcow2
id
file=base.qcow2
filename=base.qcow2
driver=qcow2,filename=base.qcow2
driver=qcow2,file.filename=base.qcow2,foo=bar
driver=qcow2,file.filename=base.qcow2,file.foo=bar
driver=qcow2,file.filename=base.qcow2,file.driver=host_device
driver=qcow3,file.filename=base.qcow2
driver=qcow3
driver=qcow2,file.filename=nosuch
driver=qcow2
driver=qcow2,file.filename=base.qcow2,,x
driver=qcow2,,file.filename=base.qcow2
driver=qcow2,file.filename=base.qcow2,=x
driver=qcow2,file.filename=base.qcow2,foo
driver=qcow2,file.filename=base.qcow2,nofoo

driver=qcow2,file.filename=base.qcow2,id=x
driver=qcow2,file.filename=base.qcow2,id=0x
driver=qcow2,file.filename=base.qcow2,help
driver=qcow2,file.filename=base.qcow2,cache.direct=x
driver=qcow2,file.filename=base.qcow2,read-only=x
driver=qcow2,file.filename=base.qcow2,discard=x
driver=qcow2,file.filename=base.qcow2,detect-zeroes=x
driver=qcow2,file.filename=base.qcow2,file.aio=x
driver=qcow2,file.filename=base.qcow2,file.aio=native
driver=qcow2,file.filename=base.qcow2,file.locking=x
driver=qcow2,file.filename=base.qcow2,file.filename=nosuch
driver=qcow2,file.filename=base.qcow2,file=x
driver=qcow2,file.filename=file:base.qcow2
driver=qcow2,file.filename=base.qcow2,x.y=1
EOF

# options kimg does not take: one clear line
for s in "$BO,file.driver=ssh" "driver=file,filename=base.qcow2"; do
    kimg info --image-opts "$s"
    err_line "info --image-opts '$s'"
    like "$(< "$T/err")" "^kimg: Could not open '$s': .*(not supported|protocol)" \
        "info --image-opts '$s': says what kimg takes"
done

# -f with --image-opts, as qemu-img (the twins' sums taken once: each
# case compares with the files as created)
before=$(sha256sum base.qcow2 top.qcow2)
for args in "info -f qcow2 --image-opts $BO" "check -f qcow2 --image-opts $BO" \
            "map -f qcow2 --image-opts $BO" "compare -f qcow2 --image-opts $BO $BO" \
            "compare -F qcow2 --image-opts $BO $BO" "convert -f qcow2 --image-opts -O raw $BO x.raw" \
            "measure -O qcow2 -f qcow2 --image-opts $BO" "commit -f qcow2 --image-opts $TO" \
            "amend -f qcow2 -o lazy_refcounts=on --image-opts $BO" \
            "rebase -u -b base.qcow2 -F qcow2 -f qcow2 --image-opts $TO" \
            "resize -f qcow2 --image-opts $BO 2M"; do
    qimg $args; kimg $args
    read -r l < "$T/qerr" || true
    [[ $l == qemu-img* ]] && l=kimg${l#qemu-img}
    is "$RC:$(< "$T/err")" "$QRC:$l" "$args: exit code and message as qemu-img's"
    is "$(sha256sum base.qcow2 top.qcow2)" "$before" "$args: nothing changed"
done
oracle "convert --target-image-opts without -n" convert --target-image-opts base.qcow2 "$BO"
is "$(< "$T/err")" "kimg: --target-image-opts requires use of -n flag" \
    "convert --target-image-opts without -n: qemu-img's message"
oracle "convert -n -O with --target-image-opts" convert -n -O qcow2 --target-image-opts base.qcow2 "$BO"

# writing commands, each on twins q/ and k/: twin_case one of the sampled
# cases, twin_each a command's first case (run in each part)
twin_case() {
    sampled || return 0         # check: a third of the cases; check-slow: the rest
    twin_each "$@"
}
twin_each() {
    local name=$1; shift
    rm -rf q k; cp -r orig q; cp -r orig k
    QRC=0; cd q; qemu-img "$@" > ../qout 2> ../qerr < /dev/null || QRC=$?; cd ..
    RC=0; cd k; "$KIMG" "$@" > ../out 2> ../err < /dev/null || RC=$?; cd ..
    is "$RC" "$QRC" "$name: exit code $QRC as qemu-img's" || diag "$(< err)"
    is_file out qout "$name: stdout as qemu-img's"
    [ "$QRC" -eq 0 ] || is "$(sed 's/^kimg: //' err)" "$(head -1 qerr | sed 's/^qemu-img: //')" \
        "$name: qemu-img's message"
    local f
    for f in base.qcow2 top.qcow2 flat.raw new.qcow2 new.raw; do
        [ -e q/$f ] || continue
        # byte-identical twins (a file neither command wrote, or kimg
        # wrote qemu-img's bytes): the same guest data and header, no
        # qemu-img compare and info needed
        if [ -e k/$f ] && cmp -s q/$f k/$f; then
            pass "$name: $f reads as qemu-img's (byte-identical)"
            pass "$name: $f's header as qemu-img's (byte-identical)"
            continue
        fi
        is "$(qemu-img compare q/$f k/$f 2>&1)" "Images are identical." \
            "$name: $f reads as qemu-img's"
        is "$(info_hdr k $f)" "$(info_hdr q $f)" "$name: $f's header as qemu-img's"
    done
}
# info_hdr DIR FILE: qemu-img info of DIR/FILE (run in DIR), the lines
# that differ between twins (sizes on disk, dirty flag, dates) dropped by bash
info_hdr() {
    local l
    cd "$1" && qemu-img info -U --output=json "$2" > ../info.json; cd ..
    while IFS= read -r l; do
        case $l in *actual-size* | *dirty* | *date-*) ;; *) echo "$l" ;; esac
    done < info.json
}
mkdir orig; cp base.qcow2 top.qcow2 flat.raw orig/
twin_each "convert --image-opts" convert -O qcow2 --image-opts "$TO" new.qcow2
twin_case "convert two sources" convert -O raw --image-opts "$BO" "$TO" new.raw
twin_case "convert -n --target-image-opts" convert -n --target-image-opts top.qcow2 "$BO"
twin_case "convert -n, both" convert -n --image-opts --target-image-opts "$TO" "$BO"
twin_case "convert -n raw target" convert -n --target-image-opts "$TO" driver=raw,file.filename=flat.raw
twin_each "amend" amend -o lazy_refcounts=on --image-opts "$BO"
twin_each "resize" resize --image-opts "$BO" 3M
twin_case "resize --shrink" resize --shrink --image-opts "$TO" 512K
twin_case "rebase -u" rebase -u -b '' --image-opts "$TO"
twin_each "rebase" rebase -b flat.raw -F raw --image-opts "$TO"
twin_each "commit" commit --image-opts "$TO"
twin_case "commit -d" commit -d --image-opts "$TO"
twin_case "commit, backing.driver" commit --image-opts "$TO,backing.driver=qcow2"
twin_case "commit, bad backing option" commit --image-opts "$TO,backing.foo=1"
twin_case "map, backing.driver=raw" map --output=json --image-opts "$TO,backing.driver=raw"
twin_each "snapshot -c" snapshot -c sn1 --image-opts "$BO"
twin_case "snapshot -a" snapshot -a nosuch --image-opts "$BO"
twin_case "commit, bad option" commit --image-opts "$TO,foo=1"
twin_case "amend, bad option" amend -o lazy_refcounts=on --image-opts "$BO,foo=1"
twin_case "resize, read-only=on" resize --image-opts "$BO,read-only=on" 2M
twin_case "resize, force-share=on" resize --image-opts "$BO,force-share=on" 2M
twin_case "resize, read-only=off" resize --image-opts "$BO,read-only=off" 2M

# libvirt's encrypted-volume lines take --object with --image-opts; the
# options reach the open (here refused as qemu-img refuses a plain image's)
kimg info --object secret,id=s0,data=kimg-opts-secret --image-opts "$BO,file.foo=1"
is "$RC" 1 "--object with --image-opts: a bad option still fails"
ok "--object with --image-opts: no secret in the message" \
    bash -c "! grep -q kimg-opts-secret '$T/err' '$T/out'"

# locks: force-share=on reads an image a qemu-io holds, as -U does
hold_lock base.qcow2
oracle "locked, without force-share" info --image-opts "$BO"
oracle "locked, force-share=on" info --image-opts "$BO,force-share=on"

done_testing
