#!/bin/bash
# kimg bitmap (vdsm's and ovirt-imageio's incremental backups): every
# operation and combination, on twins (kimg, qemu-img) of an image qemu
# made with an in-use bitmap, a disabled one with content, and enabled ones
# of granularity 512, 64k (default), 1M and 2G: the same exit code, the
# same bitmap list (names, granularities, flags), the same dirty regions
# qemu exports (qemu-nbd -B, nbdinfo --map), qemu-img check clean, the
# content untouched.  Merges across granularities and from another file.
# Then qemu-io writes on kimg's results (qemu takes the tables over).
# Refusals with qemu-img's exit code and one line; a v2 image and a raw
# file refuse --add.  The one deliberate difference: removing an in-use
# bitmap leaks its clusters (its table is not trusted: freeing could free
# guest data), so check reports leaks that check -r leaks gives back.
# make check: a fourth of the twin cases beyond one per operation (lib.sh
# sampled 4) and a third of the command-line refusals; check-slow the rest.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/bitmap-nbd.sh"
require qemu-nbd nbdinfo
BMPY="$PY $KIMG_SRC/tests/cli/qcow2_bitmaps.py"

dirty() {
    nbdinfo --map="qemu:dirty-bitmap:$2" -- [ qemu-nbd -r -f qcow2 -B "$2" "$1" ] 2>&1 |
        awk '$3 == 1 { print $1, $2; next } $3 != 0 { print "?", $0 }'
}
bitmaps() {
    qemu-img info --output=json "$1" | $PY -c 'import json,sys; d=json.load(sys.stdin)
bm=d.get("format-specific",{}).get("data",{}).get("bitmaps",[])
print(" ".join("%s:%s:%s" % (b["name"].replace(" ","_"), b["granularity"], ",".join(b["flags"])) for b in bm))'
}
# bmpair K Q: both images' bitmap lists as qemu-img info gives them
# (bitmaps' format) into $T/bl.k and $T/bl.q, and their bits decoded by
# tests/cli/qcow2_bitmaps.py (`all`) into $T/ba.k and $T/ba.q: one python
# start for the four, where bitmaps and $BMPY took one each
bmpair() {
    qemu-img info --output=json "$1" > "$T/i.k"
    qemu-img info --output=json "$2" > "$T/i.q"
    $PY -S -c '
import contextlib, io, json, sys
sys.path.insert(0, sys.argv[1])
import qcow2_bitmaps
def lst(p):
    try:
        d = json.load(open(p))
    except ValueError as e:
        return "INVALID JSON: %s" % e
    bm = d.get("format-specific", {}).get("data", {}).get("bitmaps", [])
    return " ".join("%s:%s:%s" % (b["name"].replace(" ", "_"), b["granularity"], ",".join(b["flags"])) for b in bm)
def bits(p):
    o = io.StringIO()
    try:
        with contextlib.redirect_stdout(o):
            qcow2_bitmaps.main(["all", p])
    except Exception as e:
        o.write("ERROR: %r" % e)
    return o.getvalue().rstrip("\n")
for t, img in (("k", sys.argv[2]), ("q", sys.argv[3])):
    open(sys.argv[4] + "/bl." + t, "w").write(lst(sys.argv[4] + "/i." + t))
    open(sys.argv[4] + "/ba." + t, "w").write(bits(img))
' "$KIMG_SRC/tests/cli" "$1" "$2" "$T"
}
CONSISTENT=("off" "b0" "g 512" "g1M" "g2G")

