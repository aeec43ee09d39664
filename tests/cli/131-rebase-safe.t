#!/bin/bash
# kimg rebase (safe mode): the overlay keeps its content; where the old and
# the new backing file read differently, the old content is copied into
# the overlay, nowhere else.  Each case runs on twins made by both tools:
# q/ rebased by qemu-img, k/ by kimg.  kimg's overlay must read as before
# (qemu-img compare against the flattened original) and as qemu-img's
# result, pass qemu-img check, show qemu-img's info (actual-size aside) and
# qemu-img's allocation in qemu-img map (host offsets aside).
# make check: one case of each kind and a third of the other overlays and
# options and chains (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"

# mk DIR: the images of one case, made by qemu-img/qemu-io (TOOL=qemu) or
# by kimg where kimg can (TOOL=kimg: create, convert)
mk() {
    local d=$1
    mkdir -p $d
    (
    cd $d
    qemu-img create -q -f qcow2 $OLDOPT a.qcow2 4M
    qemu-io -c "write -P 0x11 0 1M" -c "write -P 0x12 2M 128k" -c "write -z 3M 64k" a.qcow2 > /dev/null
    # b: shares the first 512k with a, differs after, and elsewhere
    qemu-img create -q -f qcow2 b.qcow2 ${BSIZE:-4M}
    qemu-io -c "write -P 0x11 0 512k" -c "write -P 0x33 1M 64k" -c "write -P 0x34 3M 8k" b.qcow2 > /dev/null
    if [ "$TOOL" = kimg ]; then
        "$KIMG" create -q -f qcow2 $OPT -b a.qcow2 -F qcow2 o.qcow2 ${OSIZE:-}
    else
        qemu-img create -q -f qcow2 $OPT -b a.qcow2 -F qcow2 o.qcow2 ${OSIZE:-}
    fi
    qemu-io -c "write -P 0x55 0 64k" -c "write -P 0x56 2M 4k" -c "write -z 1M 64k" o.qcow2 > /dev/null
    )
}
# case NAME ARGS: rebase o.qcow2 with ARGS in q/ and k/, then the checks
case_() {
    local name=$1 args=$2
    # both twins are copies (copying may change host holes: equally)
    rm -rf q k tpl; mk tpl
    if [ "$TOOL" = kimg ]; then cp -r tpl k; TOOL=qemu mk q; else cp -r tpl q; cp -r tpl k; fi
    qemu-img convert -O raw k/o.qcow2 want.raw
    (cd q && eval "qemu-img rebase $args o.qcow2") > /dev/null 2>&1 || { fail "$name: qemu-img itself refused"; return; }
    (cd k && eval "\"$KIMG\" rebase $args o.qcow2") > out 2> err; RC=$?
    is "$RC" 0 "$name: exit 0" || { diag "$(< err)"; return; }
    ok "$name: content unchanged" qemu_oracle_compare k/o.qcow2 want.raw
    ok "$name: content as qemu-img's result" qemu_oracle_compare k/o.qcow2 q/o.qcow2
    ok "$name: check clean" check_clean k/o.qcow2
    (cd q && qemu-img info --output=json o.qcow2) > qi.json
    (cd k && qemu-img info --output=json o.qcow2) > ki.json
    qemu-img map --output=json q/o.qcow2 > qm.json
    qemu-img map --output=json k/o.qcow2 > km.json
    json_norm_files actual-size,offset qi.json ki.json qm.json km.json
    is_file ki.json.norm qi.json.norm "$name: qemu-img info as for qemu-img's"
    # Compared: the overlay's own extents.  Where the old backing reads
    # zeros (inside its size) and the new one
    # data, qemu-img writes a buffer of zeros: data clusters; kimg writes
    # zeros (zero clusters where whole ones are covered).  Same content
    # and the same clusters present; only "zero"/"data" may differ there.
    zd_norm qm.json.norm > qm.z; zd_norm km.json.norm > km.z
    is_file km.z qm.z "$name: allocation (qemu-img map) as qemu-img's"
}
# zd_norm MAP.norm: the overlay's own extents (depth 0: what rebase
# changes; the backing files' host layout is not its business), one a line.
zd_norm() {
    tr -d ' \n' < "$1" | sed -e 's/^\[//' -e 's/\]$//' -e 's/},{/}\n{/g' | grep '"depth":0' |
        sed -e 's/"zero":true,"data":false/ZD/g' -e 's/"zero":false,"data":true/ZD/g'
}

# scase ARGS: case_ ARGS in this part's sample (lib.sh sampled); the
# plain case_ line is what make check runs of its kind (flattened); the
# others rebase onto another backing file, a third of them in make check
scase() { sampled || return 0; case_ "$@"; }
OPT= OLDOPT= TOOL=qemu
scase "onto b" "-b b.qcow2 -F qcow2"
TOOL=kimg scase "onto b (kimg-made overlay)" "-b b.qcow2 -F qcow2"
case_ "flatten -b ''" "-b ''"
scase "onto the same backing file" "-b a.qcow2 -F qcow2"
scase "b read as raw" "-b b.qcow2 -F raw"
scase "-t none -T none (O_DIRECT)" "-t none -T none -b b.qcow2 -F qcow2"
scase "-t unsafe -U" "-t unsafe -U -b b.qcow2 -F qcow2"
OPT="-o extended_l2=on" scase "subclusters" "-b b.qcow2 -F qcow2"
OPT="-o cluster_size=4k" scase "4k clusters" "-b b.qcow2 -F qcow2"
OPT="-o compat=0.10" scase "v2 overlay" "-b b.qcow2 -F qcow2"
OLDOPT="-o cluster_size=512" scase "old backing with 512-byte clusters" "-b b.qcow2 -F qcow2"
BSIZE=1M scase "new backing shorter" "-b b.qcow2 -F qcow2"
BSIZE=8M scase "new backing longer" "-b b.qcow2 -F qcow2"
OSIZE=6M BSIZE=8M scase "overlay longer than the old backing" "-b b.qcow2 -F qcow2"
OSIZE=6M BSIZE=8M scase "overlay longer, flatten" "-b ''"

