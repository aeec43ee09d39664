#!/bin/bash
# 094-escape-messages.t — names from images (a backing file name, a
# snapshot name and ID, a bitmap name) and from domain XML (a domain name,
# a disk path, a target) holding ESC, newline and other control bytes
# (C0, DEL, C1 raw and as UTF-8): every subcommand that prints them, in a
# message or in human output, prints them through kimg_print_for_terminal
# (\xHH), so no raw control byte reaches stdout or stderr.  Otherwise the
# output is qemu-img's: qemu-img prints these names raw, so its output,
# with each name replaced by its escaped form, is what kimg must print
# (kimg's one error line against qemu-img's first).
# make check: a third of the message cases, every kind of name among them
# (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/msg-cases.sh"

B=$'ctl\n\x1b[31mFAKE\x01\x9b\xc2\x9b.qcow2'    # an existing backing file
M=$'gone\n\x1b]0;title\x07\x7f.qcow2'            # a missing one
SN=$'sn\x1b[31m\nX\xc2\x9b'                      # a snapshot name
BM=$'bm\x1b[31m\nX\xc2\x9b'                      # a bitmap name
export B M SN BM
mkdir -p "$T/tpl" && (
    cd "$T/tpl" || exit 1
    qemu-img create -q -f qcow2 "$B" 1M
    qemu-io -c 'write -P 1 0 64k' "$B" > /dev/null
    qemu-img create -q -f qcow2 -b "$B" -F qcow2 have.qcow2 1M
    qemu-img create -q -f qcow2 -u -b "$M" -F qcow2 miss.qcow2 1M
    qemu-img create -q -f qcow2 s.qcow2 1M
    qemu-img snapshot -c "$SN" s.qcow2
    cp s.qcow2 snbad.qcow2   # the snapshot's L1 table offset made unaligned
    so=$(get_be 8 snbad.qcow2 64)
    put_be 8 snbad.qcow2 "$so" $(( $(get_be 8 snbad.qcow2 "$so") + 512 ))
    qemu-img create -q -f qcow2 bm.qcow2 1M
    qemu-img bitmap --add bm.qcow2 "$BM"
    qemu-img create -q -f raw r.raw 1M
    qemu-img create -q -f raw r2.raw 2M
)

has_ctl() { LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f\x80-\x9f]' "$1"; }
# qemu-img's output with each name escaped as kimg escapes it
escape_names() {
    $PY - "$1" <<'PYEOF'
import os, sys
def esc(b):
    out, i = bytearray(), 0
    while i < len(b):
        c = b[i]
        n = 1
        if c >= 0x80:
            n = 0
            for ln, lo, hi in ((2, 0xc2, 0xdf), (3, 0xe0, 0xef), (4, 0xf0, 0xf4)):
                if lo <= c <= hi:
                    n = ln
            try:
                b[i:i + n].decode("utf-8") if n else None
            except UnicodeDecodeError:
                n = 0
        if c < 0x20 or c == 0x7f or (n == 0 and c < 0xa0):
            out += b"\\x%02x" % c; i += 1
        elif n == 2 and c == 0xc2 and b[i + 1] < 0xa0:
            out += b"\\x%02x\\x%02x" % (c, b[i + 1]); i += 2
        else:
            n = max(n, 1); out += b[i:i + n]; i += n
    return bytes(out)
data = open(sys.argv[1], "rb").read()
for k in ("B", "M", "SN", "BM"):
    name = os.environb[k.encode()]
    data = data.replace(name, esc(name))
sys.stdout.buffer.write(data)
PYEOF
}

# esc_case NAME ARGS: kimg prints no raw control byte, and what qemu-img
# prints with the names escaped (stdout whole, stderr's first line)
esc_case() {
    sampled || return 0
    local name=$1 args=$2
    msg_run_case "$args"
    ok "$name: no raw control byte on stdout" eval '! has_ctl "$T/k.out"'
    ok "$name: no raw control byte on stderr" eval '! has_ctl "$T/k.err"'
    is "$MSG_KRC" "$MSG_QRC" "$name: exit code as qemu-img's"
    # kimg pads a table's columns by the escaped name's width, qemu-img by
    # the raw name's: runs of blanks compare as one
    is "$(tr -s ' ' < "$T/k.out")" "$(escape_names "$T/q.out" | tr -s ' ')" \
       "$name: stdout as qemu-img's, names escaped"
    local lines=1
    [ "$(wc -l < "$T/k.err")" -gt 1 ] && lines=1000
    is "$(< "$T/k.err")" "$(escape_names "$T/q.err" | head -$lines)" \
       "$name: message as qemu-img's (first line), names escaped"
}

