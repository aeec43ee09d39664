#!/bin/bash
# luks volumes made and written by qemu-img/qemu-io, read by kimg with the
# key through --image-opts: info, map (JSON as qemu-img's; the human form
# refused as qemu-img refuses it), compare, convert -O raw, checksum, all
# as qemu-img's.  Then kimg writes into a qemu-made volume (convert -n
# --target-image-opts) and qemu-img reads it back.
# make check: one of the three volumes' read checks (aes-128-cbc-essiv
# with sha1: the most header fields and the IV generator's own hash; the
# default cipher is read in the rest of the file and in tests 172-174);
# check-slow the other two (lib.sh sampled).
. "$(dirname "$0")/lib.sh"

printf 'read-test-key' > key
obj=(--object secret,id=s0,file=key)
head -c 3M /dev/urandom > data.raw
head -c 1M /dev/zero >> data.raw
kimg checksum data.raw
sum=$(cut -d' ' -f1 "$T/out")
# (ordered so that check's third takes the essiv volume)
for opts in "cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv,hash-alg=sha1" "" \
            "cipher-alg=aes-256,cipher-mode=xts,ivgen-alg=plain64,hash-alg=sha512"; do
    sampled || continue         # check: a third of the volumes; check-slow: the rest
    rm -f v.luks
    qemu-img convert -q "${obj[@]}" -f raw -O luks -o key-secret=s0,iter-time=10${opts:+,$opts} data.raw v.luks
    io=(--image-opts "driver=luks,key-secret=s0,file.filename=v.luks")
    n=${opts:-default}
    oracle "$n: info --output=json" info --output=json "${obj[@]}" "${io[@]}"
    oracle "$n: info without the key" info v.luks
    oracle "$n: map --output=json" map --output=json "${obj[@]}" "${io[@]}"
    oracle "$n: map (human: refused as qemu-img)" map "${obj[@]}" "${io[@]}"
    oracle "$n: compare with the plain data" compare "${obj[@]}" "${io[@]}" driver=raw,file.filename=data.raw
    rm -f k.raw
    kimg convert "${obj[@]}" "${io[@]}" -O raw k.raw
    is "$RC" 0 "$n: convert -O raw" || diag "$(< "$T/err")"
    ok "$n: converted data is the plain data" cmp -s k.raw data.raw
    kimg checksum "${obj[@]}" "${io[@]}"
    is "$(cut -d' ' -f1 "$T/out")" "$sum" "$n: checksum of the decrypted content"
done

# kimg writes into a qemu-made volume; qemu reads the data back
rm -f t.luks
qemu-img create -q "${obj[@]}" -f luks -o key-secret=s0,iter-time=10 t.luks 4M
kimg convert -n -f raw "${obj[@]}" data.raw --target-image-opts driver=luks,key-secret=s0,file.filename=t.luks
is "$RC" 0 "convert -n into a luks target" || diag "$(< "$T/err")"
ok "qemu-img reads kimg's writes" qemu-img compare -q "${obj[@]}" --image-opts \
    driver=luks,key-secret=s0,file.filename=t.luks driver=raw,file.filename=data.raw
# (the plain data's first 16 bytes at no offset of the file)
ok "no plain data in the file" $PY -c 'import sys
sys.exit(open("data.raw", "rb").read(16) in open("t.luks", "rb").read())'
# partial-sector writes through qemu-io's view of kimg's result
kimg resize "${obj[@]}" --image-opts driver=luks,key-secret=s0,file.filename=t.luks 5M
is "$RC" 0 "resize grows the volume" || diag "$(< "$T/err")"
qimg info --output=json t.luks
like "$(< "$T/qout")" '"virtual-size": 5242880' "qemu-img sees the new size"
# convert -O luks into a new file: the target opens with its -o key-secret
# (as qemu-img), and its zeros are written, not skipped (a new luks payload
# decrypts to noise, not zeros)
printf 'conv-key' > conv.key
qemu-img create -q -f raw cs.raw 4M
qemu-io -f raw -c "write -P 0x41 1M 1M" cs.raw > /dev/null
kimg convert --object secret,id=c0,file=conv.key -O luks -o key-secret=c0,iter-time=10 cs.raw cs.luks
is "$RC" 0 "convert -O luks into a new file"
rm -f cs-back.raw
qemu-img convert --object secret,id=c0,file=conv.key --image-opts \
    driver=luks,key-secret=c0,file.filename=cs.luks -O raw cs-back.raw 2> /dev/null
ok "qemu-img reads the source's bytes back, zeros included" cmp -s cs-back.raw cs.raw
done_testing
