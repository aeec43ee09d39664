#!/bin/bash
# nbdkit-kimg-plugin serving every format kimg reads as a raw export:
# each qcow2 fixture (chains through their backing files, compressed,
# extended L2, snapshots, preallocation), raw, and qemu-img-made vmdk
# (monolithicSparse, streamOptimized), vpc, vhdx and vdi images.  Through
# the export: qemu-img compare against the image read locally by
# qemu-img, nbdcopy's copy (several connections, many requests in
# flight) byte for byte against qemu-img's raw conversion, and the
# export's block status (qemu-img map over NBD) the same as qemu-nbd
# serving the same file gives.  Read-only by default.
# make check: eight fixtures that hold each kind, most over a backing
# file (a v2 chain, extended L2 and compressed clusters with zeros, an
# external data file, a short backing file, snapshots, preallocation, an
# odd-sized raw), the probed chain, each other format's default and one
# of their variants (lib.sh sampled 5); check-slow the other fixtures and
# variants.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/nbdkit.sh"
fixtures

# check NAME FILE FORMAT [PLUGIN ARGS...]
check() {
    local name=$1 f=$2 fmt=$3; shift 3
    local s=$T/k.sock q=$T/q.sock
    local ks=nbd+unix:///?socket=$T/k.sock qs=nbd+unix:///?socket=$T/q.sock   # (uri, no subshell)
    # qemu resolves an external data file against its working folder
    cd "${f%/*}" || return
    qemu-img convert -f "$fmt" -O raw "$f" "$T/want.raw"
    if ! nbd_start "$s" file="$f" "$@"; then
        fail "$name: served" "$(cat "$s.log")"; cd "$T"; return
    fi
    ok "$name: qemu-img compare (export vs local)" \
        qemu-img compare -q -f raw -F "$fmt" "$ks" "$f"
    rm -f "$T/got.raw"
    ok "$name: nbdcopy" nbdcopy "$ks" "$T/got.raw"
    ok "$name: nbdcopy's copy is qemu-img's raw conversion" cmp -s "$T/got.raw" "$T/want.raw"
    map_json "$ks" > "$T/k.map" 2>&1
    srv_stop "$NBD_PID"
    if qnbd_start "$q" -r -f "$fmt" "$f"; then
        map_json "$qs" > "$T/q.map" 2>&1
        srv_stop "$QNBD_PID"
        is_file "$T/k.map" "$T/q.map" "$name: block status as qemu-nbd's"
    else
        fail "$name: qemu-nbd served" "$(cat "$q.log")"
    fi
    cd "$T" || exit 1
}

# the qcow2 fixtures (and raw ones), their chains read through the export
# (check: the fixtures named here, one of each kind; check-slow: the others)
quick_fx=" chain2-top.qcow2 el2-top.qcow2 comp-top.qcow2 df-top.qcow2 short-top.qcow2 "
quick_fx+="snap.qcow2 prealloc-metadata.qcow2 odd.raw "
while read -r f fmt; do
    case $f in *.qcow2|*.raw) ;; *) continue ;; esac
    in_quick=no; [[ $quick_fx == *" $f "* ]] && in_quick=yes
    case $KIMG_TEST_PART:$in_quick in quick:no | rest:yes) continue ;; esac
    check "$f" "$FX/$f" "$fmt" format="$fmt"
done < "$FX/LIST"
# probed, not named
check "chain-top.qcow2 probed" "$FX/chain-top.qcow2" qcow2

# the other formats, made by qemu-img
truncate -s 40M src.raw
qemu-io -f raw -c 'write -P 0x11 0 4k' -c 'write -P 0x22 2095000 5000' \
    -c 'write -P 0x33 17M 300k' -c 'write -P 0 30M 64k' -c 'write -P 0x44 41942528 512' \
    src.raw > /dev/null
for spec in vmdk: vmdk:subformat=streamOptimized vmdk:subformat=twoGbMaxExtentSparse \
            vpc: vpc:subformat=fixed vhdx: vhdx:block_size=8M vdi: vdi:static=on; do
    # each format's default in each part; its variants sampled
    case $spec in *:) ;; *) sampled 5 || continue ;; esac
    fmt=${spec%%:*} o=${spec#*:}
    out=img-${o:-default}.$fmt; out=${out//[=,]/-}
    qemu-img convert -f raw -O "$fmt" ${o:+-o "$o"} src.raw "$out"
    check "$fmt ${o:-default}" "$PWD/$out" "$fmt"
done

# read-only by default: a write through the export fails, the image is unchanged
cp "$FX/v3.qcow2" ro.qcow2
sum=$(sha ro.qcow2)
nbd_run file=ro.qcow2 -- 'nbdinfo --json "$uri"'
like "$(< "$T/out")" '"is_read_only": true' "read-only by default"
nbd_run file=ro.qcow2 -- 'qemu-io -f raw -c "write -P 1 0 4k" "$uri"'
like "$(cat "$T/out" "$T/err")" "(Operation not permitted|Permission denied|read-only)" \
    "a write through it is refused"
is "$(sha ro.qcow2)" "$sum" "the image is unchanged"
done_testing
