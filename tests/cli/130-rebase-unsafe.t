#!/bin/bash
# kimg rebase -u: only the header changes (backing name stored as given,
# -F as the backing format extension, -b "" or no -b removes both), the
# new backing file need not exist.  Twins in q/ (qemu-img) and k/ (kimg):
# qemu-img info equal (actual-size aside), qemu-img check clean, content
# equal; unknown header extensions kept byte for byte; many rebases in a
# row (the name is written where the old header does not look, then the
# header; when that does not fit, qemu's packed layout); names that do not
# fit (qemu-img's errors); a -F format qemu-img does not know (refused);
# v2 images; crash at every write.
. "$(dirname "$0")/lib.sh"

# exts FILE: the header extensions (type:len:data hex) and the backing name
exts() {
    $PY - "$1" <<'EOF'
import sys
d = open(sys.argv[1], "rb").read(1 << 16)
be = lambda o, n: int.from_bytes(d[o:o + n], "big")
v = be(4, 4); off = 72 if v == 2 else be(100, 4)
bo, bl = be(8, 8), be(16, 4)
while off + 8 <= len(d):
    t, l = be(off, 4), be(off + 4, 4)
    if t == 0:
        break
    if t != 0x6803f857:     # the feature table: each tool writes its own
        print("%08x:%d:%s" % (t, l, d[off + 8:off + 8 + l].hex()))
    off += 8 + (l + 7) // 8 * 8
print("name:" + (d[bo:bo + bl].decode() if bo else "-"))
EOF
}
# add_ext FILE TYPE HEXDATA: append an unknown extension (name moved after it)
add_ext() {
    $PY - "$@" <<'EOF'
import sys
p, t, data = sys.argv[1], int(sys.argv[2], 16), bytes.fromhex(sys.argv[3])
f = open(p, "r+b"); d = bytearray(f.read(1 << 16))
be = lambda o, n: int.from_bytes(d[o:o + n], "big")
cs = 1 << be(20, 4)
off = 72 if be(4, 4) == 2 else be(100, 4)
bo, bl = be(8, 8), be(16, 4)
name = bytes(d[bo:bo + bl]) if bo else b""
while be(off, 4) != 0:
    off += 8 + (be(off + 4, 4) + 7) // 8 * 8
new = t.to_bytes(4, "big") + len(data).to_bytes(4, "big") + data + bytes(-len(data) % 8)
rest = bytes(8) + name
d[off:cs] = (new + rest).ljust(cs - off, b"\0")
if bo:
    d[8:16] = (off + len(new) + 8).to_bytes(8, "big")
f.seek(0); f.write(d[:cs]); f.close()
EOF
}
info_norm() { (cd "$1" && qemu-img info --output=json "$2") > "$T/i.json"; json_norm "$T/i.json" actual-size; }

mkdir -p q/sub k/sub
for d in q k; do
    qemu-img create -q -f qcow2 $d/a.qcow2 4M
    qemu-io -c "write -P 0x11 0 1M" $d/a.qcow2 > /dev/null
    qemu-img create -q -f qcow2 $d/b.qcow2 4M
    qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 $d/o.qcow2
    qemu-io -c "write -P 0x22 64k 64k" $d/o.qcow2 > /dev/null
done
cp k/o.qcow2 o.orig

# one case: ARGS (o.qcow2 is the image, relative to q/ or k/)
rebase_case() {
    local args=$1 img=${2:-o.qcow2}
    local name="rebase $args"
    for d in q k; do cp o.orig $d/$img; done
    (cd q && eval "qemu-img rebase $args $img") > /dev/null 2>&1 || { fail "$name: qemu-img itself refused"; return; }
    (cd k && eval "\"$KIMG\" rebase $args $img") > out 2> err; RC=$?
    is "$RC" 0 "$name: exit 0" || diag "$(< err)"
    is "$(info_norm k $img)" "$(info_norm q $img)" "$name: qemu-img info as for qemu-img's"
    (cd k && check_clean_alone "$img") && pass "$name: check clean" || fail "$name: check clean"
    is "$(exts k/$img)" "$(exts q/$img)" "$name: header extensions and name as qemu-img's"
}
rebase_case "-u -b b.qcow2 -F qcow2"
rebase_case "-u -b nosuch.qcow2 -F qcow2"
rebase_case "-u -b b.qcow2 -F raw"
rebase_case "-u -b ''"
rebase_case "-u -b '' -F qcow2"
rebase_case "-u"
rebase_case "-u -b ../a.qcow2 -F qcow2" sub/o.qcow2
rebase_case "-u -b \"$T/b.qcow2\" -F qcow2"
rebase_case "-u -b file:b.qcow2 -F qcow2"
long=$(printf 'd%.0s' $(seq 1 300))/x.qcow2
rebase_case "-u -b $long -F qcow2"
rebase_case "-u -q -b a.qcow2 -F qcow2"
ok "the overlay still reads as before (backing a.qcow2 kept)" qemu_oracle_compare k/o.qcow2 q/o.qcow2

