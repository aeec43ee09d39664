#!/bin/bash
# Snapshot table entries qemu-img check reports, and what the other
# commands do with them, qemu-img 7.2 as the oracle.
# 1. Version 3 entries with less than 16 bytes of extra data (the spec's
#    vm_state_size_large + disk_size): check reports each ("ERROR snapshot
#    table entry N is incomplete", exit 2), check -r all rewrites the table
#    (byte for byte as qemu-img's repair writes it), crash-safely: killed
#    at every file change (also with unsynced changes lost), the image
#    keeps every snapshot and either table.  Version 2 entries need none.
#    info, snapshot -l, convert -l, -a, -d, -c work as in qemu-img.
# 2. A snapshot L1 table larger than qemu's QCOW_MAX_L1_SIZE (32 MiB) or
#    not cluster aligned: the image opens (info, -l, other snapshots work),
#    check reports it, and what would use the table refuses with qemu-img's
#    message (-a, -d, convert -l, amend compat=0.10), leaving the file as
#    it was.  (qemu 7.2 checks nothing else: an l1_size too small for the
#    snapshot's disk size is accepted by both.)
# make check: a third of the repeated cases (lib.sh sampled): of the images
# under each check mode (1.) and under each command (2.), the modes and
# commands rotating over the images so that each image and each mode or
# command has a case in check; of the refusals and the convert -l failures
# (ordered so that check takes each image and each command once); the
# repair's crash safety on the image with a leak at check's crash points.
# check-slow: the other cases, the other crash points, the crash safety
# of the repair on the other image and under power failures.
. "$(dirname "$0")/lib.sh"
cd "$T"

# shorten IMAGE EXTRA...: rewrite the snapshot table in place with entry
# i's extra data cut to EXTRA[i] bytes (the table only shrinks)
shorten() {
    $PY - "$@" <<'EOF'
import struct, sys
fn, want = sys.argv[1], [int(x) for x in sys.argv[2:]]
d = bytearray(open(fn, 'rb').read())
nb, so = struct.unpack_from('>IQ', d, 60)
off, out = so, bytearray()
for i in range(nb):
    off = (off + 7) & ~7
    idl, nl = struct.unpack_from('>HH', d, off + 12)
    ex = struct.unpack_from('>I', d, off + 36)[0]
    k = want[i] if i < len(want) else ex
    out += bytes(-len(out) % 8) + d[off:off + 36] + struct.pack('>I', k)
    out += d[off + 40:off + 40 + k] + d[off + 40 + ex:off + 40 + ex + idl + nl]
    off += 40 + ex + idl + nl
d[so:off] = out + bytes(off - so - len(out))
open(fn, 'wb').write(d)
EOF
}
# table IMAGE: the snapshot entries as stored (offsets left out)
table() {
    $PY - "$1" <<'EOF'
import struct, sys
d = open(sys.argv[1], 'rb').read()
nb, off = struct.unpack_from('>IQ', d, 60)
for i in range(nb):
    off = (off + 7) & ~7
    idl, nl = struct.unpack_from('>HH', d, off + 12)
    ex = struct.unpack_from('>I', d, off + 36)[0]
    print(d[off:off + 40 + ex + idl + nl].hex())
    off += 40 + ex + idl + nl
EOF
}
# snlist IMAGE OUT: qemu-img snapshot -l's entries, ID, name, VM size,
# date (awk's NR > 2 { print $1, $2, $3, $4 }, read by bash: no awk)
snlist() {
    local l=0 a b c d rest
    qemu-img snapshot -l "$1" > "$T/snl"
    while read -r a b c d rest; do l=$((l + 1)); [ $l -le 2 ] || echo "$a $b $c $d"; done < "$T/snl" > "$2"
}
snap_raws() {       # snap_raws IMAGE PREFIX: each snapshot's content
    local s
    for s in first second; do qemu-img convert -O raw -l "$s" "$1" "$2-$s.raw"; done
}

qemu-img create -q -f qcow2 base.qcow2 64M
qemu-io -c "write -P 0x11 0 128k" -c "write -P 0x22 32M 64k" base.qcow2 > /dev/null
qemu-img snapshot -c first base.qcow2
qemu-io -c "write -P 0x33 64k 128k" base.qcow2 > /dev/null
qemu-img snapshot -c second base.qcow2
qemu-io -c "write -P 0x44 1M 64k" -c "write -z 2M 64k" base.qcow2 > /dev/null
so=$(get_be 8 base.qcow2 64)

