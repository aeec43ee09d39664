#!/bin/bash
# kimg commit: the top's data (with -b, that of every layer above the
# base) goes into the base; the top is emptied unless -d (-b implies -d,
# as in qemu-img 7.2); a smaller base grows; zeros stay zeros.  Each case
# runs on twin copies of one chain: q/ committed by qemu-img, k/ by kimg.
# Every image must then read as qemu-img's twin (qemu-img compare), the
# top as before the commit, pass qemu-img check, and show qemu-img's info
# (actual-size aside) and allocation (qemu-img map, host offsets aside).
# make check: one case of each kind and a third of the other chains and
# options (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"

# mk DIR: a chain base <- [mid <-] top by TOOL (qemu: qemu-img create,
# kimg: kimg create), data written by qemu-io.  Knobs: TOPOPT, BASEFMT,
# BSIZE, MSIZE, TSIZE, MID (a middle layer), SNAP (a snapshot in top).
mk() {
    local d=$1 c=qemu-img under=base.$BASEFMT
    [ "$TOOL" = kimg ] && c=$KIMG
    mkdir -p $d; cd $d
    qemu-img create -q -f $BASEFMT base.$BASEFMT ${BSIZE:-4M}
    qemu-io -f $BASEFMT -c "write -P 0x11 0 1M" -c "write -P 0x12 3M 64k" base.$BASEFMT > /dev/null
    if [ -n "${MID:-}" ]; then
        $c create -q -f qcow2 -b base.$BASEFMT -F $BASEFMT mid.qcow2 ${MSIZE:-}
        qemu-io -c "write -P 0x21 512k 256k" -c "write -z 3M 64k" -c "write -P 0x22 2M 4k" mid.qcow2 > /dev/null
        under=mid.qcow2
    fi
    $c create -q -f qcow2 ${TOPOPT:-} -b $under -F ${under##*.} top.qcow2 ${TSIZE:-}
    qemu-io -c "write -P 0x31 0 64k" -c "write -z 640k 64k" -c "write -P 0x32 1536k 4k" top.qcow2 > /dev/null
    if [ -n "${SNAP:-}" ]; then
        qemu-img snapshot -c s1 top.qcow2
        qemu-io -c "write -P 0x33 0 4k" -c "write -P 0x34 2M 128k" top.qcow2 > /dev/null
    fi
    qemu-io -c "write -c -P 0x35 3M 64k" top.qcow2 > /dev/null 2>&1
    cd ..
}
files() { echo base.$BASEFMT ${MID:+mid.qcow2} top.qcow2; }

# case_ NAME ARGS: commit ARGS top.qcow2 in q/ and k/ and compare
case_() {
    local name=$1 args=$2 f
    rm -rf tpl q k ./*.map*; mk tpl
    cp -r tpl q; cp -r tpl k
    if [ "$TOOL" = kimg ]; then rm -rf q; TOOL=qemu mk q; fi
    qemu-img convert -O raw k/top.qcow2 want.raw
    (cd q && eval "qemu-img commit $args top.qcow2") > qout 2>&1 || { fail "$name: qemu-img itself refused"; return; }
    (cd k && eval "\"$KIMG\" commit $args top.qcow2") > out 2> err; RC=$?
    is "$RC" 0 "$name: exit 0" || { diag "$(< err)"; return; }
    is_file out qout "$name: stdout as qemu-img's"
    ok "$name: the top reads as before" qemu_oracle_compare k/top.qcow2 want.raw
    for f in $(files); do
        ok "$name: $f reads as qemu-img's" qemu_oracle_compare -f ${f##*.} -F ${f##*.} k/$f q/$f
        [ ${f##*.} = qcow2 ] && { ok "$name: $f check clean" check_clean k/$f; }
        qemu-img map -f ${f##*.} --output=json q/$f > q-$f.map
        qemu-img map -f ${f##*.} --output=json k/$f > k-$f.map
    done
    (cd q && qemu-img info --output=json top.qcow2) > qi.json
    (cd k && qemu-img info --output=json top.qcow2) > ki.json
    is "$(qemu-img info -f $BASEFMT k/base.$BASEFMT | grep '^virtual size')" \
       "$(qemu-img info -f $BASEFMT q/base.$BASEFMT | grep '^virtual size')" "$name: base size as qemu-img's"
    json_norm_files actual-size qi.json ki.json
    is_file ki.json.norm qi.json.norm "$name: top.qcow2 info as qemu-img's"
    alloc *.map
    for f in $(files); do
        is_file k-$f.map.alloc q-$f.map.alloc "$name: $f allocation (which layer decides each byte) as qemu-img's"
    done
}
# alloc MAP...: each qemu-img map (JSON) as runs of (start, length,
# depth, present) into MAP.alloc.  "zero"/"data" and host offsets are left
# out: they follow the host file's holes and how each tool writes zeros
# (kimg writes zeros as zeros where qemu-img's mirror job sometimes writes
# a buffer of zeros), not what commit decides.
alloc() {
    $PY - "$@" <<'EOF'
import json, sys
for path in sys.argv[1:]:
    out = []
    for e in json.load(open(path)):
        k = [e["depth"], e["present"]]
        if out and out[-1][2:] == k and out[-1][0] + out[-1][1] == e["start"]:
            out[-1][1] += e["length"]
        else:
            out.append([e["start"], e["length"]] + k)
    open(path + ".alloc", "w").write("".join(" ".join(map(str, r)) + "\n" for r in out))
EOF
}

# scase ARGS: case_ ARGS in this part's sample (lib.sh sampled); the
# plain case_ lines are what make check runs of each kind (-d, a plain
# commit into a base that grows, -b implying -d; -b base: five in a row,
# so a third takes one or two)
scase() { sampled || return 0; case_ "$@"; }
BASEFMT=qcow2 TOOL=qemu
scase "commit" ""
TOOL=kimg scase "commit (kimg-made top)" ""
case_ "commit -d" "-d"
scase "commit -t unsafe -r 100M" "-t unsafe -r 100M"
TSIZE=6M case_ "base smaller than top: grows" ""
BSIZE=8M scase "base larger than top" ""
BASEFMT=raw TSIZE=6M scase "raw base, smaller than the top: grows" ""
TOPOPT="-o extended_l2=on" scase "top with subclusters" ""
TOPOPT="-o compat=0.10" scase "v2 top" ""
TOPOPT="-o cluster_size=512" scase "top with 512-byte clusters" ""
if sampled; then
    SNAP=1 case_ "top with a snapshot (kept)" ""
    ok "top with a snapshot: still listed" test "$(qemu-img snapshot -l k/top.qcow2 | grep -c ' s1 ')" = 1
    qemu-img convert -l snapshot.name=s1 -O raw q/top.qcow2 qs1.raw
    qemu-img convert -l snapshot.name=s1 -O raw k/top.qcow2 ks1.raw
    ok "top with a snapshot: the snapshot reads as qemu-img's" cmp ks1.raw qs1.raw
fi
MID=1 scase "chain of 3: into mid" ""
MID=1 scase "chain of 3: -b base" "-b base.qcow2"
MID=1 TOOL=kimg scase "chain of 3 by kimg: -b base" "-b base.qcow2"
MID=1 case_ "chain of 3: -b mid (implies -d)" "-b mid.qcow2"
MID=1 MSIZE=2M TSIZE=4M scase "chain of 3, shorter mid: -b base" "-b base.qcow2"
MID=1 BASEFMT=raw scase "chain of 3, raw base: -b base" "-b base.raw"
MID=1 scase "chain of 3: -b by absolute name" "-b \"\$PWD/base.qcow2\""
# (the chain the checks below take, whichever cases ran)
rm -rf tpl; MID=1 mk tpl

# Progress: qemu-img's lines, then the message.
rm -rf k; cp -r tpl k
(cd k && "$KIMG" commit -p top.qcow2) > out 2> err
like "$(tr '\r\n' '|#' < out)" '^    \(0\.00/100%\)\|.*    \(100\.00/100%\)\|#Image committed\.#$' "-p: progress lines, then Image committed."
rm -rf k; cp -r tpl k
(cd k && "$KIMG" commit -p -q top.qcow2) > out 2> err
is "$(wc -c < out)" 0 "-p -q: nothing on stdout"

# Errors (exit 1, one line), images untouched.
rm -rf k; cp -r tpl k; cd k
sha_all() { cat base.qcow2 top.qcow2 | sha256sum; }
before=$(sha_all)
qemu-img create -q -f qcow2 lone.qcow2 1M
kimg commit lone.qcow2
is "$RC" 1 "no backing file: exit 1"; err_line "no backing file"
like "$(< "$T/err")" "Image does not have a backing file" "no backing file: qemu-img's words"
qemu-img create -q -f raw r.raw 1M
kimg commit -f raw r.raw
is "$RC" 1 "raw image: exit 1"; err_line "raw image"
kimg commit nosuch.qcow2
is "$RC" 1 "missing image: exit 1"; err_line "missing image"
kimg commit -b nosuch.qcow2 top.qcow2
is "$RC" 1 "-b not in the chain: exit 1"; err_line "-b not in the chain"
like "$(< "$T/err")" "Did not find 'nosuch.qcow2' in the backing chain of 'top.qcow2'" "-b not in the chain: qemu-img's words"
kimg commit -b top.qcow2 top.qcow2
is "$RC" 1 "-b the top itself: exit 1"; err_line "-b the top itself"
kimg commit -r x top.qcow2
is "$RC" 1 "bad -r: exit 1"; err_line "bad -r"
kimg commit -t bogus top.qcow2
is "$RC" 1 "bad -t: exit 1"; err_line "bad -t"
kimg commit -s top.qcow2
is "$RC" 1 "unknown option: exit 1"; err_line "unknown option"
kimg commit top.qcow2 top.qcow2
is "$RC" 1 "two images: exit 1"; err_line "two images"
kimg commit
is "$RC" 1 "no image: exit 1"; err_line "no image"
is "$(sha_all)" "$before" "after the errors the images are untouched"
# in use by a running QEMU: the top, the base
for f in top.qcow2 base.qcow2; do
    hold_lock $f
    kimg commit top.qcow2
    is "$RC" 1 "$f in use: exit 1"; err_line "$f in use"
    like "$(< "$T/err")" 'lock' "$f in use: names the lock"
    kill $holder; wait $holder 2>/dev/null
done
is "$(sha_all)" "$before" "after the refusals the images are untouched"
# a backing loop
qemu-img create -q -f qcow2 -b l2.qcow2 -F qcow2 -u l1.qcow2 1M
qemu-img create -q -f qcow2 -b l1.qcow2 -F qcow2 -u l2.qcow2 1M
kimg commit l1.qcow2
is "$RC" 1 "backing loop: exit 1"; err_line "backing loop"
# (damaged tops: 142)
mv base.qcow2 base.gone
kimg commit top.qcow2
is "$RC" 1 "missing backing file: exit 1"; err_line "missing backing file"
cd ..
done_testing
