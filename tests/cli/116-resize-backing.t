#!/bin/bash
# resize of overlays whose backing file is larger than the old size: the
# backing data past the old end must not show through the new area, so it
# is zeroed (zero clusters, subclusters with extended L2) as qemu-img does;
# a v2 overlay cannot hold zero clusters and is refused with qemu-img's
# message.  Against qemu-img on twins: exit code, stdout, info, map and
# content, kimg's image clean.
# make check: a third of the image x size matrix (each image at one size)
# and of the preallocated cases (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"

qemu-img create -q -f raw base.raw 8M
qemu-io -f raw -c "write -P 0x11 0 8M" base.raw > /dev/null
mk() {   # mk NAME SIZE CREATE-OPTS
    qemu-img create -q -f qcow2 -b base.raw -F raw -o "$3" "$1" "$2"
    qemu-io -f qcow2 -c "write -P 0x22 0 64k" "$1" > /dev/null
}
mk v3-1m.qcow2 1M compat=1.1
mk v3-odd.qcow2 $((1024 * 1024 + 1536)) compat=1.1
mk el2.qcow2 1000k extended_l2=on
mk el2-odd.qcow2 $((1000 * 1024 + 512)) extended_l2=on
mk cs512.qcow2 100k cluster_size=512
mk v2-1m.qcow2 1M compat=0.10
mk v3-8m.qcow2 8M compat=1.1
mk v2-8m.qcow2 8M compat=0.10

# bcase IMG SIZE [OPTS...]
bcase() {
    local img=$1 size=$2; shift 2
    local name="resize $* $img $size"
    rm -rf q k; mkdir q k
    cp "$img" q/; cp "$img" k/; ln -s ../base.raw q/base.raw; ln -s ../base.raw k/base.raw
    QRC=0; (cd q && qemu-img resize "$@" "$img" "$size") > qout 2> qerr || QRC=$?
    RC=0; (cd k && "$KIMG" resize "$@" "$img" "$size") > out 2> err || RC=$?
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || { diag "kimg: $(< err) qemu-img: $(< qerr)"; return; }
    is_file out qout "$name: stdout as qemu-img's"
    if [ "$QRC" -ne 0 ]; then
        err_line "$name"
        like "$(< err)" "$(sed -n '1s/^qemu-img: //p' qerr)" "$name: qemu-img's message"
        ok "$name: clean" check_clean k/"$img"
        is "$(qemu-img info --output=json k/"$img" | grep '"virtual-size"')" \
           "$(qemu-img info --output=json "$img" | grep '"virtual-size"')" "$name: size unchanged"
        ok "$name: content unchanged" qemu_oracle_compare k/"$img" "$img"
        return
    fi
    ok "$name: qemu-img check clean" check_clean k/"$img"
    (cd q && qemu-img info --output=json "$img") > qi.json
    (cd k && qemu-img info --output=json "$img") > ki.json
    (cd q && qemu-img map --output=json "$img") > qm.json
    (cd k && qemu-img map --output=json "$img") > km.json
    json_norm_files actual-size,offset qi.json ki.json qm.json km.json
    is_file ki.json.norm qi.json.norm "$name: qemu-img info as for qemu-img's resize"
    # (with preallocation qemu-img copies the old last cluster and the host
    # file decides "zero": the layouts differ, the content may not)
    case " $* " in
    *" --preallocation="*) ;;
    *) is_file km.json.norm qm.json.norm "$name: map as for qemu-img's resize (offsets aside)" ;;
    esac
    ok "$name: content as qemu-img's" qemu_oracle_compare k/"$img" q/"$img"
    local vs; vs=$(qemu-img info --output=json "$img" | sed -n 's/^    "virtual-size": \([0-9]*\),/\1/p')
    qemu-io -f qcow2 -c "read -P 0 $vs 4096" k/"$img" > io.out 2>&1
    is "$(grep -c 'Pattern verification failed' io.out)" 0 "$name: the new area reads zeros, not the backing data"
}

# (the sizes rotate from one image to the next: a third of the cases
# still takes each image and each size)
sizes=(3M +1536 12M) r=0
for img in v3-1m.qcow2 v3-odd.qcow2 el2.qcow2 el2-odd.qcow2 cs512.qcow2 v2-1m.qcow2; do
    for i in 0 1 2; do
        sampled || continue     # check: a third of the cases; check-slow: the rest
        bcase "$img" "${sizes[(i + r) % 3]}"
    done
    r=$((r + 1))
done
for c in "v3-1m.qcow2 3M --preallocation=metadata" "v3-1m.qcow2 3M --preallocation=falloc" \
         "el2.qcow2 3M --preallocation=full"; do
    sampled || continue
    # shellcheck disable=SC2086
    bcase $c
done
# backing not larger than the old size: nothing to hide (v2 too)
bcase v3-8m.qcow2 12M
bcase v2-8m.qcow2 12M
done_testing
