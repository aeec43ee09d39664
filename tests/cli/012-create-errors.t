#!/bin/bash
# kimg create rejects what qemu-img rejects: exit 1, one line on stderr
# "kimg: FILE: ..." (qemu-img names the file in each of these), and no file
# left behind.  An existing file given to a create that fails is never left
# as a half-made image: it is either removed (what qemu-img 7.2 does: it
# deletes the file) or unchanged.
. "$(dirname "$0")/lib.sh"
bad=(
    "-f qcow2 -o cluster_size=1000"         # not a power of two
    "-f qcow2 -o cluster_size=256"          # < 512
    "-f qcow2 -o cluster_size=4M"           # > 2M
    "-f qcow2 -o extended_l2=on,cluster_size=4k"   # subclusters need >= 16k
    "-f qcow2 -o extended_l2=on,cluster_size=8k"
    "-f qcow2 -o compat=0.10,compression_type=zstd"
    "-f qcow2 -o compat=0.10,lazy_refcounts=on"
    "-f qcow2 -o compat=0.10,extended_l2=on"
    "-f qcow2 -o compat=0.10,refcount_bits=8"
    "-f qcow2 -o compat=0.10,data_file=d.raw"
    "-f qcow2 -o compat=1.2"
    "-f qcow2 -o refcount_bits=3"
    "-f qcow2 -o refcount_bits=128"
    "-f qcow2 -o refcount_bits=0"
    "-f qcow2 -o compression_type=lzo"
    "-f qcow2 -o preallocation=bogus"
    "-f qcow2 -o lazy_refcounts=maybe"
    "-f qcow2 -o nosuch=1"
    "-f qcow2 -o data_file_raw=on"          # needs data_file
    "-f qcow2 -o cluster_size="
    "-f qcow2 -o cluster_size=64k,preallocation=metadata,backing_file=b.raw,backing_fmt=raw"
    "-f raw -o cluster_size=4k"             # raw has no such option
    "-f raw -o preallocation=metadata"      # raw: off, falloc, full only
    "-f bogus"
)
qemu-img create -q -f raw b.raw 1M
for a in "${bad[@]}"; do
    rm -f img.qcow2
    qrc=0; qemu-img create -q $a img.qcow2 1M > /dev/null 2>&1 || qrc=$?
    rm -f img.qcow2
    kimg create -q $a img.qcow2 1M
    is "$RC" "$qrc" "create $a: exit code $qrc as qemu-img's"
    err_line "create $a"
    like "$(head -1 "$T/err")" "^kimg: img\\.qcow2: " "create $a: error names the file"
    ok "create $a: no file left" test ! -e img.qcow2
done
# Missing size (no backing file to take it from).
kimg create -q -f qcow2 img.qcow2; is "$RC" 1 "no size: exit 1"; err_line "no size"
ok "no size: no file left" test ! -e img.qcow2
# Unwritable place.
kimg create -q -f qcow2 "$T/nonexistent/img.qcow2" 1M; is "$RC" 1 "missing folder: exit 1"
err_line "missing folder"
# An existing file and a create that fails its validation.
echo "precious data" > keep.qcow2
before=$(sha keep.qcow2)
kimg create -q -f qcow2 -o cluster_size=1000 keep.qcow2 1M
is "$RC" 1 "failed create over an existing file: exit 1"
if [ ! -e keep.qcow2 ]; then
    pass "failed create over an existing file: removed, as qemu-img 7.2 does"
else
    is "$(sha keep.qcow2)" "$before" "failed create over an existing file: left unchanged"
fi
done_testing
