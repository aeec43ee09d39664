#!/bin/bash
# Size arguments parse as qemu-img's: k M G T P E powers of 1024, any case,
# fractions with a suffix, "b"/"B" ignored, hex, rounding up to 512 bytes,
# and the same rejections (KiB, negative, 1.5 without suffix, > INT64_MAX,
# spaces).  Each size is given to both tools (raw and qcow2); exit code and
# resulting virtual size must agree, and rejections are a one-line error.
# make check: a third of the size x format cases (lib.sh sampled), two
# sizes in three in one format each; check-slow the rest.
. "$(dirname "$0")/lib.sh"
mkdir q k
# virtual size: the file size for raw, the header's size field for qcow2.
vsize() {
    if [ ! -e "$1" ]; then echo none
    elif [ "$(od -An -c -N3 "$1" | tr -d ' ')" = QFI ]; then get_be 8 "$1" 24
    else stat -c %s "$1"; fi
}
# (1T after 4294967296k: there make check's third has the one T size)
sizes=(1.5G 512b 1k 1K 1m 1M 0.5M 1.k 1.0 1.5k 1.25k 100 010 0 1b 1B 2048b 4294967296k
       1T 0x100 0x10k
       1KiB 1x 1e3 1.5 1.5b .5k k '' ' 1k' '1k ' '1 k' 0x 1.5G1 8E 16E 8192P 1ki 1kb)
for s in "${sizes[@]}"; do
    for fmt in raw qcow2; do
        sampled || continue
        rm -f q/img k/img
        (cd q && qemu-img create -q -f $fmt img "$s" > /dev/null 2>&1); qrc=$?
        cd k; kimg create -q -f $fmt img "$s"; cd ..
        is "$RC" "$qrc" "$fmt size '$s': exit code $qrc as qemu-img's"
        if [ "$qrc" -eq 0 ]; then
            is "$(vsize k/img)" "$(vsize q/img)" "$fmt size '$s': virtual size as qemu-img's"
        else
            err_line "$fmt size '$s'"
            ok "$fmt size '$s': no file left" test ! -e k/img
        fi
    done
done
# Negative sizes: qemu-img takes "-1" for an option; after "--" it is a bad size.
cd k
kimg create -f raw img -1;      is "$RC" 1 "size -1: exit 1"
kimg create -f raw -- img -1;   is "$RC" 1 "size -1 after --: exit 1"; err_line "size -1 after --"
kimg create -f raw -- img -1k;  is "$RC" 1 "size -1k after --: exit 1"
ok "no file left by negative sizes" test ! -e img
# Too large for qcow2 with 64k clusters (qemu-img: "try using a larger cluster size").
kimg create -f qcow2 img 7E; is "$RC" 1 "qcow2 7E: exit 1"; err_line "qcow2 7E"
# size given twice
kimg create -f qcow2 -o size=2M img 1M; is "$RC" 1 "size in -o and argument: exit 1"; err_line "size twice"
kimg create -f qcow2 -o size=2M img; is "$RC" 0 "size only in -o: exit 0"
is "$(vsize img)" 2097152 "size=2M from -o"
done_testing
