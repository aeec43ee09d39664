#!/bin/bash
# Image names with a protocol, as qemu-img 7.2 reads them: "file:NAME" is
# the local file NAME in every command (info, check, map, compare,
# convert source and target, create and its -b and data_file, resize,
# snapshot, amend, rebase and its -b, commit and its -b, measure,
# checksum); a name whose ':' comes before any '/' and whose prefix qemu
# does not know ("a:b.qcow2") is refused with qemu's "Unknown protocol"
# message, on the command line and as a backing name stored in an image;
# "./a:b.qcow2" is a plain path.  info's full backing name: a protocol
# name as it is; "file:NAME" names the file kimg opens, in the image's
# folder (qemu takes it relative to the working directory: the same text
# when that is the image's folder; a deliberate difference otherwise).
. "$(dirname "$0")/lib.sh"

qemu-img create -q -f raw base.raw 4M
qemu-io -f raw -c "write -P 0x11 0 1M" base.raw > /dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw ov.qcow2
qemu-io -c "write -P 0x22 1M 1M" ov.qcow2 > /dev/null
qemu-img create -q -f qcow2 plain.qcow2 4M
qemu-img convert -O raw ov.qcow2 ov.raw

# ---- file: names on the command line -----------------------------------------
oracle "info file:" info file:ov.qcow2
oracle "info --output=json file:" info --output=json file:ov.qcow2
oracle "info --backing-chain file:" info --backing-chain --output=json file:ov.qcow2
oracle "check file:" check file:ov.qcow2
oracle "map file:" map --output=json file:ov.qcow2
oracle "compare file: file:" compare file:ov.qcow2 file:ov.raw
oracle "measure file:" measure --output=json -O qcow2 file:ov.qcow2
oracle "info file:file:ov.qcow2 (one prefix taken off)" info file:file:ov.qcow2
kimg checksum file:ov.qcow2; a=$(cut -d' ' -f1 "$T/out")
kimg checksum ov.qcow2; is "$a" "$(cut -d' ' -f1 "$T/out")" "checksum file: as without the prefix"

# convert and create write the file the name names
oracle "convert file: to file:" convert -O qcow2 file:ov.qcow2 file:c.qcow2
ok "convert file:c.qcow2 wrote c.qcow2" qemu_oracle_compare c.qcow2 ov.raw
ok "convert file:c.qcow2 wrote no 'file:c.qcow2'" test ! -e file:c.qcow2
rm -rf q k; mkdir q k; cp base.raw q/; cp base.raw k/
both() { cd q; qimg "$@"; cd ../k; kimg "$@"; cd ..; }
# twin_info NAME IMG: k/IMG's qemu-img info as q/IMG's (host layout and
# snapshot times left out)
twin_info() {
    (cd q && qemu-img info --output=json "$2") > qi.json; (cd k && qemu-img info --output=json "$2") > ki.json
    is "$(json_norm ki.json actual-size date-sec date-nsec)" "$(json_norm qi.json actual-size date-sec date-nsec)" "$1: qemu-img info as on qemu-img's twin"
}
for c in "create -f qcow2 file:n1.qcow2 1M" "create -f qcow2 -b file:base.raw -F raw file:n2.qcow2" \
         "create -f raw file:file:n3.raw 1M" "create -f qcow2 -o data_file=file:n4.data file:n4.qcow2 1M"; do
    both $c
    is "$RC" "$QRC" "$c: exit code as qemu-img's"
    is_file out qout "$c: stdout as qemu-img's"
    is "$(cd k && ls | sort | tr '\n' ' ')" "$(cd q && ls | sort | tr '\n' ' ')" "$c: the files qemu-img makes"
done
twin_info "create -b file:base.raw" n2.qcow2
twin_info "create -o data_file=file:" n4.qcow2

# the writers, on twins
cp ov.qcow2 plain.qcow2 q/; cp ov.qcow2 plain.qcow2 k/
for c in "resize file:plain.qcow2 8M" "snapshot -c s1 file:plain.qcow2" "amend -o lazy_refcounts=on file:plain.qcow2" \
         "rebase -u -b file:base.raw -F raw file:plain.qcow2" "rebase -b base.raw -F raw file:ov.qcow2"; do
    both $c
    is "$RC" "$QRC" "$c: exit code as qemu-img's"
    is_file out qout "$c: stdout as qemu-img's"
done
twin_info "resize, snapshot, amend, rebase -u with file: names" plain.qcow2
oracle "snapshot -l file:" snapshot -l file:k/plain.qcow2
cd k
oracle "info: a stored file: backing name" info --output=json plain.qcow2
oracle "map: a stored file: backing name" map --output=json plain.qcow2
cd ..
twin_info "rebase file:" ov.qcow2
both commit file:ov.qcow2
is "$RC" "$QRC" "commit file:: exit code as qemu-img's"
ok "commit file:: base as qemu-img's" qemu_oracle_compare k/base.raw q/base.raw
cp ov.qcow2 q/o5.qcow2; cp ov.qcow2 k/o5.qcow2
both rebase -u -b file:base.raw -F raw o5.qcow2
both commit -b file:base.raw o5.qcow2
is "$RC" "$QRC" "commit -b file:: exit code as qemu-img's"
is_file out qout "commit -b file:: stdout as qemu-img's"

