#!/bin/bash
# kimg create -f vmdk: every subformat and option set against qemu-img
# create's files (the descriptor byte for byte but its random CID, the
# sparse extents' header, directories and tables byte for byte), the
# "Formatting" line, `-o help`, qemu-img's refusals in its words (and no
# file left), delta disks (parentCID, parentFileNameHint), and that
# qemu-img and vmdkinfo read every new image.
# make check: a third of the subformat x option sets (lib.sh sampled),
# each at every size, and a third of the refusals; check-slow the rest.
. "$(dirname "$0")/lib.sh"
require vmdkinfo
MiB=$((1024 * 1024))

# same_files: the files of the image in q/ (qemu-img) and k/ (kimg) are
# the same bytes, CID lines aside (qemu's is random); one python for all
# the files of a case
same_files() {
    $PY - <<'EOF'
import os, re, sys
def norm(d):
    if d[:4] != b"KDMV":
        return d
    end = d.index(b"\0", 512)
    text = re.sub(rb"\nCID=[0-9a-f]+\n", b"\nCID=\n", d[512:end])
    return d[:512] + text + d[end:].lstrip(b"\0") + b"%d" % len(d)
def head(p, n):
    with open(p, "rb") as f:
        return f.read(n)
r = 0
qs = sorted(f for f in os.listdir("q") if not f.startswith("."))
ks = sorted(f for f in os.listdir("k") if not f.startswith("."))
for f in qs:
    q, k = "q/" + f, "k/" + f
    if not os.path.isfile(k):
        r = 1; print("# k/%s missing" % f); continue
    if head(q, 4) != b"KDMV" and os.stat(q).st_size > 65536:
        # a flat extent: its size, and no data (a hole)
        if os.stat(q).st_size != os.stat(k).st_size:
            r = 1; print("# %s: size differs" % f)
        if os.stat(k).st_blocks > 8:
            r = 1; print("# %s: holds data" % f)
    elif any(l.startswith(b"# Disk") for l in head(q, 30).split(b"\n")):
        a, b = (re.sub(rb"(?m)^CID=.*", b"CID=", head(p, None)) for p in (q, k))
        if a != b:
            r = 1; print("# %s differs" % f)
    # a sparse extent: the CID lies in its embedded descriptor, whose
    # length follows the CID's hex digits
    elif norm(head(q, None)) != norm(head(k, None)):
        r = 1; print("# %s differs from %s" % (k, q))
if qs != ks:
    r = 1; print("# file lists differ")
sys.exit(r)
EOF
}

create_both() {  # OPTS SIZE [extra args]: create t.vmdk in q/ and k/
    local o=$1 size=$2; shift 2
    rm -rf q k; mkdir q k
    # the parent beside the image for the cases that name it (-b)
    case " $* " in *" -b "*) cp base.vmdk q/; cp base.vmdk k/ ;; esac
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

# refusals: qemu-img's words, exit 1, no file left by kimg.  A third in
# check (lib.sh sampled; the file's count stands at 28 cases here, so
# check takes the 3rd and the 6th: an option refused with a subformat,
# and a subformat refused with a backing file), the rest in check-slow.
for args in "-o compat6=on,hwversion=4" "-o subformat=vmfs" \
            "-o subformat=monolithicFlat,zeroed_grain=on" "-o adapter_type=foo" \
            "-o zeroed_grain=maybe" "-o subformat=twoGbMaxExtentFlat -b base.vmdk -F vmdk" \
            "-b base.vmdk -F raw" "-o cluster_size=64k"; do
    sampled || continue
    # shellcheck disable=SC2086
    create_both "" 1M $args
    is "$RC" "$QRC" "create $args: exit code as qemu-img's"
    is_file kerr qerr "create $args: qemu-img's message"
    is_file kout qout "create $args: stdout as qemu-img's"
    ok "create $args: no file left" test ! -e k/t.vmdk
done

# kimg's own limits (qemu-img makes these, kimg could not open them): a
# sparse extent over 64 TiB, more than 4096 split files; refused in one
# line before any file is made, convert too; the largest allowed opens
mkdir -p lim
for c in "monolithicSparse|$((64 << 40))|larger than kimg's limit" \
         "streamOptimized|$((64 << 40))|larger than kimg's limit" \
         "twoGbMaxExtentSparse|$((8 << 40))|more than 4096 extent files" \
         "twoGbMaxExtentFlat|$((8 << 40))|more than 4096 extent files"; do
    IFS='|' read -r sub max want <<< "$c"
    kimg create -q -f vmdk -o subformat=$sub lim/t.vmdk $((max + 512))
    err_line "create $sub, 512 bytes over kimg's limit"
    like "$(< "$T/err")" "$want" "create $sub over the limit: the reason"
    ok "create $sub over the limit: no file left" test -z "$(ls -A lim)"
    qemu-img create -q -f qcow2 lim.qcow2 $((max + 512))
    kimg convert -O vmdk -o subformat=$sub lim.qcow2 lim/t.vmdk
    err_line "convert -O vmdk $sub over the limit"
    ok "convert $sub over the limit: no file left" test -z "$(ls -A lim)"
    [ "$sub" = monolithicSparse ] || continue
    kimg create -q -f vmdk -o subformat=$sub lim/t.vmdk $max
    is "$RC" 0 "create $sub at the limit"
    kimg info lim/t.vmdk
    is "$RC" 0 "create $sub at the limit: kimg opens it"
    rm -f lim/* lim.qcow2
done

oracle "create -o help" create -f vmdk -o help
oracle "create -o help FILE" create -f vmdk -o help x.vmdk
oracle "convert -O vmdk -o help" convert -O vmdk -o help
oracle "create -o ? " create -f vmdk -o '?'

done_testing
