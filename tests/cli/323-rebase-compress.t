#!/bin/bash
# rebase -c / --compress (Proxmox passes it).  qemu-img 7.2 has no -c
# (it refuses the letter); QEMU 8.2 added it: the clusters a safe rebase
# copies into the overlay are written whole (writes aligned to the cluster
# size) and compressed; its refusal "Compression not supported for this
# file format" for a format without compressed clusters, checked before
# anything else (with -u too).  kimg follows 8.2; checked here with
# qemu-img 7.2 as a reader: the overlay reads as before, `qemu-img check`
# is clean, the copied clusters are compressed L2 entries (qcow2.py) and
# the overlay is smaller than after a plain rebase.
. "$(dirname "$0")/lib.sh"

mk() {   # mk PREFIX: base (compressible data) <- mid (more) <- top (a cluster)
    qemu-img create -q -f qcow2 $1-base.qcow2 4M
    qemu-io -f qcow2 -c "write -P 1 0 1M" -c "write -P 3 2M 100k" $1-base.qcow2 > /dev/null
    qemu-img create -q -f qcow2 -b $1-base.qcow2 -F qcow2 $1-mid.qcow2
    qemu-io -f qcow2 -c "write -P 2 512k 1M" -c "write -P 4 3M 3k" -c "write -z 2M 64k" \
        $1-mid.qcow2 > /dev/null
    qemu-img create -q -f qcow2 -b $1-mid.qcow2 -F qcow2 $1-top.qcow2
    qemu-io -f qcow2 -c "write -P 9 64k 64k" $1-top.qcow2 > /dev/null
    qemu-img convert -f qcow2 -O raw $1-top.qcow2 $1-view.raw
}
mk c; mk p
qemu-img create -q -f qcow2 new.qcow2 4M

kimg rebase -c -f qcow2 -b new.qcow2 -F qcow2 c-top.qcow2
is "$RC" 0 "rebase -c onto another base: exit 0"
ok "-c: content unchanged" qemu_oracle_compare -f raw c-view.raw c-top.qcow2
ok "-c: qemu-img check clean" check_clean c-top.qcow2
kimg rebase -f qcow2 -b new.qcow2 -F qcow2 p-top.qcow2
is "$RC" 0 "plain rebase: exit 0"
ok "plain: content unchanged" qemu_oracle_compare -f raw p-view.raw p-top.qcow2
sc=$(stat -c %s c-top.qcow2); sp=$(stat -c %s p-top.qcow2)
ok "-c: the overlay is smaller than after a plain rebase ($sc < $sp)" [ "$sc" -lt "$sp" ]
# the copied clusters are compressed entries (bit 62), the top's own is not
comp() { local e; e=$($Q2 l2 c-top.qcow2 "$1" | cut -d' ' -f2); [ $(( (0x${e#0x} >> 62) & 1 )) -eq 1 ]; }
plain() { ! comp "$@"; }
ok "-c: a copied cluster (0) is compressed" comp 0
ok "-c: a copied cluster (2.5M, a partial write of the old chain) is compressed" comp $((2 * 1024 * 1024 + 65536))
ok "-c: the cluster of the 3k write is compressed whole" comp $((3 * 1024 * 1024))
ok "-c: the overlay's own cluster stays as it was" plain 65536
qio_ok() { qemu-io "$@" > "$T/qio" 2>&1 && ! grep -q "Pattern verification failed" "$T/qio"; }
ok "-c: the zero cluster of the old chain reads zeros" qio_ok -f qcow2 -c "read -P 0 2M 64k" c-top.qcow2

# flatten (-b "") with -c
mk f
kimg rebase -c -f qcow2 -b "" f-top.qcow2
is "$RC" 0 "rebase -c -b '': exit 0"
ok "-c -b '': content unchanged" qemu_oracle_compare -f raw f-view.raw f-top.qcow2
ok "-c -b '': check clean" check_clean f-top.qcow2
is "$(qemu-img info --output=json f-top.qcow2 | grep -c backing-filename)" 0 "-c -b '': no backing file left"

# --compress, the long name
mk l
kimg rebase --compress -f qcow2 -b new.qcow2 -F qcow2 l-top.qcow2
is "$RC" 0 "--compress: exit 0"
ok "--compress: content unchanged" qemu_oracle_compare -f raw l-view.raw l-top.qcow2

# refusals: a format without compressed clusters (8.2's message), with -u too
qemu-img create -q -f raw r.raw 1M
for u in "" "-u"; do
    kimg rebase -c $u -f raw -b new.qcow2 -F qcow2 r.raw
    is "$RC" 1 "-c $u on raw: exit 1"
    err_line "-c $u on raw"
    is "$(< "$T/err")" "kimg: Compression not supported for this file format" "-c $u on raw: qemu-img 8.2's message"
done
# qemu-img 7.2 itself refuses the letter (documented choice: kimg follows 8.2)
qimg rebase -c -f qcow2 -b new.qcow2 -F qcow2 c-top.qcow2
is "$QRC" 1 "qemu-img 7.2 has no rebase -c (kimg follows QEMU 8.2)"
done_testing