# -p: qemu-img's progress lines, byte for byte.
for d in q k; do cp o.orig $d/p.qcow2; done
(cd q && qemu-img rebase -p -u -b b.qcow2 -F qcow2 p.qcow2) > qout 2>&1
(cd k && "$KIMG" rebase -p -u -b b.qcow2 -F qcow2 p.qcow2) > out 2> err
is_file out qout "-u -p: stdout as qemu-img's"

# Unknown extensions survive byte for byte; v2; a 512-byte cluster header.
for kind in unknown v2 small; do
    for d in q k; do
        case $kind in
        unknown) cp o.orig $d/x.qcow2; add_ext $d/x.qcow2 12345678 68656c6c6f2c20776f726c64 ;;
        v2) qemu-img create -q -f qcow2 -o compat=0.10 -b a.qcow2 -F qcow2 $d/x.qcow2 ;;
        small) qemu-img create -q -f qcow2 -o cluster_size=512 -b a.qcow2 -F qcow2 $d/x.qcow2 ;;
        esac
    done
    ok "$kind: qemu-img check of the prepared image" check_clean k/x.qcow2
    (cd q && qemu-img rebase -u -b b.qcow2 -F raw x.qcow2)
    (cd k && "$KIMG" rebase -u -b b.qcow2 -F raw x.qcow2); RC=$?
    is "$RC" 0 "$kind: rebase -u exit 0"
    is "$(exts k/x.qcow2)" "$(exts q/x.qcow2)" "$kind: extensions (unknown ones byte for byte) as qemu-img's"
    is "$(info_norm k x.qcow2)" "$(info_norm q x.qcow2)" "$kind: qemu-img info as for qemu-img's"
    ok "$kind: check clean" check_clean_alone k/x.qcow2
done

# Many rebases in a row, names of growing and shrinking length: the name
# wanders through the free part of the header cluster, then packs.
qemu-img create -q -f qcow2 -o cluster_size=4k -b a.qcow2 -F qcow2 k/m.qcow2
qemu-io -c "write -P 0x22 64k 64k" k/m.qcow2 > /dev/null
bad=0
for i in $(seq 1 40); do
    n=$(printf 'n%.0s' $(seq 1 $(( (i * 397) % 1000 + 1 ))))
    f=$([ $((i % 3)) = 0 ] && echo raw || echo qcow2)
    "$KIMG" rebase -u -b "$n" -F $f k/m.qcow2 || bad=1
    got=$(qemu-img info -U --output=json k/m.qcow2 2>/dev/null | grep -E '"backing-filename"|"backing-filename-format"' | tr -d ' \n')
    [ "$got" = "\"backing-filename-format\":\"$f\",\"backing-filename\":\"$n\"," ] || { bad=1; diag "round $i: $got"; break; }
    check_clean_alone k/m.qcow2 || { bad=1; diag "round $i: check"; break; }
done
is "$bad" 0 "40 rebases in a row: each one read back by qemu-img, check clean"
"$KIMG" rebase -u -b a.qcow2 -F qcow2 k/m.qcow2
cp o.orig k/ref.qcow2
ok "and back to the real backing file: content as before" qemu_oracle_compare k/m.qcow2 k/ref.qcow2

