#!/bin/bash
# The manual page (issue 16): man/kimg.pod, made into $KIMG_BUILD/man/kimg.1
# by pod2man (Makefile "man", part of `make`).  podchecker finds nothing;
# groff and man render it with every warning on and print nothing on
# stderr; it has the sections a packaged tool's page has; each command in
# `kimg --help` has its section, and the options of that section are
# exactly those `kimg CMD --help` prints (both parsed here, so neither can
# drift); the JSON key lists are in the order kimg prints them (checked on
# real output); ENVIRONMENT names the README's tunables; `make install`
# puts the page in MANDIR/man1 and `make uninstall` removes it.
. "$(dirname "$0")/lib.sh"
require pod2man podchecker groff man
POD=$KIMG_SRC/man/kimg.pod
PAGE=$KIMG_BUILD/man/kimg.1
ok "the page is built ($PAGE)" test -s "$PAGE"
[ -s "$PAGE" ] || { done_testing; exit; }
ok "it is newer than its source" test ! "$POD" -nt "$PAGE"

run podchecker "$POD"
is "$RC" 0 "podchecker: no errors"
is "$(grep -v 'pod syntax OK' "$T/err" "$T/out")" "" "podchecker: no warnings"

run groff -man -Tutf8 -ww -z "$PAGE"
is "$RC:$(< "$T/err")" "0:" "groff -man -Tutf8 -ww: no warnings"
for w in 80 60; do
    MANWIDTH=$w run man --warnings -l "$PAGE"
    is "$RC:$(< "$T/err")" "0:" "man --warnings -l at $w columns: no warnings"
done
MANWIDTH=200 run man -l "$PAGE"
cp "$T/out" rendered
for s in NAME SYNOPSIS DESCRIPTION OPTIONS COMMANDS "EXIT STATUS" "JSON OUTPUT" \
         ENVIRONMENT SECURITY EXAMPLES "SEE ALSO"; do
    ok "section $s" grep -q "^$s\$" rendered
done
# ASCII rendering keeps '-' as '-': the options as a reader sees them
groff -man -Tascii -P-cbu "$PAGE" > ascii 2> /dev/null

# ---- each command's section against `kimg CMD --help` -----------------------
kimg --help
subs=$(awk '/^Commands/ { on = 1; next } on && /^$/ { exit } on { print $1 }' "$T/out")
ok "kimg --help lists the commands" test "$(echo "$subs" | wc -w)" -ge 16
for sub in $subs; do
    kimg "$sub" --help
    cp "$T/out" "help-$sub"
done
$PY - "$POD" ascii $subs > report <<'EOF'
import re, sys
pod = open(sys.argv[1]).read()
ascii = open(sys.argv[2]).read()
TOK = r'(--?[A-Za-z0-9][A-Za-z0-9-]*|[a-z]+=)'
def help_tokens(sub):
    """The options `kimg SUB --help` prints: the left column of its
    Options block (up to two blanks), every -x, --name and dd's op=."""
    lines = open('help-' + sub).read().split('\n')
    out, on = [], False
    for l in lines:
        if l == 'Options:':
            on = True
            continue
        if not on:
            continue
        if l == '':
            break
        l = l[2:]
        if l.startswith(' '):
            continue
        l = re.split(r'\s{2,}', l)[0]
        for t in re.findall(r'(?:^|[\s,\[|])' + TOK, l):
            if t not in out:
                out.append(t)
    return out
for sub in sys.argv[3:]:
    m = re.search(r'^=head2 kimg ' + sub + r'\n(.*?)(?=^=head[12] )', pod, re.S | re.M)
    if not m:
        print('MISSING-SECTION', sub)
        continue
    sec = m.group(1)
    items = []
    for it in re.findall(r'^=item (.*)$', sec, re.M):
        for t in re.findall(r'B<' + TOK + r'(?:>|=)', it):
            items.append(t)
    want = help_tokens(sub)
    for t in want:
        if t not in items:
            print('UNDOCUMENTED', sub, t)
        if not re.search(r'(^|[\s,\[|(])' + re.escape(t) + r'(?![A-Za-z0-9-])', ascii, re.M):
            print('NOT-RENDERED', sub, t)
    for t in items:
        if t not in want:
            print('NOT-IN-HELP', sub, t)
    print('OK', sub, len(want))
EOF
for sub in $subs; do
    like "$(grep "^OK $sub " report)" "^OK $sub [1-9]" "kimg $sub: a section with options"
    is "$(grep " $sub " report | grep -v '^OK')" "" "kimg $sub: the section's options are exactly kimg $sub --help's"
done