# In threes: make check takes the first of each (lib.sh sampled in
# esc_case): every kind of name, eight commands; check-slow the other two.
esc_case "info" 'info have.qcow2'
esc_case "info --backing-chain" 'info --backing-chain have.qcow2'
esc_case "info, missing backing" 'info miss.qcow2'

esc_case "info, bitmap" 'info bm.qcow2'
esc_case "info, snapshot table" 'info s.qcow2'
esc_case "map" 'map have.qcow2'

esc_case "map, missing backing" 'map miss.qcow2'
esc_case "measure, missing backing" 'measure -O qcow2 miss.qcow2'
esc_case "measure -l, no such snapshot" 'measure -O qcow2 -l "${SN}x" s.qcow2'

esc_case "check, corrupt snapshot" 'check snbad.qcow2'
esc_case "commit, missing backing" 'commit miss.qcow2'
esc_case "amend, missing backing" 'amend -o compat=0.10 miss.qcow2'

esc_case "compare" 'compare have.qcow2 r.raw'
esc_case "compare, missing backing" 'compare miss.qcow2 r.raw'
esc_case "resize, missing backing" 'resize miss.qcow2 2M'

esc_case "convert -l, no such snapshot" 'convert -l "${SN}x" -O raw s.qcow2 out.raw'
esc_case "convert, missing backing" 'convert -O raw miss.qcow2 out.raw'
esc_case "snapshot -l, missing backing" 'snapshot -l miss.qcow2'

esc_case "snapshot -l" 'snapshot -l s.qcow2'
esc_case "snapshot -d, no such snapshot" 'snapshot -d "${SN}x" s.qcow2'
esc_case "snapshot -a, no such snapshot" 'snapshot -a "${SN}x" s.qcow2'

esc_case "rebase -u, no format" 'rebase -u -b "$M" miss.qcow2'
esc_case "rebase, missing backing" 'rebase -b r.raw -F raw miss.qcow2'

# checksum: no qemu-img twin; its message is the one map prints
msg_run_case 'checksum miss.qcow2'
ok "checksum, missing backing: no raw control byte" eval '! has_ctl "$T/k.err" && ! has_ctl "$T/k.out"'
msg_run_case 'map miss.qcow2'
want=$(escape_names "$T/q.err" | head -1)
msg_run_case 'checksum miss.qcow2'
is "$(< "$T/k.err")" "$want" "checksum, missing backing: the message map prints"

# clone: names and paths from the domain XML (XML 1.0 holds no C0 byte but
# tab, newline and CR; C1 and DEL it does hold)
. "$KIMG_SRC/tests/images/domains/setup.sh"
clone_fixture tiny > /dev/null
cd "$T"
sed "s|<name>tiny</name>|<name>ti\&#x9b;ny</name>|" vm/tiny.xml > c1.xml
kimg clone --original-xml c1.xml --auto-clone
is "$RC" 0 "clone, a C1 control in the domain name: exit 0"
is "$(< err)" "Clone 'ti\\xc2\\x9bny-clone' created successfully." "its name escaped on stderr"
grep -q $'<name>ti\xc2\x9bny-clone</name>' out
ok "the XML keeps the character (a document, not terminal text)" test $? = 0
sed "s|tiny.img'|ti\&#x9b;ny\&#x7f;\&#10;.img'|" vm/tiny.xml > c2.xml
kimg clone --original-xml c2.xml -n c2 --auto-clone -f vm/c2.img
is "$RC" 1 "clone, a disk path with C1, DEL and newline that does not exist: exit 1"
ok "no raw control byte on stderr" eval '! has_ctl err'
like "$(< err)" "ti\\\\xc2\\\\x9bny\\\\x7f\\\\x0a\\.img does not exist" "the path escaped in the message"
sed "s|<target dev='vda'|<target dev='v\&#x9b;da'|" vm/tiny.xml > c3.xml
run script -qec "$KIMG clone --original-xml c3.xml -n c3 --auto-clone" /dev/null
is "$RC" 0 "clone, a C1 control in a target, progress shown on a terminal"
tr '\r' '\n' < out | grep -a '^Cloning' > progress.txt   # (the XML follows it)
ok "no raw control byte in the progress line" eval '! has_ctl progress.txt'
like "$(< progress.txt)" "Cloning v\\\\xc2\\\\x9bda: 100.00%" "the target escaped"
done_testing
