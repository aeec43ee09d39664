#!/bin/bash
# Local files named by images read over NBD: an export's bytes come from
# whoever runs the server, so a backing or external data file it names
# as a local path (absolute: /etc/passwd, a file: name; relative names
# have no folder, as qemu-img says) is refused by default with one line
# naming --allow-nbd-local-backing, followed with that option (then read
# as qemu-img reads it), and always refused under --untrusted.  The same
# holds one step down a chain: a local overlay whose NBD backing file
# (allowed) names a local base.  qemu-img follows all of these; the
# README's NBD section says why kimg does not.  info shows the names
# without opening them, as qemu-img.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/nbd.sh"
require python3

qemu-img create -q -f raw base.raw 16M
qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0x6b 8M 1M' base.raw > /dev/null
mkover() {   # FILE BACKING [FMT]: an overlay with one cluster of its own
    qemu-img create -q -f qcow2 -u -b "$2" -F "${3:-raw}" "$1" 16M
    qemu-io -c 'write -P 0x77 4M 64k' "$1" > /dev/null 2>&1
}
mkover abs.qcow2 "$T/base.raw"
mkover passwd.qcow2 /etc/passwd
mkover filep.qcow2 "file:$T/base.raw"
mkover rel.qcow2 base.raw
mkover dotdot.qcow2 ../../../../etc/passwd
mkover esc.qcow2 "$(printf '/tmp/\033[31mx')"
for f in abs passwd filep rel dotdot esc; do kitnbd $f.sock -r file $f.qcow2; done
# the oracle: qemu-img follows the absolute name
qemu-img convert -O raw "$(nuri abs.sock)" want.raw

for f in abs passwd filep esc; do
    U=$(nuri $f.sock)
    oracle "info $f: the name is shown, not opened" info --output=json "$U"
    kimg convert -O raw "$U" o.raw
    err_line "convert $f: a local backing file named over NBD is refused"
    like "$(< err)" "allow-nbd-local-backing" "  the message names the option"
    ok "  no output" test ! -e o.raw
    kimg compare "$U" want.raw
    err_line "compare $f: refused"
    is "$RC" 2 "  exit code 2 (an error, not a difference)"
done
ok "an image-supplied name is printed escaped" sh -c "! grep -q \"$(printf '\033')\" err"
kimg checksum "$(nuri passwd.sock)"
err_line "checksum: /etc/passwd named over NBD is refused"
like "$(< err)" "/etc/passwd" "  the message names the file"
kimg info --backing-chain "$(nuri abs.sock)"
err_line "info --backing-chain: refused (it would open the file)"
kimg map "$(nuri abs.sock)"
err_line "map: refused"

# relative names: no folder to take them in, even when allowed (qemu's words)
for f in rel dotdot; do
    U=$(nuri $f.sock)
    oracle "info $f" info --output=json "$U"
    qimg compare "$U" want.raw
    kimg compare --allow-nbd-local-backing "$U" want.raw
    is "$RC" "$QRC" "compare $f (allowed): qemu-img's exit code"
    is "$(< err)" "$(sed 's/^qemu-img:/kimg:/' qerr)" "  qemu-img's message"
done

# the opt-in
U=$(nuri abs.sock)
kimg convert --allow-nbd-local-backing -O raw "$U" o.raw
is "$RC" 0 "convert --allow-nbd-local-backing: followed"
ok "  reads as qemu-img's copy" cmp -s o.raw want.raw
kimg compare --allow-nbd-local-backing "$(nuri filep.sock)" want.raw
is "$RC" 0 "a file: name is followed with the option"
kimg checksum --allow-nbd-local-backing "$U"
is "$(cut -d' ' -f1 out)" "$("$KIMG" checksum want.raw | cut -d' ' -f1)" "checksum with the option"
kimg convert --allow-nbd-local-backing --untrusted -O raw "$U" o2.raw
err_line "--untrusted refuses it even with the option"
ok "  no output" test ! -e o2.raw
kimg convert --allow-remote-backing -O raw "$U" o2.raw
err_line "--allow-remote-backing alone does not allow it"

# an external data file named over NBD by an absolute path
qemu-img create -q -f raw data.raw 16M
qemu-img create -q -f qcow2 -o data_file="$T/data.raw" dq.qcow2 16M
qemu-io -c 'write -P 0x33 0 2M' dq.qcow2 > /dev/null
qemu-img convert -O raw dq.qcow2 dwant.raw
kitnbd dq.sock -r file dq.qcow2
oracle "info: a local data file named over NBD" info --output=json "$(nuri dq.sock)"
kimg convert -O raw "$(nuri dq.sock)" o3.raw
err_line "an external data file named over NBD is refused"
like "$(< err)" "external data file" "  the message says which file"
kimg convert --allow-nbd-local-backing -O raw "$(nuri dq.sock)" o3.raw
is "$RC" 0 "  followed with the option"
ok "  the data as qemu-img reads it" cmp -s o3.raw dwant.raw

# one step down a chain: local top -> NBD middle (TCP, allowed) -> local base
if tcpnbd mid -r file abs.qcow2; then
qemu-img create -q -f qcow2 -u -b "nbd://127.0.0.1:$NBD_PORT/" -F qcow2 top.qcow2 16M
qemu-img convert -O raw top.qcow2 twant.raw
kimg convert --allow-remote-backing -O raw top.qcow2 o4.raw
err_line "a local base named by an NBD backing file: refused"
like "$(< err)" "allow-nbd-local-backing" "  the message names the option"
kimg convert --allow-remote-backing --allow-nbd-local-backing -O raw top.qcow2 o4.raw
is "$RC" 0 "  followed with both options"
ok "  as qemu-img reads it" cmp -s o4.raw twant.raw
fi

# names the user gives are the user's: convert -B and create -b onto an
# export write the local name and use it (as qemu-img)
kitnbd mem.sock memory 16M
M=$(nuri mem.sock)
qemu-img create -q -f raw src-top.raw 16M
qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0x6b 8M 1M' -c 'write -P 0x77 4M 64k' \
    src-top.raw > /dev/null
kimg convert -O qcow2 -B "$T/base.raw" -F raw src-top.raw "$M"
is "$RC" 0 "convert -B /abs/base onto an export: the user's name is used"
kimg compare --allow-nbd-local-backing "$M" src-top.raw
is "$RC" 0 "  the export reads as the source through that base"
kimg compare "$M" src-top.raw
err_line "  read again later, the name is the export's: refused by default"
kimg create -q -f qcow2 -b "$T/base.raw" -F raw "$M"
is "$RC" 0 "create -b /abs/base onto an export (its size from the base)"
done_testing
