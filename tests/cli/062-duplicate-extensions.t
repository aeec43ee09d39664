#!/bin/bash
# Duplicate qcow2 header extensions: qemu-img reads each copy as it comes
# (so each must be valid) and the last one wins (backing format, data file
# name, feature name table, bitmaps); unknown ones are all kept.  kimg does
# the same in every command (one parser, formats/qcow2/header.c): info,
# check, map, compare, convert, measure, checksum, and the writers rebase
# -u, amend, snapshot, commit, resize on twins against qemu-img.  A header
# rewrite keeps one copy (the one in effect), as qemu's.  A second CRYPTO
# extension stays refused (a deliberate difference: qemu opens a LUKS
# header at each).  Also: a bitmaps extension is checked only with the
# autoclear bit set, and a backing name right after the header leaves no
# room for extensions (both as qemu).
# make check: a third of each loop over commands (lib.sh sampled; every
# writer among them, commit always); check-slow the rest.
. "$(dirname "$0")/lib.sh"

# mkext IMG EXT...: rewrite IMG's header extensions (EXT: TYPEHEX=text or
# TYPEHEX:hexbytes; "keep:TYPEHEX" copies IMG's own extension of that
# type), then the end marker and the backing file name.
mkext() {
    $PY - "$@" <<'PYEOF'
import struct, sys
f = sys.argv[1]
b = bytearray(open(f, 'rb').read())
hl = struct.unpack('>I', b[100:104])[0] if struct.unpack('>I', b[4:8])[0] == 3 else 72
cs = 1 << struct.unpack('>I', b[20:24])[0]
bo, bl = struct.unpack('>QI', b[8:20])
bname = bytes(b[bo:bo + bl]) if bo else b''
own = {}
off = hl
while off + 8 <= cs:
    t, l = struct.unpack('>II', b[off:off + 8])
    if t == 0:
        break
    own[t] = bytes(b[off + 8:off + 8 + l])
    off += 8 + ((l + 7) & ~7)
out = bytearray()
for a in sys.argv[2:]:
    if a.startswith('keep:'):
        t = int(a[5:], 16); d = own[t]
    elif '=' in a:
        t, v = a.split('=', 1); t = int(t, 16); d = v.encode()
    else:
        t, v = a.split(':', 1); t = int(t, 16); d = bytes.fromhex(v)
    out += struct.pack('>II', t, len(d)) + d + b'\0' * ((-len(d)) % 8)
out += b'\0' * 8
b[hl:cs] = b'\0' * (cs - hl)
b[hl:hl + len(out)] = out
if bname:
    o = hl + len(out)
    b[o:o + len(bname)] = bname
    b[8:20] = struct.pack('>QI', o, len(bname))
open(f, 'wb').write(b)
PYEOF
}
# count_ext IMG TYPEHEX: how many extensions of that type IMG's header has
count_ext() {
    $PY - "$@" <<'PYEOF'
import struct, sys
b = open(sys.argv[1], 'rb').read(65536)
hl = struct.unpack('>I', b[100:104])[0]
off, n = hl, 0
while off + 8 <= len(b):
    t, l = struct.unpack('>II', b[off:off + 8])
    if t == 0:
        break
    n += t == int(sys.argv[2], 16)
    off += 8 + ((l + 7) & ~7)
print(n)
PYEOF
}
FMT=e2792aca FEAT=6803f857 BM=23852875 CRYPTO=0537be77 DF=44415441
# feat_table NAME: a one-entry feature name table naming incompatible bit 5
feat_table() { $PY -c 'import sys; n = sys.argv[1].encode(); print((bytes([0, 5]) + n + bytes(46 - len(n))).hex())' "$1"; }
# msg FILE: an error message without the tool's prefix and file name
msg() { sed -e "s/^qemu-img: Could not open '[^']*': //" -e "s/^qemu-img: //" -e "s/^kimg: [^:]*: //" -e "s/^kimg: //" "$1"; }
# same_error NAME ARGS...: both tools fail alike (exit code, message)
same_error() {
    local name=$1; shift
    oracle "$name" "$@"
    is "$(msg "$T/err")" "$(msg "$T/qerr" | head -1)" "$name: the message as qemu-img's"
}
# info_same NAME IMG: info JSON and human as qemu-img's
info_same() {
    oracle "$1: info --output=json" info --output=json "$2"
    oracle "$1: info" info "$2"
}