mk() {
    local img=$1
    rm -f "$img"
    qemu-img create -q -f qcow2 "$img" 4M &&
    qemu-img bitmap --add "$img" used &&
    { ( qemu-io -f qcow2 -c "write -P 0x11 0 64k" -c abort "$img" || true ) > /dev/null 2>&1; } &&
    qemu-img bitmap --add "$img" off &&
    qemu-io -f qcow2 -c "write -P 0x12 128k 4k" "$img" > /dev/null &&
    qemu-img bitmap --disable "$img" off &&
    qemu-img bitmap --add "$img" b0 &&
    qemu-img bitmap --add -g 512 "$img" "g 512" &&
    qemu-img bitmap --add -g 1M "$img" g1M &&
    qemu-img bitmap --add -g 2G "$img" g2G &&
    qemu-io -f qcow2 -c "write -P 0x13 2M 64k" -c "write -P 0x14 1000 100" \
        -c "write -P 0x15 3000k 1k" "$img" > /dev/null
}
mk base.qcow2 || { echo "Bail out! qemu-img could not make the base image"; exit 1; }
ok "the base: qemu-img check clean" check_clean base.qcow2
# a merge source in another file: other regions
qemu-img create -q -f qcow2 src.qcow2 4M
qemu-img bitmap --add src.qcow2 sb
qemu-io -f qcow2 -c "write -P 0x21 512k 8k" -c "write -P 0x22 3500k 100" src.qcow2 > /dev/null

# twins NAME [--leaks] ARGS...: kimg bitmap ARGS k.qcow2 ... against
# qemu-img bitmap ARGS q.qcow2 ...  (ARGS end with the bitmap name; the
# image goes before it).  twins is one of the sampled cases (32 of them,
# every operation and refusal kind: check takes a fourth, an add -g, a
# combined add, two merges, three refusals, a bad granularity); twins_each
# an operation's first case, run in each part.
twins() {
    sampled 4 || return 0       # check: a fourth of the cases; check-slow: the rest
    twins_each "$@"
}
twins_each() {
    local name=$1 leaks=0; shift
    [ "$1" = --leaks ] && { leaks=1; shift; }
    local n=$#
    local opts=("${@:1:n-1}") bm=${!n}
    cp base.qcow2 k.qcow2; cp base.qcow2 q.qcow2
    kimg bitmap "${opts[@]}" k.qcow2 "$bm"
    qimg bitmap "${opts[@]}" q.qcow2 "$bm"
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || diag "kimg: $(head -2 "$T/err") qemu: $(head -2 "$T/qerr")"
    [ "$RC" -ne 0 ] && err_line "$name"
    bmpair k.qcow2 q.qcow2
    is "$(< "$T/bl.k")" "$(< "$T/bl.q")" "$name: bitmap list as qemu-img's"
    if [ $leaks = 1 ]; then
        qemu-img check k.qcow2 > ck 2>&1; local crc=$?
        is "$crc" 3 "$name: check: leaked clusters only (exit 3)"
        qemu-img check -q -r leaks k.qcow2 > /dev/null 2>&1
    fi
    # (kimg's image byte for byte the base, as a refusal leaves it: the
    # base's own check and compare at the start stand for these)
    if cmp -s k.qcow2 base.qcow2; then
        pass "$name: qemu-img check clean (the base, unchanged)"
        pass "$name: content untouched (the base, unchanged)"
    else
        ok "$name: qemu-img check clean" check_clean k.qcow2
        ok "$name: content untouched" qemu_oracle_compare k.qcow2 base.qcow2
    fi
    # the bits, decoded independently (tests/cli/qcow2_bitmaps.py); qemu's
    # own reading of kimg's tables (qemu-nbd) where SPOT names a bitmap
    # (bmpair's decoding, of the image as the command left it)
    is "$(< "$T/ba.k")" "$(< "$T/ba.q")" "$name: every bitmap's dirty regions as qemu-img's"
    if [ -n "${SPOT:-}" ]; then
        is "$(dirty k.qcow2 "$SPOT")" "$(dirty q.qcow2 "$SPOT")" "$name: '$SPOT' as qemu exports it"
    fi
}

