#!/bin/bash
# qemu's deprecated "backing=" (empty) in --image-opts, as qemu-img 7.2
# takes it: a warning line ('Use of "backing": "" is deprecated; use
# "backing": null instead'), then the image opens without its backing
# file (unallocated ranges read as zeros, map shows them absent), the
# stored backing name still shown by info, and the option left out of the
# image's json: name.  On an encrypted overlay over a plain base, on a
# plain overlay and on an image with no backing file; info (human, JSON,
# --backing-chain, which still lists the base, opened by its name), map,
# convert, compare, check, measure: exit code,
# stdout and stderr as qemu-img's.  And backing_file= (empty) at create:
# qemu's "Expected backing file name, got empty string".
. "$(dirname "$0")/lib.sh"

printf 'backing-empty-key' > KEY
obj=(--object secret,id=s,file=KEY)
qemu-img create -q -f qcow2 base.qcow2 1M
qemu-io -f qcow2 -c 'write -P 7 0 1M' base.qcow2 > /dev/null
qemu-img create -q -f qcow2 plain.qcow2 1M
qemu-io -f qcow2 -c 'write -P 3 128k 64k' plain.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 over.qcow2 1M
qemu-io -f qcow2 -c 'write -P 1 0 64k' over.qcow2 > /dev/null
for i in 1 2 3 4 5; do   # qemu-img's PBKDF2 benchmark fails now and then under load
    qemu-img create -q "${obj[@]}" -f qcow2 -o encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10 \
        -b base.qcow2 -F qcow2 enc.qcow2 1M 2> /dev/null && break
done
qemu-io "${obj[@]}" --image-opts driver=qcow2,file.filename=enc.qcow2,encrypt.key-secret=s \
    -c 'write -P 1 0 64k' > /dev/null

# both NAME ARGS...: exit code, stdout and stderr (the program's name
# aside) as qemu-img's; a written out.raw as qemu-img's
both() {
    local name=$1; shift
    rm -f out.raw; qimg "$@"; [ -e out.raw ] && mv out.raw qout.raw
    kimg "$@"
    is "$RC" "$QRC" "$name: exit code as qemu-img's"
    is_file "$T/out" "$T/qout" "$name: stdout as qemu-img's"
    is "$(sed 's/^kimg: /P: /' "$T/err")" "$(sed 's/^qemu-img: /P: /' "$T/qerr")" "$name: stderr as qemu-img's"
    if [ -e qout.raw ]; then ok "$name: the same output file" cmp -s out.raw qout.raw; fi
    rm -f out.raw qout.raw
}

for spec in "driver=qcow2,file.filename=enc.qcow2,encrypt.key-secret=s,backing=" \
            "driver=qcow2,file.filename=over.qcow2,backing=" \
            "driver=qcow2,file.filename=plain.qcow2,backing="; do
    n=${spec#*filename=}; n=${n%%,*}
    # (info without actual-size: the two runs may see different disk usage)
    # (info --backing-chain: the base is still listed, opened by its name)
    for c in "info" "info --output=json" "info --backing-chain" "info --backing-chain --output=json" \
             "map --output=json" "map" "check"; do
        both "$c $n backing=" $c "${obj[@]}" --image-opts "$spec"
    done
    both "convert -O raw $n backing=" convert "${obj[@]}" --image-opts "$spec" -O raw out.raw
    both "compare $n backing= base" compare "${obj[@]}" --image-opts "$spec" driver=qcow2,file.filename=base.qcow2
    both "compare base $n backing=" compare "${obj[@]}" --image-opts driver=qcow2,file.filename=base.qcow2 "$spec"
    both "measure $n backing=" measure -O qcow2 "${obj[@]}" --image-opts "$spec"
done
# without backing=, the base's data shows through (the option matters)
kimg convert "${obj[@]}" --image-opts driver=qcow2,file.filename=enc.qcow2,encrypt.key-secret=s -O raw with.raw
kimg convert "${obj[@]}" --image-opts driver=qcow2,file.filename=enc.qcow2,encrypt.key-secret=s,backing= -O raw without.raw
ok "backing= reads zeros where the base has data" eval '! cmp -s with.raw without.raw &&
    [ "$(od -An -tx1 -j 65536 -N 1 with.raw | tr -d " ")" = 07 ] &&
    [ "$(od -An -tx1 -j 65536 -N 1 without.raw | tr -d " ")" = 00 ]'

# create: an empty backing file name
for o in backing_file= backing_file=,backing_fmt=qcow2 \
         encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10,backing_file=; do
    rm -f c.qcow2 qc.qcow2
    qimg create -q "${obj[@]}" -f qcow2 -o "$o" qc.qcow2 1M
    kimg create -q "${obj[@]}" -f qcow2 -o "$o" c.qcow2 1M
    is "$RC" "$QRC" "create -o $o: exit code as qemu-img's"
    is "$(sed 's/^kimg: c.qcow2: //' "$T/err")" "$(sed 's/^qemu-img: qc.qcow2: //' "$T/qerr")" \
        "create -o $o: qemu-img's message"
    ok "create -o $o: no file left" test ! -e c.qcow2
done
done_testing