# Errors as qemu-img's (exit 1, one line).
cd k
cp ../o.orig e.qcow2
kimg rebase -u -b "$(printf 'x%.0s' $(seq 1 1024))" -F qcow2 e.qcow2
is "$RC" 1 "1024-byte name: exit 1"; err_line "1024-byte name"
qemu-img create -q -f qcow2 -o cluster_size=512 s.qcow2 1M
kimg rebase -u -b "$(printf 'x%.0s' $(seq 1 600))" -F qcow2 s.qcow2
is "$RC" 1 "name longer than the header cluster: exit 1"; err_line "name does not fit"
like "$(< "$T/err")" "No space left in the file header" "name does not fit: qemu-img's reason"
ok "name does not fit: image untouched and clean" check_clean s.qcow2
kimg rebase -u -b b.qcow2 e.qcow2
is "$RC" 1 "-b without -F: exit 1 (qemu-img 7.2)"; err_line "-b without -F"
like "$(< "$T/err")" "backing format must be specified" "-b without -F: qemu-img's reason"
kimg rebase e.qcow2
is "$RC" 1 "no -b and no -u: exit 1"; err_line "no -b and no -u"
# -F names a format qemu-img does not know: refused (else qemu could not
# open the image), with or without -b, in unsafe and safe mode
for a in "-u -b b.qcow2 -F nope" "-u -F nope" "-b b.qcow2 -F nope"; do
    kimg rebase $a e.qcow2
    is "$RC" 1 "rebase $a: exit 1 (qemu-img 7.2)"; err_line "rebase $a"
    is "$(< "$T/err")" "kimg: Invalid format name: 'nope'" "rebase $a: qemu-img's message"
done
kimg rebase -u -b b.qcow2 -F vmdk e.qcow2
is "$RC" 0 "-u -F vmdk (a format qemu knows): stored, as qemu-img does"
like "$(qemu-img info e.qcow2)" "backing file format: vmdk" "-u -F vmdk: the header names vmdk"
cp ../o.orig e.qcow2
kimg rebase -u -b b.qcow2 -F qcow2
is "$RC" 1 "no image: exit 1"; err_line "no image"
kimg rebase -u -b b.qcow2 -F qcow2 e.qcow2 e.qcow2
is "$RC" 1 "two images: exit 1"; err_line "two images"
kimg rebase -u -b b.qcow2 -F qcow2 nosuch.qcow2
is "$RC" 1 "missing image: exit 1"; err_line "missing image"
qemu-img create -q -f raw r.raw 1M
kimg rebase -u -b b.qcow2 -F qcow2 -f raw r.raw
is "$RC" 1 "raw image: exit 1"; err_line "raw image"
kimg rebase -u -t bogus -b b.qcow2 -F qcow2 e.qcow2
is "$RC" 1 "bad -t: exit 1"; err_line "bad -t"
kimg rebase -r -b b.qcow2 -F qcow2 e.qcow2
is "$RC" 1 "unknown option: exit 1"; err_line "unknown option"
is "$(exts e.qcow2)" "$(exts ../o.orig)" "after the errors the header is unchanged"
# A running QEMU (qemu-io) holds the image: refused.
cp ../o.orig l.qcow2
hold_lock l.qcow2
kimg rebase -u -b b.qcow2 -F qcow2 l.qcow2
is "$RC" 1 "image in use: exit 1"; err_line "image in use"
like "$(< "$T/err")" 'lock' "image in use: names the lock"
cd ..

# Crash at every file change: the header reads as the old or the new one.
n=0; bad=0
while :; do
    cp o.orig c.qcow2
    KIMG_CRASH_AFTER=$n "$KIMG" rebase -u -b "$long" -F raw c.qcow2 > /dev/null 2>&1; rc=$?
    r=0; check_clean_alone c.qcow2 || r=$?
    st=$(exts c.qcow2)
    if [ "$r" != 0 ] || { [ "$st" != "$(exts o.orig)" ] && [ "$st" != "$(printf 'e2792aca:3:726177\nname:%s' "$long")" ]; }; then
        bad=1; diag "crash after $n writes: check $r, header: $st"; break
    fi
    [ $rc = 222 ] || break
    n=$(crash_next $n)
done
is "$rc" 0 "crash test: finished after $n crash points"
diag "crash points: $n"
is "$bad" 0 "crash test: after each crash the header is the old or the new one, check clean"
ok "crash test: at least one crash point" test $n -ge 2
done_testing