twins_each "add" --add new
SPOT="new" twins "add -g 512" --add -g 512 new
twins "add -g 2G" --add -g 2G new
twins "add -g 4k --disable" --add -g 4k --disable new
twins "add --enable (vdsm)" --add --enable new
twins "disable then add (one disabled add)" --disable --add new
SPOT="g 512" twins "remove" --remove b0
twins_each "remove an in-use bitmap" --leaks --remove used
SPOT="b0" twins_each "clear" --clear b0
twins "clear a disabled bitmap" --clear off
twins_each "enable" --enable off
twins "disable" --disable b0
twins "merge same granularity" --merge b0 off
SPOT="g1M" twins_each "merge fine into coarse" --merge "g 512" g1M
SPOT="g 512" twins "merge coarse into fine" --merge g1M "g 512"
twins "merge 2G into 64k" --merge g2G b0
twins "merge into itself" --merge b0 b0
SPOT="b0" twins_each "merge from another file" --merge sb -b src.qcow2 b0
twins "merge from another file, -F" --merge sb -b src.qcow2 -F qcow2 "g 512"
twins "add, clear, merge in order" --add --clear --merge b0 new
twins "add then merge twice" --add -g 1k --merge b0 --merge off new
twins "enable then disable" --enable --disable off
# refusals (an operation that fails stops the rest; earlier ones stay)
twins "add an existing name" --add b0
twins "remove then add (remove fails first)" --remove --add nope
twins "add then add again (second fails, first stays)" --add --add new
twins "remove a missing bitmap" --remove nope
twins "clear an in-use bitmap" --clear used
twins "enable an in-use bitmap" --enable used
twins "merge from an in-use bitmap" --merge used b0
twins "merge into an in-use bitmap" --merge b0 used
twins "merge a missing source" --merge nope b0
twins "merge from another file, missing name" --merge b0 -b src.qcow2 b0
twins "granularity 100" --add -g 100 new
twins "granularity 256" --add -g 256 new
twins "granularity 4G" --add -g 4G new
twins "empty name" --add ""
printf -v n1024 '%1024s' ''; n1024=${n1024// /n}
twins "a 1024-byte name" --add "$n1024"
twins "a 1023-byte name" --add "${n1024:1}"

# remove every bitmap: the extension and its autoclear bit go, as qemu's
cp base.qcow2 k.qcow2; cp base.qcow2 q.qcow2
for b in used off b0 "g 512" g1M g2G; do
    kimg bitmap --remove k.qcow2 "$b"
    qemu-img bitmap --remove q.qcow2 "$b"
done
qemu-img check -q -r leaks k.qcow2 > /dev/null 2>&1
is "$($PY "$KIMG_SRC/tests/cli/qcow2_bitmaps.py" ext k.qcow2 2>&1 | head -1)" \
   "$($PY "$KIMG_SRC/tests/cli/qcow2_bitmaps.py" ext q.qcow2 2>&1 | head -1)" "all removed: no bitmaps extension"
is "$(od -An -tx1 -j88 -N8 k.qcow2)" "$(od -An -tx1 -j88 -N8 q.qcow2)" "all removed: autoclear bits as qemu-img's"
ok "all removed: check clean" check_clean k.qcow2
# and add one again into the image that has none
kimg bitmap --add k.qcow2 again
qemu-img bitmap --add q.qcow2 again
is "$(bitmaps k.qcow2)" "$(bitmaps q.qcow2)" "added again: list as qemu-img's"

# qemu takes kimg's tables over: writes, stores, frees kimg's clusters
cp base.qcow2 k.qcow2; cp base.qcow2 q.qcow2
for t in k q; do
    if [ $t = k ]; then run "$KIMG" bitmap --add -g 4k --merge b0 k.qcow2 new
    else qemu-img bitmap --add -g 4k --merge b0 q.qcow2 new; fi
    qemu-io -f qcow2 -c "write -P 0x41 3968k 4k" -c "write -P 0x42 70k 1" $t.qcow2 > /dev/null
done
ok "qemu-io after kimg: check clean" check_clean k.qcow2
dirty_each k.qcow2 dk "${CONSISTENT[@]}" new; dirty_each q.qcow2 dq "${CONSISTENT[@]}" new
for b in "${CONSISTENT[@]}" new; do
    is "$(< "dk.${b// /_}")" "$(< "dq.${b// /_}")" "qemu-io after kimg: '$b' as qemu-img's"
done
# and kimg's own writes go on being recorded in kimg's tables
head -c 4M /dev/urandom > rnd.raw
kimg convert -n -f raw -O qcow2 rnd.raw k.qcow2
for b in new b0; do
    like "$(dirty k.qcow2 "$b")" "^0 4194304$" "kimg writes after kimg bitmap: '$b' records them"
done

# check -r all drops an inconsistent bitmap (qemu keeps it forever: every
# use fails); plain check and -r leaks report and change nothing of it
cp base.qcow2 k.qcow2
kimg check k.qcow2
qimg check k.qcow2
is "$RC:$(< "$T/out")" "$QRC:$(< "$T/qout")" "check: an in-use bitmap is no error (as qemu-img)"
kimg check -r leaks k.qcow2
like "$(bitmaps k.qcow2)" "^used:65536:in-use,auto" "check -r leaks: the in-use bitmap stays"
kimg check -r all k.qcow2
is "$RC" 0 "check -r all: exit 0"
like "$(cat "$T/out" "$T/err")" "Repairing bitmap 'used': inconsistent \(in use\), removed" "check -r all: says which bitmap went"
is "$(bitmaps k.qcow2)" "off:65536: b0:65536:auto g_512:512:auto g1M:1048576:auto g2G:2147483648:auto" \
   "check -r all: only the in-use bitmap removed"
ok "check -r all: qemu-img check clean (its clusters freed)" check_clean k.qcow2
is "$($BMPY all k.qcow2)" "$($BMPY all base.qcow2 | sed '/^used /,/^[^ ]/{/^used /d;/^  /d}')" \
   "check -r all: the other bitmaps' bits untouched"
ok "check -r all: content untouched" qemu_oracle_compare k.qcow2 base.qcow2
kimg convert --bitmaps -O qcow2 k.qcow2 copy.qcow2
is "$RC" 0 "after check -r all: convert --bitmaps works without --skip-broken-bitmaps"

# command-line refusals, as qemu-img's
cp base.qcow2 k.qcow2
for args in "k.qcow2 b0" "--add k.qcow2" "--add k.qcow2 a b" "-g 64k --enable k.qcow2 b0" \
            "-F qcow2 --merge b0 k.qcow2 off" "-b src.qcow2 --add k.qcow2 x" \
            "--add -g abc k.qcow2 x" "--add -g -5 k.qcow2 x" "--add -g 8E k.qcow2 x" \
            "--bogus k.qcow2 x" "--add -U k.qcow2 x" "--add nonexist.qcow2 x" \
            "--merge b0 -b nonexist.qcow2 k.qcow2 off" \
            "--add -f qcow2 --image-opts driver=qcow2,file.filename=k.qcow2 x"; do
    sampled || continue         # check: a third of the cases; check-slow: the rest
    oracle "bitmap $args" bitmap $args
    err_line "bitmap $args"
done
cp base.qcow2 k2.qcow2
kimg bitmap --add --image-opts driver=qcow2,file.filename=k2.qcow2 io
is "$RC" 0 "--image-opts: exit 0"
is "$(bitmaps k2.qcow2 | tr ' ' '\n' | grep -c '^io:')" 1 "--image-opts: the bitmap was added"

# formats and versions that cannot store bitmaps
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 4M
kimg bitmap --add v2.qcow2 x
is "$RC" 1 "v2 image: --add refused"
like "$(< "$T/err")" "Cannot store dirty bitmaps in qcow2 v2 files" "v2 image: qemu's reason"
qemu-img create -q -f raw r.raw 1M
kimg bitmap --add -f raw r.raw x
is "$RC" 1 "raw: --add refused"
like "$(< "$T/err")" "Can't store persistent bitmaps" "raw: qemu's reason"
kimg bitmap --merge x -b r.raw -F raw k.qcow2 b0
is "$RC" 1 "merge from a raw file: refused (no bitmap there)"
like "$(< "$T/err")" "Dirty bitmap 'x' not found" "merge from raw: qemu's reason"

# a name from the command line reaches the terminal escaped
kimg bitmap --remove k.qcow2 $'evil\e[31m'
ok "a name with an escape sequence is printed escaped" bash -c "! grep -q $'\e' '$T/err'"

done_testing
