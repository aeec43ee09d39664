#!/bin/bash
# create -f vpc against qemu-img 7.2: `-o help` (with and without a file
# name), the "Formatting" line for each option set, the refusals (a bad
# subformat, past 2040 GiB) in qemu-img's words and with no file left
# behind, and the images themselves: for dynamic and fixed disks, with and
# without force_size, over many sizes (the CHS rounding, its largest
# geometry, the 2040 GiB limit) kimg's file is qemu-img's byte for byte
# but for the footer's time stamp, UUID and checksum, so qemu-img info
# (virtual size, cluster size) is the same; vhdiinfo accepts it; the
# Azure warning for a fixed disk whose size is not whole MiB.
# make check: a third of the option set x size matrix (lib.sh sampled; the
# sizes rotate over the option sets); check-slow the rest.
. "$(dirname "$0")/lib.sh"
command -v vhdiinfo > /dev/null || skip_all "vhdiinfo not installed"

oracle "-o help" create -f vpc -o help
oracle "-o help with a file name" create -f vpc -o help x.vhd

# the file protocol's options, other formats' options, -b: as qemu-img
for args in "-o force_size=on,subformat=fixed,nocow=on,extent_size_hint=1M,preallocation=off x.vhd 1M" "-o preallocation=full x.vhd 1M" "-o static=on x.vhd 1M" "-b a.vhd -F vpc x.vhd 1M" "-o subformat=dynamic,force_size=off x.vhd 5M"; do
    rm -f x.vpc
    # shellcheck disable=SC2086
    qimg create -f vpc $args
    rm -f x.vpc
    # shellcheck disable=SC2086
    kimg create -f vpc $args
    is "$RC" "$QRC" "create $args: exit code as qemu-img's"
    is_file "$T/out" "$T/qout" "create $args: stdout (the Formatting line) as qemu-img's"
    is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" "create $args: stderr as qemu-img's"
done
oracle "-o ? " create -f vpc -o '?'

# same_vhd NAME A B: the files are equal but for the footer fields that
# must differ (time stamp 24-27, checksum 64-67, UUID 68-83), in the copy
# at 0 and the footer at the end
same_vhd() {
    local a=$1 b=$2 sa sb
    sa=$(stat -c %s "$a"); sb=$(stat -c %s "$b")
    [ "$sa" = "$sb" ] || { diag "sizes $sa and $sb"; return 1; }
    # a fixed disk's data (a hole in both) is not read: its last 512 bytes
    if ! head -c 8 "$a" | grep -q conectix; then
        tail -c 512 "$a" > "$a.f"; tail -c 512 "$b" > "$b.f"; a=$a.f; b=$b.f; sa=512
    fi
    cmp -l "$a" "$b" | awk -v end=$((sa - 512)) '{ o = $1 - 1; f = -1
        if (o < 512) f = o; else if (o >= end) f = o - end
        if (!((f >= 24 && f < 28) || (f >= 64 && f < 84))) { bad++; if (bad < 4) print "differs at " o }
        } END { exit bad > 0 }'
}