# ---- 1. incomplete entries --------------------------------------------------
cp base.qcow2 short.qcow2; shorten short.qcow2 0 8          # none / VM state only
cp base.qcow2 one.qcow2; shorten one.qcow2 24 4             # the second only
cp base.qcow2 sixteen.qcow2; shorten sixteen.qcow2 16 16    # complete (no icount)
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 64M
qemu-io -c "write -P 0x11 0 64k" v2.qcow2 > /dev/null
qemu-img snapshot -c first v2.qcow2; qemu-img snapshot -c second v2.qcow2
shorten v2.qcow2 0 0                                        # v2: no extra data needed
cp short.qcow2 leak.qcow2                                   # and a leaked cluster
end=$(stat -c %s leak.qcow2); truncate -s $((end + 65536)) leak.qcow2
$Q2 set-rc leak.qcow2 $end 1

# (each image under each mode a case: with 4 modes over 5 images, check's
# third has every image and every mode; in this order check repairs leak
# and one)
for f in leak short sixteen one v2; do
    for m in all check json leaks; do
        sampled || continue
        case $m in
        check) check_oracle "$f: check" $f.qcow2 ;;
        json) check_oracle "$f: check --output=json" $f.qcow2 --output=json ;;
        leaks) check_oracle "$f: check -r leaks" $f.qcow2 -r leaks ;;
        all)
            repair_oracle "$f: check -r all" $f.qcow2 -r all
            is "$(table "$T/ck/$f.qcow2")" "$(table "$T/cq/$f.qcow2")" \
                "$f: the repaired table as qemu-img writes it"
            ok "$f: repaired image reads as qemu-img's" qemu_oracle_compare "$T/ck/$f.qcow2" "$T/cq/$f.qcow2"
            snap_raws "$T/cq/$f.qcow2" q; snap_raws "$T/ck/$f.qcow2" k
            ok "$f: repaired snapshots read as qemu-img's" cmp -s q-first.raw k-first.raw
            ok "$f: (second)" cmp -s q-second.raw k-second.raw ;;
        esac
    done
done
# the repair on a read-only image, as qemu-img
chmod a-w short.qcow2; check_oracle "short: read-only file, check -r all" short.qcow2 -r all
chmod u+w short.qcow2

# the other commands read the entries as qemu-img does (a missing disk
# size is the image's size, a missing icount none)
oracle "short: info" info short.qcow2
oracle "short: info --output=json" info --output=json short.qcow2
oracle "short: snapshot -l" snapshot -l short.qcow2
for s in 1 2 first second; do
    rm -f q.raw k.raw
    qimg convert -O raw -l $s short.qcow2 q.raw; kimg convert -O raw -l $s short.qcow2 k.raw
    is "$RC" "$QRC" "short: convert -l $s: exit code as qemu-img's"
    ok "short: convert -l $s: output as qemu-img's" cmp -s q.raw k.raw
done
for a in "-a 1" "-a second" "-d first" "-d second" "-c third"; do
    cp short.qcow2 q.qcow2; cp short.qcow2 k.qcow2
    qimg snapshot $a q.qcow2; kimg snapshot $a k.qcow2
    is "$RC" "$QRC" "short: snapshot $a: exit code as qemu-img's"
    ok "short: snapshot $a: image reads as qemu-img's" qemu_oracle_compare k.qcow2 q.qcow2
    snlist q.qcow2 q.list; snlist k.qcow2 k.list
    is_file k.list q.list "short: snapshot $a: snapshots as qemu-img's"
    # kimg writes a new table with every snapshot change (complete entries)
    ok "short: snapshot $a: then qemu-img check clean" check_clean k.qcow2
done

