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
# make check: a third of each repeated set (lib.sh sampled): of the
# option set x size matrix (the sizes rotate over the option sets, 2040G
# fixed among them), of the three help requests (-o help), of the create
# options as qemu-img (the file protocol's accepted, -b refused) and of the
# refusals (a bad subformat, 2041G); check-slow the rest.
. "$(dirname "$0")/lib.sh"
command -v vhdiinfo > /dev/null || skip_all "vhdiinfo not installed"

# (sampled: check takes the 1st, 4th, 7th... case of the file: -o help;
# in the loop below the 2nd and 5th; in the refusals the 1st and 4th)
sampled && oracle "-o help" create -f vpc -o help
sampled && oracle "-o help with a file name" create -f vpc -o help x.vhd

# the file protocol's options, other formats' options, -b: as qemu-img
for args in "-o preallocation=full x.vhd 1M" "-o force_size=on,subformat=fixed,nocow=on,extent_size_hint=1M,preallocation=off x.vhd 1M" \
            "-o static=on x.vhd 1M" "-o subformat=dynamic,force_size=off x.vhd 5M" "-b a.vhd -F vpc x.vhd 1M"; do
    sampled || continue
    rm -f x.vhd
    # shellcheck disable=SC2086
    qimg create -f vpc $args
    rm -f x.vhd
    # shellcheck disable=SC2086
    kimg create -f vpc $args
    is "$RC" "$QRC" "create $args: exit code as qemu-img's"
    is_file "$T/out" "$T/qout" "create $args: stdout (the Formatting line) as qemu-img's"
    is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" "create $args: stderr as qemu-img's"
done
sampled && oracle "-o ? " create -f vpc -o '?'

# sizes: tiny, CHS steps, odd sector counts, where the heads and sectors
# per track change (17/31/63/255), the largest geometry (65535*16*255
# sectors) and above it (the size as asked), 2040 GiB
sizes="0 512 1024 1M 3M 10M 1000000000 1G 2G 4G 7654321 $((4194304 * 512)) \
$((1024 * 16 * 17 * 512)) $((1024 * 16 * 17 * 512 + 512)) $((1024 * 16 * 31 * 512 + 4096)) \
$((65535 * 16 * 63 * 512 - 512)) $((65535 * 16 * 63 * 512)) $((65535 * 16 * 63 * 512 + 512)) \
$((65535 * 16 * 255 * 512 - 512)) $((65535 * 16 * 255 * 512)) $((65535 * 16 * 255 * 512 + 512)) \
130G 200G 1T 2040G"
# Each case's images in folders of their own, q/N (qemu-img's) and k/N
# (kimg's), both named d.vhd as the Formatting line and info show them;
# the outputs and images are compared in one python afterwards (a dozen
# cmp, grep, stat, head, tail and awk runs a case cost more than the
# qemu-img runs).  A fixed disk of a TiB or two is a sparse file: fine
# on ext4/xfs.
mkdir -p q/{1..100} k/{1..100}
opt_sets=("" "subformat=fixed" "force_size=on" "subformat=fixed,force_size=on")
made=() ran=() i=0
: > cases
for r in "${!opt_sets[@]}"; do
    opts=${opt_sets[r]}
    o=(); [ -n "$opts" ] && o=(-o "$opts")
    made[r]=0 ran[r]=0
    for s in $sizes; do
        sampled || continue
        ran[r]=$((ran[r] + 1)) i=$((i + 1))
        (cd q/$i && exec qemu-img create -f vpc "${o[@]}" d.vhd "$s") > q/$i/out 2>&1 || { diag "qemu-img refused $s"; continue; }
        (cd k/$i && exec "$KIMG" create -f vpc "${o[@]}" d.vhd "$s") > k/$i/out 2> k/$i/err
        made[r]=$((made[r] + 1))
        (cd q/$i && exec qemu-img info -f vpc --output=json d.vhd) > q/$i/json 2> /dev/null
        (cd k/$i && exec qemu-img info -f vpc --output=json d.vhd) > k/$i/json 2> /dev/null
        echo "$r $i $opts $s" >> cases
    done
