#!/bin/bash
# kimg create -f vmdk: every subformat and option set against qemu-img
# create's files (the descriptor byte for byte but its random CID, the
# sparse extents' header, directories and tables byte for byte), the
# "Formatting" line, `-o help`, qemu-img's refusals in its words (and no
# file left), delta disks (parentCID, parentFileNameHint), and that
# qemu-img and vmdkinfo read every new image.
# make check: a third of the subformat x option sets (lib.sh sampled),
# each at every size; check-slow the rest.
. "$(dirname "$0")/lib.sh"
require vmdkinfo
MiB=$((1024 * 1024))

# same NAME: the files of the image in q/ (qemu-img) and k/ (kimg) are the
# same bytes, CID lines aside (qemu's is random)
same_files() {
    local f r=0
    for f in $(cd q && ls); do
        [ -f "k/$f" ] || { r=1; diag "k/$f missing"; continue; }
        if ! head -c 4 "q/$f" | grep -q KDMV && [ "$(stat -c %s "q/$f")" -gt 65536 ]; then
            # a flat extent: its size, and no data (a hole)
            [ "$(stat -c %s "q/$f")" = "$(stat -c %s "k/$f")" ] || { r=1; diag "$f: size differs"; }
            [ "$(stat -c %b "k/$f")" -le 8 ] || { r=1; diag "$f: holds data"; }
        elif head -c 30 "q/$f" | grep -q '^# Disk'; then
            cmp -s <(sed 's/^CID=.*/CID=/' "q/$f") <(sed 's/^CID=.*/CID=/' "k/$f") || { r=1; diag "$f differs"; }
        else
            # a sparse extent: the CID lies in its embedded descriptor,
            # whose length follows the CID's hex digits
            $PY - "q/$f" "k/$f" <<'EOF' || r=1
import re, sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
def norm(d):
    if d[:4] != b"KDMV":
        return d
    end = d.index(b"\0", 512)
    text = re.sub(rb"\nCID=[0-9a-f]+\n", b"\nCID=\n", d[512:end])
    return d[:512] + text + d[end:].lstrip(b"\0") + b"%d" % len(d)
if norm(a) != norm(b):
    print("# %s differs from %s" % (sys.argv[2], sys.argv[1]))
    sys.exit(1)
EOF
        fi
    done
    [ "$(cd q && ls | sort)" = "$(cd k && ls | sort)" ] || { r=1; diag "file lists differ"; }
    return $r
}

create_both() {  # OPTS SIZE [extra args]: create t.vmdk in q/ and k/
    local o=$1 size=$2; shift 2
    rm -rf q k; mkdir q k
    cp base.vmdk q/; cp base.vmdk k/
    (cd q && qemu-img create -f vmdk ${o:+-o "$o"} "$@" t.vmdk ${size:+"$size"} > ../qout 2> ../qerr) && QRC=0 || QRC=$?
    (cd k && "$KIMG" create -f vmdk ${o:+-o "$o"} "$@" t.vmdk ${size:+"$size"} > ../kout 2> ../kerr) && RC=0 || RC=$?
    sed -i 's/^qemu-img: /kimg: /' qerr
}

qemu-img create -q -f vmdk base.vmdk 10M
qemu-io -c 'write -P 7 0 64k' base.vmdk > /dev/null

for sub in "" monolithicSparse monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat \
           streamOptimized; do
    for extra in "" adapter_type=lsilogic adapter_type=buslogic,hwversion=7 \
                 adapter_type=legacyESX,compat6=on toolsversion=10240,zeroed_grain=on; do
        case $sub,$extra in *Flat*zeroed*) continue ;; esac
        # the (subformat, options) pair is the case: a sample of them covers
        # every subformat and every option set, each at all three sizes
        sampled || continue
        o=${sub:+subformat=$sub}${sub:+${extra:+,}}$extra
        for size in 1M $((5 * 1024 * MiB + 512 * 3)) 100M; do
            create_both "$o" "$size"
            name="create -o '$o' $size"
            is "$RC" "$QRC" "$name: exit code" || diag "$(< kerr)"
            is_file kout qout "$name: the Formatting line"
            ok "$name: the files as qemu-img's (CID aside)" same_files
            ok "$name: qemu-img check clean" check_clean k/t.vmdk
            (cd k && vmdkinfo t.vmdk > /dev/null 2>&1)
            is "$?" 0 "$name: vmdkinfo reads it"
        done
    done
done

# delta disks: the parent's CID and name
for sub in "" streamOptimized twoGbMaxExtentSparse; do
    create_both "${sub:+subformat=$sub}" "" -b base.vmdk -F vmdk
    is "$RC:$(< kout)" "$QRC:$(< qout)" "-b base.vmdk $sub: exit code and Formatting line"
    ok "-b base.vmdk $sub: the files as qemu-img's (CID aside)" same_files
    qimg info --output=json k/t.vmdk
    like "$(< "$T/qout")" '"parent-cid": '"$(qemu-img info --output=json base.vmdk |
        $PY -c 'import json,sys; print(json.load(sys.stdin)["format-specific"]["data"]["cid"])')" \
        "-b base.vmdk $sub: parentCID is the parent's CID"
    ok "-b base.vmdk $sub: reads as its parent" qemu_oracle_compare k/t.vmdk base.vmdk
done

# refusals: qemu-img's words, exit 1, no file left by kimg
for args in "-o compat6=on,hwversion=4" "-o subformat=vmfs" "-o adapter_type=foo" \
            "-o subformat=monolithicFlat,zeroed_grain=on" \
            "-o subformat=twoGbMaxExtentFlat -b base.vmdk -F vmdk" "-b base.vmdk -F raw" \
            "-o zeroed_grain=maybe" "-o cluster_size=64k"; do
    # shellcheck disable=SC2086
    create_both "" 1M $args
    is "$RC" "$QRC" "create $args: exit code as qemu-img's"
    is_file kerr qerr "create $args: qemu-img's message"
    is_file kout qout "create $args: stdout as qemu-img's"
    ok "create $args: no file left" test ! -e k/t.vmdk
done

oracle "create -o help" create -f vmdk -o help
oracle "create -o help FILE" create -f vmdk -o help x.vmdk
oracle "convert -O vmdk -o help" convert -O vmdk -o help
oracle "create -o ? " create -f vmdk -o '?'

done_testing
