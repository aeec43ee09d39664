#!/bin/bash
# --object secret,...: accepted (repeatable) by every command that opens or
# creates an image, with the same output and exit code as qemu-img's with
# and without it; bad object strings refused as qemu-img 7.2 refuses them
# (its first line, exit 1, before anything else happens), `help` listings;
# other object types refused in one line; the secret given with data= or
# read from file= never appears in any output or message.
# make check: a third of the bad object strings and of the keyid/iv cases
# (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"

SECRET=kimg-S3CR3T-7f3a9d
printf '%s' "$SECRET" > key
printf '%s' "$SECRET" | base64 -w0 > key.b64
qemu-img create -q -f qcow2 base.qcow2 1M
qemu-io -f qcow2 -c "write -P 0x5a 0 64k" base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-img create -q -f raw flat.raw 1M
obj=(--object secret,id=s0,file=key --object "secret,id=s1,data=$SECRET")

# leak_check NAME: neither stdout nor stderr holds the secret
leak_check() {
    if grep -q -e "$SECRET" -e "$(< key.b64)" "$T/out" "$T/err" 2> /dev/null; then
        fail "$1: the secret is not echoed" "$(grep -h -e "$SECRET" "$T/out" "$T/err" | head -2)"
    else
        pass "$1: the secret is not echoed"
    fi
}

# every command that opens or creates an image, on twins: as qemu-img's,
# and as kimg's own run without --object
for args in "info base.qcow2" "info --output=json --backing-chain top.qcow2" \
            "check base.qcow2" "map --output=json top.qcow2" \
            "compare base.qcow2 top.qcow2" "measure -O qcow2 base.qcow2" \
            "measure --size 1G -O qcow2" "snapshot -l base.qcow2"; do
    oracle "$args with --object" $args "${obj[@]}"
    leak_check "$args"
done

rm -rf q k; mkdir q k
for d in q k; do cp base.qcow2 top.qcow2 flat.raw key $d/; done
# writes, each on its twin
write_case() {
    local name=$1; shift
    QRC=0; (cd q && qemu-img "$@" "${obj[@]}") > qout 2> qerr || QRC=$?
    RC=0; (cd k && "$KIMG" "$@" "${obj[@]}") > out 2> err || RC=$?
    is "$RC" "$QRC" "$name: exit code $QRC as qemu-img's" || diag "$(< err)"
    is_file out qout "$name: stdout as qemu-img's"
    leak_check "$name"
}
write_case "create" create -f qcow2 new.qcow2 1M
write_case "convert" convert -O qcow2 top.qcow2 conv.qcow2
write_case "amend" amend -o lazy_refcounts=on top.qcow2
write_case "resize" resize top.qcow2 2M
write_case "snapshot -c" snapshot -c sn1 top.qcow2
write_case "rebase -u" rebase -u -b base.qcow2 -F qcow2 top.qcow2
write_case "commit" commit top.qcow2
for f in new.qcow2 conv.qcow2 top.qcow2 base.qcow2; do
    is "$(qemu-img compare k/$f q/$f 2>&1)" "Images are identical." "$f: the same content as qemu-img's"
done
kimg checksum "${obj[@]}" base.qcow2
is "$RC" 0 "checksum takes --object"
leak_check "checksum"

# bad object strings: qemu-img's first line, exit 1, nothing else done
K32=$(head -c32 /dev/zero | tr '\0' K | base64 -w0)
IV=$(head -c16 /dev/zero | tr '\0' I | base64 -w0)
while IFS= read -r spec; do
    sampled || continue         # check: a third of the strings; check-slow: the rest
    qimg info --object "$spec" base.qcow2
    kimg info --object "$spec" base.qcow2
    is "$RC" "$QRC" "--object '$spec': exit code $QRC as qemu-img's"
    if [ "$QRC" -ne 0 ]; then
        err_line "--object '$spec'"
        is "$(sed 's/^kimg: //' "$T/err")" "$(head -1 "$T/qerr" | sed 's/^qemu-img: //')" \
            "--object '$spec': message as qemu-img's"
        is "$(wc -c < "$T/out")" 0 "--object '$spec': nothing on stdout"
    fi
    leak_check "--object '$spec'"
done <<EOF
secret,id=s0
secret,id=s0,data=$SECRET,file=key
secret,data=$SECRET
secret,id=s0,data=$SECRET,format=hex
secret,id=s0,foo=bar,data=$SECRET
secret,id=s0,a.b=1,data=$SECRET
secret,id=s0,x..y=1,data=$SECRET
secret,id=s0,=1,data=$SECRET
secret,,id=s0,data=$SECRET
secret,id=s0,data
secret,id=s0,data=$SECRET,loaded=on
bogus,id=t0

secret
id=x
secret,id=0bad,data=$SECRET
secret,id=ab:c,data=$SECRET
secret,id=,data=$SECRET
secret,id=s0,file=/nonexistent/key
secret,id=s0,file=.
secret,id=s0,data=$SECRET!,format=base64
secret,id=s0,data=$SECRET,keyid=nosuch
secret,id=s0,data=$SECRET,iv=ignored-without-keyid
secret,id=s0,data=$SECRET,data=other
secret,id=s0,data=a,,b
secret,id=s0,data=,
qom-type=secret,id=s0,data=$SECRET
secret,id=s0,file=key.b64,format=base64
secret,id=a.b-c_d,data=$SECRET
EOF