# crash safety of the repair: killed before each file change in turn
crash_loop() {
    local name=$1 img=$2 n=0 rc bad=0 c
    snap_raws "$img" o
    snlist "$img" o.list
    while :; do
        cp "$img" w.qcow2
        # (no env and timeout a point: a hang is the file watchdog's)
        rc=0
        if [ -n "${LOSE:-}" ]; then KIMG_CRASH_LOSE=$LOSE KIMG_CRASH_AFTER=$n "$KIMG" check -r all w.qcow2 > /dev/null 2>&1 || rc=$?
        else KIMG_CRASH_AFTER=$n "$KIMG" check -r all w.qcow2 > /dev/null 2>&1 || rc=$?; fi
        c=0; qemu-img check w.qcow2 > /dev/null 2> w.err || c=$?
        # before the switch: the old table (incomplete entries) and leaks
        # at worst; after it: the new one (an ERROR line of another kind:
        # the two greps' test, read by bash)
        local e other=
        while IFS= read -r e; do
            [[ $e == ERROR* && ! $e =~ "snapshot table entry "[0-9]*" is incomplete" ]] && other=1
        done < w.err
        if [ -n "$other" ] || { [ "$c" != 0 ] && [ "$c" != 2 ] && [ "$c" != 3 ]; }; then
            bad=$((bad + 1)); diag "$name: crash after $n changes: qemu-img check exit $c: $(head -2 w.err)"
        fi
        snlist w.qcow2 w.list
        snap_raws w.qcow2 w
        if [ "$(< w.list)" != "$(< o.list)" ] || ! cmp -s w-first.raw o-first.raw ||
           ! cmp -s w-second.raw o-second.raw; then
            bad=$((bad + 1)); diag "$name: crash after $n changes: snapshots changed"
        fi
        [ "$rc" = 222 ] || break
        crash_next $n > "$T/next"; n=$(< "$T/next"); [ $n -le 100 ] || break
    done
    is "$rc" 0 "$name: completes once no crash comes (after $n crash points)"
    like "$n" "^([3-9]|[1-9][0-9]+)$" "$name: at least 3 crash points exercised"
    is "$bad" 0 "$name: after every crash: every snapshot kept, old or new table, leaks at worst"
}
crash_loop "check -r all crashed (with a leak)" leak.qcow2
# (check-slow only, every crash point: the image without the leak, and the
# power-failure model; make check covers the kill model on the image with
# the leak, the other's incomplete entries and a leaked cluster)
slow_part && KIMG_TEST_PART=all crash_loop "check -r all crashed" short.qcow2
slow_part && LOSE=7 KIMG_TEST_PART=all crash_loop "check -r all, power failure" short.qcow2

# ---- 2. damaged snapshot L1 tables ------------------------------------------
cp base.qcow2 big.qcow2; put_be 4 big.qcow2 $((so + 8)) $((0x400001))
cp base.qcow2 unal.qcow2; put_be 8 unal.qcow2 $so $(($(get_be 8 base.qcow2 $so) + 512))
cp unal.qcow2 unal0.qcow2; put_be 4 unal0.qcow2 $((so + 8)) 0         # and empty
cp base.qcow2 small.qcow2; put_be 8 small.qcow2 $((so + 48)) $((1 << 40))  # disk size 1 TiB, l1_size 1

# (each image under each command a case: with 5 over 4 images, check's
# third has every image and every command)
for f in unal unal0 big small; do
    for a in open "check -r all" "convert -l" "amend -o lazy_refcounts=on @" "resize @ 128M"; do
        sampled || continue
        case $a in
        open)
            oracle "$f: info" info $f.qcow2
            oracle "$f: snapshot -l" snapshot -l $f.qcow2
            check_oracle "$f: check" $f.qcow2 ;;
        "check -r all") repair_oracle "$f: check -r all" $f.qcow2 -r all ;;
        "convert -l")
            rm -f q.raw k.raw
            qimg convert -O raw -l second $f.qcow2 q.raw; kimg convert -O raw -l second $f.qcow2 k.raw
            is "$RC" "$QRC" "$f: convert -l (another snapshot): exit code as qemu-img's"
            ok "$f: convert -l (another snapshot): output as qemu-img's" cmp -s q.raw k.raw ;;
        *)
            cp $f.qcow2 q.qcow2; cp $f.qcow2 k.qcow2
            qimg ${a/@/q.qcow2}; kimg ${a/@/k.qcow2}
            is "$RC" "$QRC" "$f: $a: exit code as qemu-img's"
            c=0; qemu-img check q.qcow2 > q.chk 2>&1 || c=$?
            k=0; qemu-img check k.qcow2 > k.chk 2>&1 || k=$?
            is "$k" "$c" "$f: $a: then qemu-img check exits as after qemu-img's" ;;
        esac
    done
done

