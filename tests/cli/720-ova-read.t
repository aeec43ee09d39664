#!/bin/bash
# OVA archives read in place: OVF 1.0 (VMware-style), 2.0 (VirtualBox-
# style) and an ovf:-prefixed descriptor, in ustar, pax and GNU tars (long
# member names through pax records and GNU long names), with SHA256, SHA1
# or SHA512 manifests (VirtualBox's "SHA1 (name) = hex" spacing too) or
# none, holding qcow2, raw and vpc disks made by qemu-img.  Every disk
# reads as the member would once extracted: info (every disk listed, or
# --disk N), convert -O raw / -O qcow2 (qemu-img compare with the member),
# checksum (the member's), compare, and map (qemu-img map of the member as
# tar extracts it: offsets in the member).  qemu-img cannot read inside an
# OVA: the oracle is qemu-img on the extracted member.
# make check: of the three fully read archives a third of the disks (lib.sh
# sampled, in an order that gives each archive a disk of another format),
# and a third of the other archives; check-slow the rest.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/ova.sh"

disks_made
fmts=(qcow2 raw vpc)
long=disk-with-a-name-longer-than-the-hundred-bytes-a-ustar-header-holds-$(printf 'x%.0s' $(seq 60)).raw
cp d2.raw "$long"

# build STYLE TARFMT MF: vm-STYLE-TARFMT.ova with d1.qcow2, d2 (the long
# name for pax and gnu), d3.vhd, and a manifest MF (none/SHA1/SHA256/SHA512)
build() {
    local style=$1 tf=$2 mf=$3 d2=d2.raw
    [ "$tf" != ustar ] && d2=$long
    ovf_write vm.ovf "$style" d1.qcow2 "$d2" d3.vhd
    local members=(vm.ovf)
    if [ "$mf" != none ]; then
        # VirtualBox writes its manifest lines BSD-style
        MF_BSD=$([ "$style" = vbox2 ] && echo 1) mf_write vm.mf "$mf" vm.ovf d1.qcow2 "$d2" d3.vhd
        members+=(vm.mf)
    fi
    members+=(d1.qcow2 "$d2" d3.vhd)
    ova_tar "vm-$style-$tf.ova" "$tf" "${members[@]}"
    D2=$d2
}

# full OVA ORDER: the full set of reading commands on one archive, the
# disks in ORDER (each disk a sampled case)
full() {
    local ova=$1 order=$2 n f m
    kimg info --output=json "$ova"
    is "$RC" 0 "$ova: info exit 0"
    is "$($PY -c 'import json,sys; print(" ".join("%s:%s:%d" % (o["archive-member"], o["format"], o["archive-disk"]) for o in json.load(open(sys.argv[1]))))' "$T/out")" \
        "d1.qcow2:qcow2:1 $D2:raw:2 d3.vhd:vpc:3" "$ova: info lists the three disks in DiskSection order"
    for n in $order; do
        sampled || continue
        f=${fmts[$((n - 1))]}
        m=$( [ $n = 1 ] && echo d1.qcow2 || { [ $n = 2 ] && echo "$D2" || echo d3.vhd; })
        kimg info --disk $n --output=json "$ova"
        qimg info -f "$f" --output=json "$m"
        json_norm "$T/out" filename actual-size archive-member archive-disk > a.json
        json_norm "$T/qout" filename actual-size > b.json
        is_file a.json b.json "$ova disk $n: info --disk as qemu-img info of the member"
        kimg convert --disk $n -O raw "$ova" out.raw
        is "$RC" 0 "$ova disk $n: convert -O raw"
        ok "$ova disk $n: -O raw is the member's content" qemu_oracle_compare -f raw -F "$f" out.raw "$m"
        kimg convert --disk $n -O qcow2 "$ova" out.qcow2
        ok "$ova disk $n: -O qcow2 is the member's content" qemu_oracle_compare -F "$f" out.qcow2 "$m"
        kimg checksum --disk $n "$ova"
        local a; a=$(cut -d' ' -f1 "$T/out")
        kimg checksum -f "$f" "$m"
        is "$a" "$(cut -d' ' -f1 "$T/out")" "$ova disk $n: checksum is the member's"
        kimg compare --disk $n -F "$f" "$ova" "$m"
        is "$RC:$(< "$T/out")" "0:Images are identical." "$ova disk $n: compare with the member"
        # the member as tar extracts it (dense: the tar holds its zeros)
        tar -xOf "$ova" -- "$m" > extracted
        kimg map --disk $n --output=json "$ova"
        qimg map -f "$f" --output=json extracted
        is_file "$T/out" "$T/qout" "$ova disk $n: map as qemu-img map of the extracted member"
    done
}