# a comma in a data= secret ends it: what follows is not named (qemu-img
# names it, echoing part of the secret); same exit code
for tail in "${SECRET#kimg-}" "${SECRET#kimg-}=x" "x..${SECRET#kimg-}=1"; do
    spec="secret,id=s0,data=kimg,$tail"
    qimg info --object "$spec" base.qcow2; kimg info --object "$spec" base.qcow2
    is "$RC" "$QRC" "--object '$spec': exit code $QRC as qemu-img's"
    err_line "--object '$spec'"
    leak_check "--object '$spec'"
    like "$(< "$T/err")" "after 'data'.*',,'" "--object '$spec': says how to write a comma"
done

# a password with several commas: no later piece is named either
for tail in "ab=cd,${SECRET#kimg-}" "ab=cd,${SECRET#kimg-}=1" "ab=cd,ef=gh,x${SECRET#kimg-}=1"; do
    spec="secret,id=s0,data=kimg,$tail"
    kimg info --object "$spec" base.qcow2
    err_line "--object '$spec'"
    ok "--object '$spec': no piece of the password is echoed" \
        eval '! grep -q -e "${SECRET#kimg-}" "$T/out" "$T/err"'
done

# keyid/iv: a secret encrypted with another one (qemu's AES-256-CBC)
CT=$(printf '%s' "$SECRET" | openssl enc -aes-256-cbc -K "$(printf 'K%.0s' $(seq 32) | xxd -p -c64)" \
     -iv "$(printf 'I%.0s' $(seq 16) | xxd -p)" | base64 -w0)
for tail in "keyid=k" "keyid=k,iv=abc" "keyid=k,iv=a!b" "keyid=k,iv=$IV"; do
    for enc in "data=$CT,format=base64" "data=abcdabcdabcdabcd" "data=abc" "data="; do
        sampled || continue     # check: a third of the cases; check-slow: the rest
        spec="secret,id=s0,$enc,$tail"
        qimg info --object "secret,id=k,data=$K32,format=base64" --object "$spec" base.qcow2
        kimg info --object "secret,id=k,data=$K32,format=base64" --object "$spec" base.qcow2
        is "$RC:$(sed 's/^kimg: //' "$T/err")" "$QRC:$(head -1 "$T/qerr" | sed 's/^qemu-img: //')" \
            "keyid: '$enc,$tail': exit code and message as qemu-img's"
    done
done
qimg info --object "secret,id=k,data=x" --object "secret,id=s0,data=$CT,keyid=k,iv=$IV" base.qcow2
kimg info --object "secret,id=k,data=x" --object "secret,id=s0,data=$CT,keyid=k,iv=$IV" base.qcow2
is "$RC:$(< "$T/err")" "$QRC:$(sed 's/^qemu-img/kimg/' "$T/qerr")" "keyid: a key not 32 bytes"
qimg info --object "secret,id=s0,data=x,keyid=k,iv=$IV" --object "secret,id=k,data=$K32,format=base64" base.qcow2
kimg info --object "secret,id=s0,data=x,keyid=k,iv=$IV" --object "secret,id=k,data=$K32,format=base64" base.qcow2
is "$RC:$(< "$T/err")" "$QRC:$(sed 's/^qemu-img/kimg/' "$T/qerr")" "keyid: the key must come first"

# a duplicate id, in qemu-img's order (before data/file are checked)
oracle "duplicate id" info --object "secret,id=s0,data=$SECRET" --object secret,id=s0 base.qcow2
is "$(< "$T/err")" "$(sed 's/^qemu-img/kimg/' "$T/qerr")" "duplicate id: qemu-img's message"
leak_check "duplicate id"

# help, as qemu-img prints it for secrets; exit 0 before anything else
oracle "--object secret,help" info --object secret,help nosuch.qcow2
oracle "--object secret,id=s0,help" info --object secret,id=s0,help nosuch.qcow2
kimg info --object help nosuch.qcow2
is "$RC:$(< "$T/out")" "0:List of user creatable objects:
  secret" "--object help: the one type kimg takes"

# other object types: one clear line
for spec in tls-creds-x509,id=t0,dir=/tmp tls-creds-psk,id=t0 throttle-group,id=t0 secret_keyring,id=s0,serial=1; do
    kimg info --object "$spec" base.qcow2
    err_line "--object $spec"
    like "$(< "$T/err")" "^kimg: Object type '${spec%%,*}' is not supported: kimg takes only 'secret' objects$" \
        "--object $spec: says what kimg takes"
done
kimg info --object '{"qom-type":"secret","id":"s0","data":"x"}' base.qcow2
err_line "--object in JSON syntax"

# an --object error stops every command before it touches anything
for args in "create -f qcow2 made.qcow2 1M" "convert -O raw base.qcow2 made.raw" \
            "compare base.qcow2 base.qcow2" "commit top.qcow2" "resize top.qcow2 4M"; do
    before=$(sha top.qcow2)
    qimg $args --object secret,id=s0; kimg $args --object secret,id=s0
    is "$RC" "$QRC" "$args, bad --object: exit code $QRC as qemu-img's"
    err_line "$args, bad --object"
    ok "$args, bad --object: nothing made" test ! -e made.qcow2 -a ! -e made.raw
    is "$(sha top.qcow2)" "$before" "$args, bad --object: top.qcow2 unchanged"
done

done_testing