# refusal NAME IMAGE WANT ARGS...: kimg ARGS fails as qemu-img does (exit
# code; qemu-img saying WANT, or QWANT), in one line holding WANT, and
# leaves the file as it was
refusal() {
    sampled || return 0
    local name=$1 img=$2 want=$3 before; shift 3
    cp "$img" q.qcow2; cp "$img" w.qcow2
    qimg "$@" q.qcow2; kimg "$@" w.qcow2
    is "$RC" "$QRC" "$name: exit code $QRC as qemu-img's"
    err_line "$name"
    grep -q "${QWANT-$want}" "$T/qerr" || fail "$name: qemu-img says '${QWANT-$want}'" "$(< "$T/qerr")"
    like "$(< "$T/err")" "$want" "$name: kimg says '$want'"
    ok "$name: file unchanged" cmp -s w.qcow2 "$img"
}
# (a case each, sampled: the commands rotate over the images, so any third
# of them, every third case, has each image and each command once)
refusal "big: snapshot -a 1" big.qcow2 "Snapshot L1 table too large" snapshot -a 1
refusal "big: snapshot -d first" big.qcow2 "Could not delete snapshot 'first': Snapshot L1 table too large\$" snapshot -d first
# (qemu-img expands the zero cluster first, at the end of the file, inside
# the huge table's range: it marks the image corrupt; kimg refuses first)
QWANT="Failed to turn zero into data clusters: Input/output error" \
refusal "big: amend -o compat=0.10" big.qcow2 "Snapshot L1 table too large" amend -o compat=0.10
refusal "unal: snapshot -d first" unal.qcow2 "Could not delete snapshot 'first': Snapshot L1 table offset invalid\$" snapshot -d first
refusal "unal: amend -o compat=0.10" unal.qcow2 "Snapshot L1 table offset invalid" amend -o compat=0.10
refusal "unal: snapshot -a 1" unal.qcow2 "Snapshot L1 table offset invalid" snapshot -a 1
refusal "unal0: amend -o compat=0.10" unal0.qcow2 "Snapshot L1 table offset invalid" amend -o compat=0.10
refusal "unal0: snapshot -a 1" unal0.qcow2 "Snapshot L1 table offset invalid" snapshot -a 1
refusal "unal0: snapshot -d first" unal0.qcow2 "Could not delete snapshot 'first': Snapshot L1 table offset invalid\$" snapshot -d first
# convert -l: qemu-img's message exactly (a bare "1" failing by ID with
# -EINVAL is tried as a name: "Can't find snapshot")
# (sampled, rotating as the refusals)
for fs in big:1 big:first big:snapshot.id=1 unal:first unal:snapshot.id=1 unal:1 \
          unal0:snapshot.id=1 unal0:1 unal0:first; do
    sampled || continue
    f=${fs%%:*} s=${fs#*:}
    {
        rm -f q.raw k.raw
        qimg convert -O raw -l $s $f.qcow2 q.raw; kimg convert -O raw -l $s $f.qcow2 k.raw
        is "$RC" "$QRC" "$f: convert -l $s: exit code as qemu-img's"
        sed 's/^qemu-img: /kimg: /' "$T/qerr" > "$T/qerr.k"
        is_file "$T/err" "$T/qerr.k" "$f: convert -l $s: message as qemu-img's"
        [ -e k.raw ] && fail "$f: convert -l $s: no output left"
    }
done
# a snapshot change that would recount the damaged snapshot's clusters is
# refused (qemu-img fails too, marking the image corrupt: it overlaps)
for a in "-c third" "-d second"; do
    cp big.qcow2 q.qcow2; cp big.qcow2 w.qcow2; before=$(sha w.qcow2)
    qimg snapshot $a q.qcow2; kimg snapshot $a w.qcow2
    is "$RC" "$QRC" "big: snapshot $a: exit code $QRC as qemu-img's"
    err_line "big: snapshot $a"
    is "$(sha w.qcow2)" "$before" "big: snapshot $a: file unchanged"
done
# the small L1 table is no problem: -a resizes to the snapshot's size
cp small.qcow2 q.qcow2; cp small.qcow2 k.qcow2
qimg snapshot -a 1 q.qcow2; kimg snapshot -a 1 k.qcow2
is "$RC" "$QRC" "small: snapshot -a 1: exit code as qemu-img's"
ok "small: snapshot -a 1: image reads as qemu-img's" qemu_oracle_compare k.qcow2 q.qcow2
is "$(get_be 8 k.qcow2 24)" "$(get_be 8 q.qcow2 24)" "small: snapshot -a 1: virtual size as qemu-img's"
done_testing