mkdir -p q k
# sizes: tiny, CHS steps, odd sector counts, where the heads and sectors
# per track change (17/31/63/255), the largest geometry (65535*16*255
# sectors) and above it (the size as asked), 2040 GiB
sizes="0 512 1024 1M 3M 10M 1000000000 1G 2G 4G 7654321 $((4194304 * 512)) \
$((1024 * 16 * 17 * 512)) $((1024 * 16 * 17 * 512 + 512)) $((1024 * 16 * 31 * 512 + 4096)) \
$((65535 * 16 * 63 * 512 - 512)) $((65535 * 16 * 63 * 512)) $((65535 * 16 * 63 * 512 + 512)) \
$((65535 * 16 * 255 * 512 - 512)) $((65535 * 16 * 255 * 512)) $((65535 * 16 * 255 * 512 + 512)) \
130G 200G 1T 2040G"
for opts in "" "subformat=fixed" "force_size=on" "subformat=fixed,force_size=on"; do
    o=(); [ -n "$opts" ] && o=(-o "$opts")
    bad_info=0 bad_bytes=0 bad_fmt=0 n=0 m=0
    for s in $sizes; do
        sampled || continue
        m=$((m + 1))
        # a fixed disk of a TiB or two is a sparse file: fine on ext4/xfs
        rm -f q/d.vhd k/d.vhd
        (cd q && qemu-img create -f vpc "${o[@]}" d.vhd "$s") > q.out 2>&1 || { diag "qemu-img refused $s"; continue; }
        (cd k && "$KIMG" create -f vpc "${o[@]}" d.vhd "$s") > k.out 2> k.err
        n=$((n + 1))
        cmp -s q.out k.out || { bad_fmt=$((bad_fmt + 1)); diag "$opts $s: $(< k.out)"; }
        (cd q && qemu-img info -f vpc --output=json d.vhd 2>/dev/null) | grep -v actual-size > q.json
        (cd k && qemu-img info -f vpc --output=json d.vhd 2>/dev/null) | grep -v actual-size > k.json
        cmp -s q.json k.json || { bad_info=$((bad_info + 1)); diag "$opts $s: info differs: $(diff q.json k.json | head -4)"; }
        same_vhd q/d.vhd k/d.vhd || { bad_bytes=$((bad_bytes + 1)); diag "$opts $s: bytes differ"; }
    done
    # (all 25 sizes: qemu-img made at least 20; the same share of those run)
    ok "[$opts] qemu-img made $n of the $m sizes run" test "$n" -gt 0 -a "$n" -ge $((m * 4 / 5))
    is "$bad_fmt" 0 "[$opts] the Formatting line is qemu-img's for every size run"
    is "$bad_info" 0 "[$opts] qemu-img info of kimg's image is that of qemu-img's for every size run"
    is "$bad_bytes" 0 "[$opts] the image is qemu-img's byte for byte for every size run (time stamp, UUID, checksum aside)"
done
rm -f q/d.vhd k/d.vhd

# the CHS rounding: 1 GiB becomes 2081 x 16 x 63 sectors
kimg create -q -f vpc r.vhd 1G
qimg info -f vpc --output=json r.vhd
like "$(< "$T/qout")" '"virtual-size": 1073995776' "1 GiB is rounded up to its CHS geometry"

# Azure: a fixed disk whose size is not whole MiB gets a warning
kimg create -q -f vpc -o subformat=fixed az.vhd 1G
like "$(< "$T/err")" "warning: the fixed VHD's virtual size \(1073995776 bytes\) is not a multiple of 1 MiB, which Azure refuses" \
    "fixed 1G without force_size: the Azure warning"
like "$(< "$T/err")" "force_size=on" "the warning says how to get an Azure-ready disk"
kimg create -q -f vpc -o subformat=fixed,force_size=on az.vhd 1G
is "$RC/$(< "$T/err")" "0/" "fixed 1G with force_size: no warning"
is "$(stat -c %s az.vhd)" $((1073741824 + 512)) "force_size: the data is exactly 1 GiB, then the footer"
kimg create -q -f vpc az2.vhd 1G
is "$(< "$T/err")" "" "a dynamic disk: no warning"

# vhdiinfo reads both kinds
for f in r.vhd az.vhd; do
    ok "vhdiinfo accepts $f" vhdiinfo "$f"
done
like "$(vhdiinfo az.vhd)" "Media size.*1073741824 bytes" "vhdiinfo: the fixed disk's size"
like "$(vhdiinfo r.vhd)" "Disk type.*Dynamic" "vhdiinfo: a dynamic disk"

# refusals, in qemu-img's words, and no file left behind
for args in "-o subformat=foo bad.vhd 1G" "bad.vhd 2041G" "-o force_size=on bad.vhd 2041G" \
            "-o force_size=maybe bad.vhd 1G" "-o cluster_size=64k bad.vhd 1G"; do
    rm -f bad.vhd
    # shellcheck disable=SC2086
    qimg create -f vpc $args
    rm -f bad.vhd
    # shellcheck disable=SC2086
    kimg create -f vpc $args
    is "$RC" "$QRC" "create $args: exit code as qemu-img's"
    is_file "$T/out" "$T/qout" "create $args: stdout as qemu-img's"
    is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" "create $args: qemu-img's message"
    ok "create $args: no file left" test ! -e bad.vhd
done
done_testing
