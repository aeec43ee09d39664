#!/bin/bash
# commit and rebase keep persistent dirty bitmaps as qemu-img does: on twin
# chains (kimg in k/, qemu-img in q/) whose images carry enabled bitmaps
# (granularity 512, 64k, 1M), a disabled one and an in-use one, kimg commit
# (into the backing; -b through an intermediate; with the top's own bitmaps)
# and kimg rebase (safe, onto another backing and onto none; -u) leave the
# dirty regions qemu exports (qemu-nbd -B, nbdinfo --map) as after qemu-img,
# the bitmap list and flags as qemu-img info shows them after qemu-img's (no
# new "in-use"), qemu-img check clean and the content equal.
# make check: each comparison reads a third of the bitmaps through qemu-nbd
# (one or two of each; lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/bitmap-nbd.sh"
require qemu-nbd nbdinfo

dirty() {
    nbdinfo --map="qemu:dirty-bitmap:$2" -- [ qemu-nbd -r -f qcow2 -B "$2" "$1" ] 2>&1 |
        awk '$3 == 1 { print $1, $2; next } $3 != 0 { print "?", $0 }'
}
# bitmaps2 A B: the bitmap lists of A and B as qemu-img info shows them,
# into $T/bl.a and $T/bl.b (two qemu-img info, one python)
bitmaps2() {
    qemu-img info --output=json "$1" > "$T/i.a"
    qemu-img info --output=json "$2" > "$T/i.b"
    $PY -S -c 'import json,sys
for t in "ab":
    try:
        d = json.load(open(sys.argv[1] + "/i." + t))
        bm = d.get("format-specific",{}).get("data",{}).get("bitmaps",[])
        out = " ".join("%s:%s:%s" % (b["name"], b["granularity"], ",".join(b["flags"])) for b in bm)
    except ValueError as e:
        out = "INVALID JSON: %s" % e
    open(sys.argv[1] + "/bl." + t, "w").write(out)' "$T"
}
# addbm IMG: bitmaps "used" (in use), "off" (disabled, with content), b0,
# g512, g1M, then a write all the enabled ones record
addbm() {
    qemu-img bitmap --add "$1" used &&
    { ( qemu-io -f qcow2 -c "write -P 0x71 3968k 64k" -c abort "$1" || true ) > /dev/null 2>&1; } &&
    qemu-img bitmap --add "$1" off &&
    qemu-io -f qcow2 -c "write -P 0x72 128k 4k" "$1" > /dev/null &&
    qemu-img bitmap --disable "$1" off &&
    qemu-img bitmap --add "$1" b0 &&
    qemu-img bitmap --add -g 512 "$1" g512 &&
    qemu-img bitmap --add -g 1M "$1" g1M &&
    qemu-io -f qcow2 -c "write -P 0x73 2M 64k" "$1" > /dev/null
}
NAMES="b0 g512 g1M off"
# same IMG NAME: IMG in k/ and q/ compared
same() {
    local img=$1 name=$2 n
    ok "$name: $img content as qemu-img's" qemu_oracle_compare "k/$img" "q/$img"
    ok "$name: $img qemu-img check clean" check_clean_alone "$T/k/$img"
    bitmaps2 "k/$img" "q/$img"
    is "$(< "$T/bl.a")" "$(< "$T/bl.b")" "$name: $img bitmap list and flags as qemu-img's"
    for n in $NAMES; do
        sampled || continue     # check: a third of the bitmaps; check-slow: the rest
        is "$(dirty "k/$img" $n)" "$(dirty "q/$img" $n)" "$name: $img '$n' dirty regions as qemu-img's"
    done
}
# chain: base (bitmaps) <- mid <- top, data in each, made once in c0/
# and copied (the same chain each time); chain_bm: the top with bitmaps
# too (addbm), made once in c1/
mkchain() {
    rm -rf c0; mkdir c0
    ( cd c0 &&
      qemu-img create -q -f qcow2 base.qcow2 4M &&
      qemu-io -f qcow2 -c "write -P 0x61 0 1M" base.qcow2 > /dev/null &&
      addbm base.qcow2 &&
      qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 &&
      qemu-io -f qcow2 -c "write -P 0x62 512k 3k" -c "write -z 1536k 64k" mid.qcow2 > /dev/null &&
      qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 &&
      qemu-io -f qcow2 -c "write -P 0x63 100k 1k" -c "write -P 0x64 3M 300k" \
          -c "write -z 1100k 8k" -c "discard 2M 64k" top.qcow2 > /dev/null ) &&
    cp -r c0 c1 && (cd c1 && addbm top.qcow2 > /dev/null)
}
chain() { rm -rf k q; cp -r c0 k && cp -r c0 q; }
chain_bm() { rm -rf k q; cp -r c1 k && cp -r c1 q; }

# kin ARGS...: kimg ARGS inside k/ ($RC, $T/err as kimg sets them)
kin() { cd "$T/k" && kimg "$@"; cd "$T"; }

mkchain && chain || { fail "qemu-img made the chain"; done_testing; }
kin commit mid.qcow2; is "$RC" 0 "commit mid into base: exit 0"
(cd q && qemu-img commit -q mid.qcow2)
same base.qcow2 "commit mid"

chain
kin commit -b base.qcow2 top.qcow2; is "$RC" 0 "commit -b base top: exit 0"
(cd q && qemu-img commit -q -b base.qcow2 top.qcow2)
same base.qcow2 "commit -b"

# the top carries bitmaps too: emptying it (commit without -d) is no guest
# write, for qemu-img as for kimg
chain_bm
kin commit top.qcow2; is "$RC" 0 "commit of a top with bitmaps: exit 0"
(cd q && qemu-img commit -q top.qcow2)
same mid.qcow2 "commit of a top with bitmaps"
same top.qcow2 "commit of a top with bitmaps"

# safe rebase of a top with bitmaps onto base (mid's data copied into the
# top where it decides) and onto nothing (everything below copied)
chain_bm
kin rebase -b base.qcow2 -F qcow2 top.qcow2; is "$RC" 0 "rebase onto base: exit 0"
(cd q && qemu-img rebase -b base.qcow2 -F qcow2 top.qcow2)
same top.qcow2 "rebase onto base"
kin rebase -b "" top.qcow2; is "$RC" 0 "rebase onto nothing: exit 0"
(cd q && qemu-img rebase -b "" top.qcow2)
same top.qcow2 "rebase onto nothing"

# rebase -u only rewrites the header: bitmaps as they were
chain_bm
dirty_names k/top.qcow2 > before
kin rebase -u -b base.qcow2 -F qcow2 top.qcow2; is "$RC" 0 "rebase -u: exit 0"
(cd q && qemu-img rebase -u -b base.qcow2 -F qcow2 top.qcow2)
same top.qcow2 "rebase -u"
dirty_names k/top.qcow2 > after
is_file after before "rebase -u: regions unchanged"
done_testing