# the quick set: info lists the disks; each disk's checksum is its member's
quick() {
    local ova=$1 n f m sums=
    kimg info --output=json "$ova"
    is "$RC:$($PY -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$T/out")" \
        "0:3" "$ova: info lists three disks"
    for n in 1 2 3; do
        kimg checksum --disk $n "$ova"
        sums="$sums $(cut -d' ' -f1 "$T/out")"
    done
    is "$sums" "$WANT_SUMS" "$ova: each disk's checksum is its member's"
}

WANT_SUMS=
for m in d1.qcow2 d2.raw d3.vhd; do
    kimg checksum "$m"
    WANT_SUMS="$WANT_SUMS $(cut -d' ' -f1 "$T/out")"
done

# (the orders rotate: make check's sample is disk 1 of the first archive,
# disk 2, the long name, of the second, disk 3 of the third)
build vmware1 ustar SHA256; full vm-vmware1-ustar.ova "1 2 3"
build vbox2 pax SHA1; full vm-vbox2-pax.ova "2 3 1"
build prefixed gnu none; full vm-prefixed-gnu.ova "3 1 2"
for style in vmware1 vbox2 prefixed; do
    for tf in ustar pax gnu; do
        case $style-$tf in vmware1-ustar|vbox2-pax|prefixed-gnu) continue ;; esac
        sampled || continue
        build "$style" "$tf" SHA512
        quick "vm-$style-$tf.ova"
    done
done

# the human info: one block per disk, the member's line after "image:"
build vmware1 ustar SHA256
kimg info vm-vmware1-ustar.ova
is "$(grep -c '^image: vm-vmware1-ustar.ova$' "$T/out")" 3 "human info: three blocks"
is "$(grep '^archive member:' "$T/out" | tr '\n' '|')" \
    "archive member: d1.qcow2 (disk 1 of 3)|archive member: d2.raw (disk 2 of 3)|archive member: d3.vhd (disk 3 of 3)|" \
    "human info: each block names its member"
kimg info --disk 2 vm-vmware1-ustar.ova
qimg info -f raw d2.raw
is "$(sed -n 2p "$T/out")" "archive member: d2.raw (disk 2 of 3)" "info --disk 2: the member line"
is "$(sed 2d "$T/out" | sed 1d | grep -v '^disk size')" "$(sed 1d "$T/qout" | grep -v '^disk size')" \
    "info --disk 2: the rest as qemu-img info of the member"

# a blank disk (no file) is not listed; the disks keep their order
OVF_BLANK_DISK=1 ovf_write vm.ovf vmware1 d3.vhd d1.qcow2
ova_tar blank.ova ustar vm.ovf d1.qcow2 d3.vhd
kimg info --output=json blank.ova
is "$($PY -c 'import json,sys; print(" ".join(o["archive-member"] for o in json.load(open(sys.argv[1]))))' "$T/out")" \
    "d3.vhd d1.qcow2" "a blank disk is skipped; disks in DiskSection order, not tar order"

# one disk: still an array (the shape does not depend on the count)
ovf_write vm.ovf vbox2 d1.qcow2
ova_tar one.ova ustar vm.ovf d1.qcow2
kimg info --output=json one.ova
is "$($PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(type(d).__name__, len(d))' "$T/out")" \
    "list 1" "info of a one-disk OVA: an array of one"

# -f raw reads the archive's bytes, as before
kimg convert -f raw -O raw one.ova out.raw
ok "-f raw: the tar's own bytes" cmp -s out.raw one.ova
kimg info -f raw one.ova
is "$(sed -n 2p "$T/out")" "file format: raw" "-f raw: info of the tar as raw"

# a tar whose first member is not an .ovf is no OVA: probed as before
ova_tar plain.tar ustar d1.qcow2 vm.ovf
kimg info --output=json plain.tar
qimg info --output=json plain.tar
is_file "$T/out" "$T/qout" "a plain tar (disk first) probes as raw, as qemu-img"

done_testing