# ---- a backing name stored as file:NAME ------------------------------------
qemu-img create -q -f qcow2 -u -b file:base.raw -F raw fb.qcow2 4M
qemu-io -c "write -P 0x33 2M 64k" fb.qcow2 > /dev/null
oracle "stored file: name: info" info fb.qcow2
oracle "stored file: name: info --backing-chain" info --backing-chain --output=json fb.qcow2
oracle "stored file: name: map" map --output=json fb.qcow2
oracle "stored file: name: compare" compare fb.qcow2 ov.qcow2
# in another folder: kimg opens sub/base.raw (the image's folder), qemu
# would open ./base.raw
mkdir sub; cp fb.qcow2 sub/; qemu-img create -q -f raw sub/base.raw 4M
kimg info --output=json sub/fb.qcow2
like "$(< "$T/out")" '"full-backing-filename": "file:sub/base.raw"' "file: name in sub/: the full name is the file kimg opens"
kimg compare sub/fb.qcow2 fb.qcow2
is "$RC" 1 "file: name in sub/: read through sub/base.raw (not ./base.raw)"

# ---- unknown protocols: refused as qemu-img refuses them ----------------------
qemu-img create -q -f qcow2 ./a:b.qcow2 1M
qemu-img create -q -f raw ./a:b.raw 1M
oracle "./a:b.qcow2 is a plain path" info --output=json ./a:b.qcow2
# unknown NAME ARGS...: exit code as qemu-img's (1), kimg's one line says
# "Unknown protocol 'a'"
unknown() {
    local name=$1; shift
    if [ "$1" = create ]; then
        # qemu-img prints its "Formatting" line before the data file is
        # made; kimg prints it once the image is made
        qimg "$@"; kimg "$@"; is "$RC" "$QRC" "$name: exit code as qemu-img's"
    else
        oracle "$name" "$@"
    fi
    err_line "$name"
    like "$(< "$T/err")" "Unknown protocol 'a'" "$name: qemu-img's reason"
}
for c in "info a:b.qcow2" "check a:b.qcow2" "map a:b.qcow2" "compare a:b.qcow2 ov.raw" "compare ov.raw a:b.qcow2" \
         "measure -O qcow2 a:b.qcow2" "convert -O raw a:b.qcow2 x.raw" "convert -O raw ov.raw a:x.raw" \
         "create -f qcow2 a:x.qcow2 1M" "create -f qcow2 -b a:b.raw -F raw x.qcow2" \
         "create -f qcow2 -o data_file=a:x.data x.qcow2 1M" "resize a:b.qcow2 2M" "snapshot -c s a:b.qcow2" \
         "amend -o lazy_refcounts=on a:b.qcow2" "rebase -u -b base.raw -F raw a:b.qcow2" \
         "rebase -b a:b.raw -F raw plain.qcow2" "commit a:b.qcow2"; do
    unknown "$c" $c
done
ok "nothing made by the refused commands" test ! -e x.raw -a ! -e a:x.raw -a ! -e x.qcow2 -a ! -e a:x.qcow2 -a ! -e a:x.data
kimg checksum a:b.qcow2; err_line "checksum a:b.qcow2"
like "$(< "$T/err")" "Unknown protocol 'a'" "checksum a:b.qcow2: qemu-img's reason"
oracle "FILE: (protocols are case-sensitive)" info FILE:ov.qcow2
oracle "file: without a name" info file:
like "$(< "$T/err")" "The 'file' block driver requires a file name" "file: without a name: qemu-img's reason"

# stored in an image: refused when opened, reported by info as qemu does
qemu-img create -q -f qcow2 -u -b a:b.raw -F raw ub.qcow2 1M
qemu-img create -q -f qcow2 -u -b a:b.raw -F raw sub/ub.qcow2 1M
qemu-img create -q -f qcow2 -u -b nbd:localhost:1 -F raw sub/nbd.qcow2 1M
oracle "stored a:b.raw: info" info --output=json ub.qcow2
oracle "stored a:b.raw in sub/: info" info --output=json sub/ub.qcow2
oracle "stored a:b.raw in sub/: info (human)" info sub/ub.qcow2
oracle "stored nbd: in sub/: info" info --output=json sub/nbd.qcow2
for c in "map ub.qcow2" "compare ub.qcow2 ov.raw" "convert -O raw ub.qcow2 x.raw" "info --backing-chain ub.qcow2"; do
    unknown "stored a:b.raw: $c" $c
done
done_testing