done
# per option set: how many cases differ in the Formatting line, in qemu-img
# info (actual-size aside), in the bytes: the files are equal but for the
# footer fields that must differ (time stamp 24-27, checksum 64-67, UUID
# 68-83), in the copy at 0 and the footer at the end
$PY - ${#opt_sets[@]} > verdict 2> verdict.diag <<'PY'
import os, sys
bad = [[0, 0, 0] for _ in range(int(sys.argv[1]))]
def rd(p):
    with open(p, 'rb') as f:
        return f.read()
def note(label, what):
    sys.stderr.write('%s: %s\n' % (label, what))
def differs(a, b, end):
    """offsets where a and b differ outside the fields that may"""
    out = []
    for c in range(0, len(a), 65536):
        if a[c:c + 65536] == b[c:c + 65536]:
            continue
        for o in range(c, min(c + 65536, len(a))):
            if a[o] != b[o]:
                f = o if o < 512 else o - end if o >= end else -1
                if not (24 <= f < 28 or 64 <= f < 84):
                    out.append(o)
    return out
for line in open('cases'):
    r, i, label = line.rstrip('\n').split(' ', 2)
    c = bad[int(r)]
    q, k = 'q/%s/' % i, 'k/%s/' % i
    if rd(q + 'out') != rd(k + 'out'):
        c[0] += 1
        note(label, rd(k + 'out').decode(errors='replace').strip())
    jq = [l for l in rd(q + 'json').split(b'\n') if b'actual-size' not in l]
    jk = [l for l in rd(k + 'json').split(b'\n') if b'actual-size' not in l]
    if jq != jk:
        c[1] += 1
        note(label, 'info differs: %s / %s' % (b' '.join(jq).decode(errors='replace'),
                                               b' '.join(jk).decode(errors='replace')))
    a, b = q + 'd.vhd', k + 'd.vhd'
    if not os.path.exists(b):
        c[2] += 1
        note(label, 'kimg made no image: %s' % rd(k + 'err').decode(errors='replace').strip())
        continue
    sa, sb = os.path.getsize(a), os.path.getsize(b)
    if sa != sb:
        c[2] += 1
        note(label, 'bytes differ: sizes %d and %d' % (sa, sb))
        continue
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        if fa.read(8) == b'conectix':
            fa.seek(0)
            da, db, end = fa.read(), fb.read(), sa - 512
        else:
            # a fixed disk's data (a hole in both) is not read: its last 512 bytes
            fa.seek(sa - 512)
            fb.seek(sa - 512)
            da, db, end = fa.read(), fb.read(), 0
    d = differs(da, db, end)
    if d:
        c[2] += 1
        note(label, 'bytes differ at %s' % ' '.join(str(o + (sa - 512 if end == 0 else 0)) for o in d[:3]))
for c in bad:
    print(*c)
PY
[ -s verdict.diag ] && diag "$(< verdict.diag)"
mapfile -t verdict < verdict
for r in "${!opt_sets[@]}"; do
    opts=${opt_sets[r]} n=${made[r]} m=${ran[r]}
    read -r bad_fmt bad_info bad_bytes <<< "${verdict[r]:-x x x}"
    # (all 25 sizes: qemu-img made at least 20; the same share of those run)
    ok "[$opts] qemu-img made $n of the $m sizes run" test "$n" -gt 0 -a "$n" -ge $((m * 4 / 5))
    is "$bad_fmt" 0 "[$opts] the Formatting line is qemu-img's for every size run"
    is "$bad_info" 0 "[$opts] qemu-img info of kimg's image is that of qemu-img's for every size run"
    is "$bad_bytes" 0 "[$opts] the image is qemu-img's byte for byte for every size run (time stamp, UUID, checksum aside)"
done
rm -rf q k

# the CHS rounding: 1 GiB becomes 2081 x 16 x 63 sectors
kimg create -q -f vpc r.vhd 1G
qimg info -f vpc --output=json r.vhd
like "$(< "$T/qout")" '"virtual-size": 1073995776' "1 GiB is rounded up to its CHS geometry"

# Azure: a fixed disk whose size is not whole MiB gets a warning
kimg create -q -f vpc -o subformat=fixed az.vhd 1G
like "$(< "$T/err")" "warning: the fixed VHD's virtual size \(1073995776 bytes\) is not a multiple of 1 MiB, which Azure refuses" \
    "fixed 1G without force_size: the Azure warning"
like "$(< "$T/err")" "force_size=on" "the warning says how to get an Azure-ready disk"
like "$(< "$T/err")" "\(e\.g\. 1073741824\)" "... the size asked in whole MiB, which force_size keeps"
kimg create -q -f vpc -o subformat=fixed az.vhd 1000000000
like "$(< "$T/err")" "\(e\.g\. 1000341504\)" "fixed 1000000000: the example rounds up to whole MiB"
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
for args in "-o subformat=foo bad.vhd 1G" "-o force_size=maybe bad.vhd 1G" "-o cluster_size=64k bad.vhd 1G" \
            "bad.vhd 2041G" "-o force_size=on bad.vhd 2041G"; do
    sampled || continue
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
# convert's words for the same limit are the driver's, not create's
truncate -s 2041G big.raw
for o in "" "-o subformat=fixed"; do
    rm -f bad.vhd
    # shellcheck disable=SC2086
    qimg convert -O vpc $o big.raw bad.vhd
    rm -f bad.vhd
    # shellcheck disable=SC2086
    kimg convert -O vpc $o big.raw bad.vhd
    is "$RC" "$QRC" "convert -O vpc $o of 2041 GiB: exit code as qemu-img's"
    is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" \
        "convert -O vpc $o of 2041 GiB: qemu-img's message"
    ok "convert -O vpc $o of 2041 GiB: no file left" test ! -e bad.vhd
done
rm -f big.raw
done_testing
