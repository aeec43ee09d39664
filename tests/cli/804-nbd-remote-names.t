#!/bin/bash
# NBD names that images hold (backing and external data files): info
# shows them without connecting (as qemu-img info); a command that would
# read them refuses by default (qemu-img follows them; the README's NBD
# section says why kimg does not), follows a TCP one with
# --allow-remote-backing, and never one whose parameters would open a local
# file (a unix socket, tls-psk-file=, tls-certificates=), nor any under
# --untrusted.  Names typed by the user may do all of that.  Image-supplied
# names in messages are escaped.  An image on an export takes no relative
# backing name (qemu: no base directory for NBD nodes).
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/nbd.sh"
require nbdinfo python3

qemu-img create -q -f raw base.raw 16M
qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0x6b 8M 1M' base.raw > /dev/null
cp base.raw base-copy.raw
qnbd u.sock raw base.raw
tcpnbd tcp file base-copy.raw || { skip_all "no TCP port for nbdkit"; }
TCPU="nbd://127.0.0.1:$NBD_PORT/"
UNIXU=$(nuri u.sock)

mkover() { qemu-img create -q -f qcow2 -u -b "$2" -F raw "$1" 16M; qemu-io -c 'write -P 0x77 4M 64k' "$1" > /dev/null 2>&1; }
mkover over-tcp.qcow2 "$TCPU"
mkover over-unix.qcow2 "$UNIXU"
mkover over-psk.qcow2 "nbds://127.0.0.1:$NBD_PORT/?tls-psk-file=/etc/passwd"
mkover over-legacy.qcow2 "nbd:unix:$T/u.sock"
mkover over-esc.qcow2 "$(printf 'nbd://h\033[31mx:1/e')"
# the overlay's data as a local file, the oracle for what follows
qemu-img convert -O raw over-tcp.qcow2 want.raw

for f in over-tcp over-unix over-psk over-legacy; do
    oracle "info $f (named, not opened)" info --output=json $f.qcow2
done
for f in over-tcp over-unix over-legacy; do
    kimg convert -O raw $f.qcow2 o.raw
    err_line "convert $f: not followed by default"
    like "$(< err)" "allow-remote-backing" "  the message names the option"
    ok "  no output" test ! -e o.raw
    kimg compare $f.qcow2 want.raw
    err_line "compare $f: not followed by default"
done
kimg convert --allow-remote-backing -O raw over-tcp.qcow2 o.raw
is "$RC" 0 "convert --allow-remote-backing: a TCP backing file is followed"
ok "  reads as qemu-img's copy" cmp -s o.raw want.raw
kimg checksum --allow-remote-backing over-tcp.qcow2
is "$(cut -d' ' -f1 out)" "$("$KIMG" checksum want.raw | cut -d' ' -f1)" "checksum --allow-remote-backing"
kimg convert --allow-remote-backing --untrusted -O raw over-tcp.qcow2 o2.raw
err_line "--untrusted refuses it even with --allow-remote-backing"
for f in over-unix over-legacy; do
    kimg compare --allow-remote-backing $f.qcow2 want.raw
    err_line "$f: a unix socket named by an image is refused even when allowed"
    like "$(< err)" "local file" "  the reason"
done
kimg compare --allow-remote-backing over-psk.qcow2 want.raw
err_line "tls-psk-file= named by an image is refused even when allowed"
like "$(< err)" "tls-psk-file" "  the reason"
kimg compare --allow-remote-backing over-esc.qcow2 want.raw
err_line "an image's NBD name with a control character"
ok "  printed escaped" sh -c "! grep -q \"$(printf '\033')\" err"

# the same names typed by the user are used as given
oracle "a unix socket typed by the user" compare "$UNIXU" base-copy.raw
oracle "TCP typed by the user" compare "$TCPU" base-copy.raw
kimg info "nbds://127.0.0.1:$NBD_PORT/?tls-psk-file=$T/none.psk"
err_line "tls-psk-file= typed by the user is used (a missing file is an error)"
like "$(< err)" "none.psk" "  libnbd read that file"

# an external data file named by the image as an NBD name
qemu-img create -q -f raw data.raw 16M
qemu-img create -q -f qcow2 -o data_file=data.raw dq.qcow2 16M
python3 - dq.qcow2 "$TCPU" <<'PY'
import struct, sys
p, name = sys.argv[1], sys.argv[2].encode()
b = bytearray(open(p, 'rb').read())
off = struct.unpack('>I', b[100:104])[0]
exts, o = [], off
while True:
    t, n = struct.unpack('>II', b[o:o + 8])
    if t == 0:
        break
    exts.append((t, bytes(b[o + 8:o + 8 + n])))
    o += 8 + (n + 7) // 8 * 8
out = b''
for t, d in exts:
    d = name if t == 0x44415441 else d
    out += struct.pack('>II', t, len(d)) + d + b'\0' * ((8 - len(d) % 8) % 8)
out += b'\0' * 8
b[off:off + len(out)] = out
open(p, 'wb').write(b)
PY
oracle "info: an NBD data file is named" info --output=json dq.qcow2
kimg convert -O raw dq.qcow2 o3.raw
err_line "an NBD data file is not followed by default"
kimg convert --untrusted --allow-remote-backing -O raw dq.qcow2 o3.raw
err_line "nor under --untrusted"
# an image on an export naming a local backing file: a relative name has
# no folder to be taken in (qemu's words); an absolute one is refused
# unless allowed (807)
kitnbd ov.sock memory 16M
OV=$(nuri ov.sock)
qemu-img create -q -f qcow2 -u -b base-copy.raw -F raw "$OV" 16M
oracle "info: a relative backing name on an export" info --output=json "$OV"
oracle "info (human): the same" info "$OV"
qimg compare "$OV" base-copy.raw; kimg compare "$OV" base-copy.raw
is "$RC" "$QRC" "compare: a relative backing name on an export: exit code as qemu-img's"
is "$(< err)" "$(sed 's/^qemu-img:/kimg:/' qerr)" "  qemu-img's message"
qemu-img create -q -f qcow2 -u -b "$T/base-copy.raw" -F raw "$OV" 16M
oracle "info: an absolute backing name on an export" info --output=json "$OV"
kimg compare "$OV" base-copy.raw
err_line "compare: an absolute backing name on an export is refused by default"
kimg compare --allow-nbd-local-backing "$OV" base-copy.raw
is "$RC" 0 "  and followed with --allow-nbd-local-backing, as qemu-img follows it"
done_testing
