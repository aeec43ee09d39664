#!/bin/bash
# Commands that change no guest content leave persistent dirty bitmaps
# unchanged and consistent, as qemu-img does: on twins (kimg in k/,
# qemu-img in q/) with enabled bitmaps (granularity 512, 64k, 1M), a
# disabled and an in-use one, snapshot -c, -l, -d and amend (when kimg has
# it) keep the bitmap list, flags and dirty regions (qemu-nbd -B, nbdinfo
# --map) as before and as after qemu-img's, qemu-img check clean;
# snapshot -a is refused ("Device has active dirty bitmaps") and resize
# is refused for the in-use bitmap as qemu-img refuses it, the image left
# as it was (byte for byte).  A later
# write (convert -n) is still recorded as qemu-img records it.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/bitmap-nbd.sh"
require qemu-nbd nbdinfo

dirty() {
    nbdinfo --map="qemu:dirty-bitmap:$2" -- [ qemu-nbd -r -f qcow2 -B "$2" "$1" ] 2>&1 |
        awk '$3 == 1 { print $1, $2; next } $3 != 0 { print "?", $0 }'
}
bitmaps() {
    qemu-img info --output=json "$1" | $PY -c 'import json,sys; d=json.load(sys.stdin)
bm=d.get("format-specific",{}).get("data",{}).get("bitmaps",[])
print(" ".join("%s:%s:%s" % (b["name"], b["granularity"], ",".join(b["flags"])) for b in bm))'
}
NAMES="b0 g512 g1M off"

kin() { cd "$T/k" && kimg "$@"; cd "$T"; }
same() {
    local name=$1
    ok "$name: qemu-img check clean" check_clean k/img.qcow2
    ok "$name: content as qemu-img's" qemu_oracle_compare k/img.qcow2 q/img.qcow2
    state k/img.qcow2 > k.state; state q/img.qcow2 > q.state
    is_file k.state q.state "$name: bitmaps and dirty regions as after qemu-img's"
}

mkdir k q
( cd k &&
  qemu-img create -q -f qcow2 img.qcow2 4M &&
  qemu-io -f qcow2 -c "write -P 0x61 0 1M" img.qcow2 > /dev/null &&
  qemu-img bitmap --add img.qcow2 used &&
  { ( qemu-io -f qcow2 -c "write -P 0x71 3968k 64k" -c abort img.qcow2 || true ) > /dev/null 2>&1; } &&
  qemu-img bitmap --add img.qcow2 off &&
  qemu-io -f qcow2 -c "write -P 0x72 128k 4k" img.qcow2 > /dev/null &&
  qemu-img bitmap --disable img.qcow2 off &&
  qemu-img bitmap --add img.qcow2 b0 &&
  qemu-img bitmap --add -g 512 img.qcow2 g512 &&
  qemu-img bitmap --add -g 1M img.qcow2 g1M &&
  qemu-io -f qcow2 -c "write -P 0x73 2M 64k" -c "write -P 0x74 5000 10" img.qcow2 > /dev/null ) ||
    { fail "qemu-img made the image"; done_testing; }
cp k/img.qcow2 q/
state k/img.qcow2 > orig.state
like "$(head -1 orig.state)" "^used:65536:in-use,auto off:65536: b0:65536:auto g512:512:auto g1M:1048576:auto$" \
    "the image has the five bitmaps"

kin snapshot -c s1 img.qcow2; is "$RC" 0 "snapshot -c: exit 0"
(cd q && qemu-img snapshot -c s1 img.qcow2)
same "snapshot -c"
# (k.state: same's, of the image as it is now)
is_file k.state orig.state "snapshot -c: bitmaps and regions unchanged"
kin snapshot -c s2 img.qcow2; (cd q && qemu-img snapshot -c s2 img.qcow2)

kin snapshot -l img.qcow2; is "$RC" 0 "snapshot -l: exit 0"
sum=$(sha k/img.qcow2)
kin snapshot -a s1 img.qcow2
is "$RC" 1 "snapshot -a: refused"
is "$(< "$T/err")" "kimg: Could not apply snapshot 's1': Device has active dirty bitmaps" \
    "snapshot -a: qemu-img's message"
is "$(sha k/img.qcow2)" "$sum" "snapshot -a: image unchanged"

kin snapshot -d s1 img.qcow2; is "$RC" 0 "snapshot -d: exit 0"
(cd q && qemu-img snapshot -d s1 img.qcow2)
same "snapshot -d"
is_file k.state orig.state "snapshot -d: bitmaps and regions unchanged"

# amend of lazy_refcounts (when kimg has amend)
kin amend -o lazy_refcounts=on img.qcow2
if [ "$RC" -ne 0 ] && grep -q -e "not implemented" -e "Command not found" "$T/err"; then
    skip "amend -o lazy_refcounts=on" "kimg has no amend yet"
else
    is "$RC" 0 "amend -o lazy_refcounts=on: exit 0"
    (cd q && qemu-img amend -o lazy_refcounts=on img.qcow2)
    same "amend -o lazy_refcounts=on"
    is_file k.state orig.state "amend: bitmaps and regions unchanged"
fi

# resize: the in-use bitmap makes qemu-img refuse it; kimg refuses it the
# same way, before anything changes (resizes that succeed: 165)
sum=$(sha k/img.qcow2)
kin resize img.qcow2 +1M
qimg resize q/img.qcow2 +1M
is "$RC:$QRC" "1:1" "resize with an in-use bitmap: refused by both"
like "$(< "$T/err")" "$(head -1 "$T/qerr" | sed 's/^qemu-img: //')" "resize: qemu-img's message"
is "$(sha k/img.qcow2)" "$sum" "resize refused: image unchanged"
same "resize refused"

# a write afterwards is recorded as qemu-img records it
info_of k/img.qcow2; truncate -s "$SZ" src.raw
qemu-io -f raw -c "write -P 0x21 1M 4k" -c "write -P 0x22 3000 10" src.raw > /dev/null
kin convert -n --target-is-zero -f raw -O qcow2 ../src.raw img.qcow2
is "$RC" 0 "convert -n after the snapshots: exit 0"
(cd q && qemu-img convert -n --target-is-zero -f raw -O qcow2 ../src.raw img.qcow2)
same "convert -n after the snapshots"
kin snapshot -d s2 img.qcow2; (cd q && qemu-img snapshot -d s2 img.qcow2)
same "snapshot -d after the write"
done_testing