# A chain of three: rebase the top onto the bottom (the middle's data is
# copied up, nothing else), and onto nothing.  (The chain made by
# qemu-img in every part; the one made by kimg sampled.)
hows=(qemu); sampled && hows+=(kimg)
for how in "${hows[@]}"; do
    rm -rf $how; mkdir $how; cd $how
    qemu-img create -q -f qcow2 base.qcow2 8M
    qemu-io -c "write -P 1 0 3M" -c "write -P 2 5M 1M" base.qcow2 > /dev/null
    if [ $how = kimg ]; then c="$KIMG"; else c=qemu-img; fi
    $c create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
    qemu-io -c "write -P 3 1M 1M" -c "write -z 5M 64k" -c "write -P 4 7M 512" mid.qcow2 > /dev/null
    $c create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
    qemu-io -c "write -P 5 1536k 64k" -c "write -P 6 6M 64k" top.qcow2 > /dev/null
    cd ..
done
for how in "${hows[@]}"; do
    for tool in qemu-img kimg; do
        d=r-$how-$tool; rm -rf $d; cp -r $how $d
        qemu-img convert -O raw $d/top.qcow2 $d/want.raw
        if [ $tool = kimg ]; then (cd $d && "$KIMG" rebase -b base.qcow2 -F qcow2 top.qcow2); else (cd $d && qemu-img rebase -b base.qcow2 -F qcow2 top.qcow2); fi
    done
    d=r-$how-kimg q=r-$how-qemu-img
    ok "chain of 3 by $how: top onto base, content unchanged" qemu_oracle_compare $d/top.qcow2 $d/want.raw
    ok "chain of 3 by $how: check clean" check_clean $d/top.qcow2
    qemu-img map --output=json $q/top.qcow2 > qm.json; qemu-img map --output=json $d/top.qcow2 > km.json
    json_norm_files offset qm.json km.json
    zd_norm qm.json.norm > qm.z; zd_norm km.json.norm > km.z
    is_file km.z qm.z "chain of 3 by $how: allocation as qemu-img's"
    is "$(qemu-img info $d/top.qcow2 | grep '^backing file:')" "backing file: base.qcow2 (actual path: $d/base.qcow2)" \
        "chain of 3 by $how: backing file is base.qcow2"
done

# Progress and quiet.
rm -rf q k; mk k
(cd k && "$KIMG" rebase -p -b b.qcow2 -F qcow2 o.qcow2) > out 2> err
out=$(od -An -c out | tr -s ' ' | tr -d '\n')
like "$(cat out | tr '\r' '|')" '^    \(0\.00/100%\)\|.*    \(100\.00/100%\)\|$' "-p: qemu-img's progress lines"
is "$(tail -c 1 out | od -An -c | tr -d ' ')" '\n' "-p: ends with a newline"
rm -rf k; mk k
(cd k && "$KIMG" rebase -p -q -b b.qcow2 -F qcow2 o.qcow2) > out 2> err
is "$(wc -c < out)" 0 "-p -q: nothing on stdout"
ok "-p -q: rebased" test "$(qemu-img info k/o.qcow2 | grep -c 'backing file: b.qcow2')" = 1

# Errors: one line, exit 1, the overlay untouched.
rm -rf k; mk k; cd k; cp o.qcow2 o.orig
kimg rebase -b nosuch.qcow2 -F qcow2 o.qcow2
is "$RC" 1 "missing new backing: exit 1"; err_line "missing new backing"
like "$(< "$T/err")" "Could not open new backing file 'nosuch.qcow2'" "missing new backing: qemu-img's words"
kimg rebase -b b.qcow2 o.qcow2
is "$RC" 1 "safe -b without -F: exit 1"; err_line "safe -b without -F"
kimg rebase -b o.qcow2 -F qcow2 o.qcow2
is "$RC" 1 "onto itself: exit 1"; err_line "onto itself"
qemu-img create -q -f qcow2 -b o.qcow2 -F qcow2 p.qcow2
kimg rebase -b p.qcow2 -F qcow2 o.qcow2
is "$RC" 1 "onto an image above it (a loop): exit 1"; err_line "onto an image above it"
kimg rebase -b b.qcow2 -F vmdk o.qcow2
is "$RC" 1 "unknown -F format: exit 1"; err_line "unknown -F"
kimg rebase -T bogus -b b.qcow2 -F qcow2 o.qcow2
is "$RC" 1 "bad -T: exit 1"; err_line "bad -T"
like "$(< "$T/err")" "Invalid source cache option: bogus" "bad -T: qemu-img's words"
ok "after the errors the overlay is untouched" cmp o.qcow2 o.orig
# the new backing in use by a writer
hold_lock b.qcow2
kimg rebase -b b.qcow2 -F qcow2 o.qcow2
is "$RC" 1 "new backing in use by a writer: exit 1"; err_line "new backing in use"
kimg rebase -U -b b.qcow2 -F qcow2 o.qcow2
is "$RC" 0 "... with -U (force share): exit 0"
kill $holder; wait $holder 2>/dev/null
mv a.qcow2 a.gone
cp o.orig o2.qcow2
kimg rebase -b b.qcow2 -F qcow2 o2.qcow2
is "$RC" 1 "old backing missing: exit 1"; err_line "old backing missing"
kimg rebase -u -b b.qcow2 -F qcow2 o2.qcow2
is "$RC" 0 "old backing missing, -u: exit 0"
cd ..
done_testing