# ---- JSON OUTPUT: the documented orders are kimg's ---------------------------
# keys KIND N: the Nth (from 1) key list written under "=item B<kimg KIND"
keys() {
    $PY - "$POD" "$1" "$2" <<'EOF'
import re, sys
pod, kind, n = open(sys.argv[1]).read(), sys.argv[2], int(sys.argv[3])
sec = pod.split('=head1 JSON OUTPUT', 1)[1].split('=head1 ', 1)[0]
item = sec.split('=item B<kimg ' + kind, 1)[1].split('=item ', 1)[0]
blocks = re.findall(r'((?:^    \S.*\n)+)', item, re.M)
print(' '.join(blocks[n - 1].split()))
EOF
}
# in_order NAME DOCUMENTED GOT: GOT's keys all documented, in that order
in_order() {
    local r
    r=$($PY -c '
import sys
doc, got = sys.argv[1].split(), sys.argv[2].split()
bad = [k for k in got if k not in doc]
pos = [doc.index(k) for k in got if k in doc]
print("undocumented: " + " ".join(bad) if bad else "" if pos == sorted(pos) else "order: " + " ".join(got))
' "$2" "$3")
    is "$r" "" "$1: keys as documented (${3:0:60}...)"
}
# jkeys FILE PATH: the keys of the object at PATH (python subscripts) in FILE
jkeys() {
    $PY -c '
import json, sys, collections
d = json.load(open(sys.argv[1]), object_pairs_hook=collections.OrderedDict)
print(" ".join(eval("d" + sys.argv[2]).keys()))' "$1" "$2"
}
echo -n pw > key
qemu-img create -q -f raw base.raw 8M
qemu-img create -q -f qcow2 --object secret,id=s0,file=key \
    -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 -b base.raw -F raw enc.qcow2 8M
qemu-img snapshot -c s1 --object secret,id=s0,file=key \
    --image-opts driver=qcow2,encrypt.key-secret=s0,file.filename=enc.qcow2
qemu-img create -q -f qcow2 bm.qcow2 8M
qemu-img bitmap --add bm.qcow2 b0
qemu-io -c 'write 0 64k' bm.qcow2 > /dev/null
qemu-img create -q -f qcow2 -o data_file=bm.data,data_file_raw=on df.qcow2 8M
kimg info --output=json enc.qcow2; cp "$T/out" enc.json
in_order "info (encrypted overlay with a snapshot)" "$(keys info 1)" "$(jkeys enc.json '')"
in_order "info: a snapshot" "$(keys info 2)" "$(jkeys enc.json '["snapshots"][0]')"
in_order "info: qcow2 data (encrypted)" "$(keys info 3)" "$(jkeys enc.json '["format-specific"]["data"]')"
kimg info --output=json bm.qcow2; cp "$T/out" bm.json
in_order "info: qcow2 data (bitmaps)" "$(keys info 3)" "$(jkeys bm.json '["format-specific"]["data"]')"
in_order "info: a bitmap" "$(keys info 4)" "$(jkeys bm.json '["format-specific"]["data"]["bitmaps"][0]')"
kimg info --output=json df.qcow2; cp "$T/out" df.json
in_order "info: qcow2 data (data file)" "$(keys info 3)" "$(jkeys df.json '["format-specific"]["data"]')"
kimg map --output=json bm.qcow2; cp "$T/out" map.json
in_order "map: an extent with an offset" "$(keys map 1)" "$(jkeys map.json '[0]')"
in_order "map: an extent without" "$(keys map 1)" "$(jkeys map.json '[-1]')"
kimg check --output=json bm.qcow2; cp "$T/out" check.json
in_order "check" "$(keys check 1)" "$(jkeys check.json '')"
qemu-img convert -c -O qcow2 bm.qcow2 leak.qcow2
eval "$($Q2 header leak.qcow2 | grep -E '^l1_table_offset=')"
$Q2 set-rc leak.qcow2 "$l1_table_offset" 2
kimg check --output=json leak.qcow2; cp "$T/out" leak.json
is "$RC" 3 "check of a leaky compressed image: exit 3"
in_order "check (leaks, compressed clusters)" "$(keys check 1)" "$(jkeys leak.json '')"
kimg check -r leaks --output=json leak.qcow2; cp "$T/out" fixed.json
in_order "check -r leaks" "$(keys check 1)" "$(jkeys fixed.json '')"
kimg measure --output=json -O qcow2 bm.qcow2; cp "$T/out" measure.json
in_order "measure" "$(keys measure 1)" "$(jkeys measure.json '')"
kimg checksum --output=json bm.qcow2; cp "$T/out" sum.json
in_order "checksum" "$(keys checksum 1)" "$(jkeys sum.json '[0]')"

# ---- ENVIRONMENT: the README's tunables --------------------------------------
env_sec=$(sed -n '/^=head1 ENVIRONMENT/,/^=head1 SECURITY/p' "$POD")
vars=$(sed -n '/^## Tunables and test hooks/,/^## /s/^| `\(KIMG_[A-Z0-9_]*\)`.*/\1/p' "$KIMG_SRC/README.md")
ok "the README's tunables table has entries" test "$(echo "$vars" | wc -w)" -ge 8
missing=
for v in $vars; do
    grep -q "B<$v>" <<< "$env_sec" || missing="$missing $v"
done
is "$missing" "" "ENVIRONMENT names every KIMG_* variable of the README's table"
for v in $(grep -o 'B<KIMG_[A-Z0-9_]*>' <<< "$env_sec" | sed 's/B<\(.*\)>/\1/'); do
    grep -qw "$v" <<< "$vars" || fail "ENVIRONMENT's $v is in the README's table"
done

# ---- install / uninstall -------------------------------------------------------
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$KIMG_SRC" -o all "$@" > "$T/make.log" 2>&1; }
san=; [ "$(basename "$KIMG_BUILD")" = build-san ] && san=SANITIZE=1
D=$T/root
if mk $san install DESTDIR="$D" PREFIX=/usr MANDIR=/usr/share/man; then
    pass "make install MANDIR=/usr/share/man"
    is_file "$D/usr/share/man/man1/kimg.1" "$PAGE" "  the page in MANDIR/man1"
    MANWIDTH=80 run man --warnings -l "$D/usr/share/man/man1/kimg.1"
    like "$(head -1 "$T/out")" '^KIMG\(1\) ' "  man renders the installed page"
    ok "make uninstall" mk $san uninstall DESTDIR="$D" PREFIX=/usr MANDIR=/usr/share/man
    ok "  the page is gone" test ! -e "$D/usr/share/man/man1/kimg.1"
else
    fail "make install" "$(tail -5 "$T/make.log")"
fi
done_testing