qemu-img create -q -f raw base.raw 4M
qemu-io -f raw -c "write -P 0x11 0 1M" -c "write -P 0x22 3M 512k" base.raw > /dev/null

# ---- backing format: the last copy wins -------------------------------------
qemu-img create -q -f qcow2 -b base.raw -F raw ov.qcow2 4M
qemu-io -c "write -P 0x33 512k 1M" ov.qcow2 > /dev/null
cp ov.qcow2 fmt.qcow2; mkext fmt.qcow2 $FMT=qcow2 $FMT=raw keep:$FEAT
cp ov.qcow2 fmt-bad.qcow2; mkext fmt-bad.qcow2 $FMT=raw keep:$FEAT $FMT=qcow2
qemu-img convert -O raw ov.qcow2 ov.raw

info_same "fmt" fmt.qcow2
oracle "fmt: info --backing-chain" info --backing-chain --output=json fmt.qcow2
oracle "fmt: check" check fmt.qcow2
oracle "fmt: check --output=json" check --output=json fmt.qcow2
oracle "fmt: map" map --output=json fmt.qcow2
oracle "fmt: compare" compare fmt.qcow2 ov.raw
oracle "fmt: measure" measure --output=json -O qcow2 fmt.qcow2
kimg convert -O raw fmt.qcow2 k.raw
is "$RC" 0 "fmt: convert succeeds"
ok "fmt: convert's output as qemu's flattening" qemu_oracle_compare k.raw ov.raw
kimg checksum fmt.qcow2; a=$(cut -d' ' -f1 "$T/out")
kimg checksum ov.raw; is "$(cut -d' ' -f1 "$T/out")" "$a" "fmt: checksum as the flattening's"
info_same "fmt-bad" fmt-bad.qcow2
# the same failure as with one extension naming qcow2 (kimg's wording of
# a backing file's open failure, and check not opening the backing file,
# are other matters: compared with kimg on the one-copy image)
cp ov.qcow2 fmt-one.qcow2; mkext fmt-one.qcow2 keep:$FEAT $FMT=qcow2
for cmd in "check" "map --output=json" "compare F ov.raw" "convert -O raw F x.raw" "measure -O qcow2"; do
    sampled || continue
    set -- ${cmd//F/fmt-one.qcow2}; [ "$1" = compare ] || [ "$1" = convert ] || set -- "$@" fmt-one.qcow2
    kimg "$@"; orc=$RC; msg "$T/err" > one.err
    set -- ${cmd//F/fmt-bad.qcow2}; [ "$1" = compare ] || [ "$1" = convert ] || set -- "$@" fmt-bad.qcow2
    [ "$1" = check ] || oracle "fmt-bad: $1 opens base.raw as qcow2" "$@"
    kimg "$@"
    is "$RC $(msg "$T/err")" "$orc $(< one.err)" "fmt-bad: $1 as with one extension naming qcow2"
done
kimg checksum fmt-bad.qcow2; err_line "fmt-bad: checksum fails"

# writers, on twins q/ (qemu-img) and k/ (kimg), each with its own base;
# both: qemu-img ARGS in q/, kimg ARGS in k/
both() { cd q; qimg "$@"; cd ../k; kimg "$@"; cd ..; }
twin() { rm -rf q k; mkdir q k; cp "$1" base.raw q/; cp "$1" base.raw k/; }
# twin_same NAME IMG [DROP...]: k/IMG reads and describes as q/IMG and
# keeps one backing format extension
twin_same() {
    local name=$1 img=$2; shift 2
    (cd q && qemu-img info --output=json "$img") > qi.json
    (cd k && qemu-img info --output=json "$img") > ki.json
    is "$(json_norm ki.json actual-size "$@")" "$(json_norm qi.json actual-size "$@")" "$name: qemu-img info as on qemu-img's twin"
    ok "$name: content as on qemu-img's twin" qemu_oracle_compare k/"$img" q/"$img"
    ok "$name: clean" check_clean k/"$img"
    is "$(count_ext k/"$img" $FMT)" "$(count_ext q/"$img" $FMT)" "$name: as many backing format extensions as qemu-img leaves"
}
# (make check's third of this loop and the bitmaps one has snapshot and
# resize; commit, tested only here, runs in both parts)
for w in "rebase -u -b base.raw -F raw" "snapshot -c s1" "amend -o lazy_refcounts=on" "resize fmt.qcow2 +1M" "commit"; do
    [ "$w" = commit ] || sampled || continue
    twin fmt.qcow2
    set -- $w; [ "$1" = resize ] && set -- resize || set -- $w fmt.qcow2
    [ "$1" = resize ] && set -- resize fmt.qcow2 +1M
    both "$@"
    is "$RC" "$QRC" "fmt: $w: exit code as qemu-img's"
    [ "$1" = commit ] && { ok "fmt: commit: base as qemu-img's" qemu_oracle_compare k/base.raw q/base.raw; continue; }
    twin_same "fmt: $w" fmt.qcow2 snapshots date-sec date-nsec
done

# ---- data file name: the last copy wins -------------------------------------
qemu-img create -q -f raw dA.raw 4M
qemu-img create -q -f qcow2 -o data_file=dB.raw df.qcow2 4M
qemu-io -c "write -P 0x44 1M 1M" df.qcow2 > /dev/null
mkext df.qcow2 $DF=dA.raw $DF=dB.raw keep:$FEAT
qemu-io -f raw -c "write -P 0x55 0 4M" dA.raw > /dev/null
info_same "data-file" df.qcow2
oracle "data-file: map" map --output=json df.qcow2
oracle "data-file: check" check df.qcow2
oracle "data-file: compare" compare df.qcow2 dA.raw
kimg convert -O raw df.qcow2 k.raw; qemu-img convert -O raw df.qcow2 q.raw
ok "data-file: convert as qemu-img's" qemu_oracle_compare k.raw q.raw
twin dA.raw; cp df.qcow2 dB.raw q/; cp df.qcow2 dB.raw k/
both amend -o lazy_refcounts=on df.qcow2
is "$RC" "$QRC" "data-file: amend: exit code as qemu-img's"
(cd q && qemu-img info --output=json df.qcow2) > qi.json; (cd k && qemu-img info --output=json df.qcow2) > ki.json
is "$(json_norm ki.json actual-size)" "$(json_norm qi.json actual-size)" "data-file: amend: info as on qemu-img's twin"
is "$(count_ext k/df.qcow2 $DF)" 1 "data-file: amend keeps one data file extension"

# ---- feature name table: the last copy names the feature ---------------------
cp ov.qcow2 feat.qcow2; mkext feat.qcow2 $FMT=raw $FEAT:$(feat_table first) $FEAT:$(feat_table second)
put_be 8 feat.qcow2 72 32
for c in "info" "check" "map" "compare feat.qcow2 ov.raw"; do
    sampled || continue
    set -- $c; [ "$1" = compare ] || set -- "$@" feat.qcow2
    same_error "feature table: $1" "$@"
done

# ---- bitmaps: each copy checked, the last one wins ---------------------------
qemu-img create -q -f qcow2 bm.qcow2 4M
qemu-img bitmap --add bm.qcow2 b1
qemu-io -c "write -P 0x66 0 64k" bm.qcow2 > /dev/null
real=$($PY -c '
import struct, sys
b = open("bm.qcow2", "rb").read(65536); off = struct.unpack(">I", b[100:104])[0]
while True:
    t, l = struct.unpack(">II", b[off:off + 8])
    if t == 0x23852875: print(b[off + 8:off + 32].hex()); break
    off += 8 + ((l + 7) & ~7)')
bogus=${real:0:32}0000000000030000       # the directory moved to cluster 3
zero=00000000${real:8}                    # zero bitmaps: invalid
cp bm.qcow2 bm-dup.qcow2; mkext bm-dup.qcow2 keep:$FEAT $BM:$bogus $BM:$real
info_same "bitmaps" bm-dup.qcow2
oracle "bitmaps: check" check bm-dup.qcow2
oracle "bitmaps: map" map --output=json bm-dup.qcow2
for w in "amend -o lazy_refcounts=on bm-dup.qcow2" "snapshot -c s1 bm-dup.qcow2" "resize bm-dup.qcow2 +60M"; do
    sampled || continue
    rm -rf q k; mkdir q k; cp bm-dup.qcow2 q/; cp bm-dup.qcow2 k/
    both $w
    is "$RC" "$QRC" "bitmaps: $w: exit code as qemu-img's"
    (cd q && qemu-img info --output=json bm-dup.qcow2) > qi.json; (cd k && qemu-img info --output=json bm-dup.qcow2) > ki.json
    is "$(json_norm ki.json actual-size snapshots)" "$(json_norm qi.json actual-size snapshots)" "bitmaps: $w: info as on qemu-img's twin"
    ok "bitmaps: $w: clean" check_clean k/bm-dup.qcow2
done
cp bm.qcow2 bm-bad.qcow2; mkext bm-bad.qcow2 keep:$FEAT $BM:$real $BM:$bogus
oracle "bitmaps, the last copy bad" info bm-bad.qcow2    # (qemu-img's wording differs)
err_line "bitmaps, the last copy bad"
cp bm.qcow2 bm-zero.qcow2; mkext bm-zero.qcow2 keep:$FEAT $BM:$zero $BM:$real
same_error "bitmaps, the first copy invalid" info bm-zero.qcow2
same_error "bitmaps, the first copy invalid: check" check bm-zero.qcow2
# without the autoclear bit the contents are not looked at
cp bm.qcow2 bm-noac.qcow2; mkext bm-noac.qcow2 keep:$FEAT $BM:$zero; put_be 8 bm-noac.qcow2 88 0
info_same "bitmaps extension without the autoclear bit" bm-noac.qcow2
oracle "bitmaps extension without the autoclear bit: map" map --output=json bm-noac.qcow2

# ---- unknown extensions: every copy kept ---------------------------------
cp ov.qcow2 unk.qcow2; mkext unk.qcow2 $FMT=raw 12345678=one 12345678=two keep:$FEAT
info_same "unknown extension twice" unk.qcow2
cp unk.qcow2 k.qcow2
kimg rebase -u -b base.raw -F raw k.qcow2
is "$(count_ext k.qcow2 12345678)" 2 "unknown extension twice: rebase -u keeps both"

# ---- a backing name right after the header: no extensions there -----------
cp ov.qcow2 noext.qcow2
$PY - <<'PYEOF'
import struct
b = bytearray(open('noext.qcow2', 'rb').read())
b[112:65536] = bytes(65536 - 112)
b[112:120] = b'base.raw'
b[8:20] = struct.pack('>QI', 112, 8)
open('noext.qcow2', 'wb').write(b)
PYEOF
info_same "backing name at the end of the header" noext.qcow2
oracle "backing name at the end of the header: map" map --output=json noext.qcow2

# ---- CRYPTO twice: refused (deliberate difference) ---------------------------
qemu-img create -q -f qcow2 --object secret,id=s0,data=abc -o encrypt.format=luks,encrypt.key-secret=s0 lk.qcow2 1M
cp lk.qcow2 lk2.qcow2; mkext lk2.qcow2 keep:$CRYPTO keep:$CRYPTO keep:$FEAT
kimg info lk2.qcow2; err_line "CRYPTO twice: refused"
like "$(< "$T/err")" "Duplicate CRYPTO" "CRYPTO twice: says why"
kimg info lk.qcow2; is "$RC" 0 "one CRYPTO extension: info works"
done_testing
