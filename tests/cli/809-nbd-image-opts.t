#!/bin/bash
# --image-opts / --target-image-opts with file.driver=nbd, as qemu-img 7.2
# takes them: file.server.type=unix|inet with server.path or server.host
# and server.port, the legacy file.path / file.host / file.port,
# file.export, file.tls-creds (kimg makes no TLS objects: qemu's "No TLS
# credentials" message).  info, map, compare, checksum and convert (as
# source and, with -n, as target) against qemu-img over the same exports:
# stdout and exit codes byte for byte, qemu-img's messages for the
# option errors.  An image read this way follows the NBD rules for the
# files it names (807).
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/nbd.sh"

qemu-img create -q -f qcow2 img.qcow2 16M
qemu-io -c 'write -P 0x11 0 1M' -c 'write -P 0x22 9M 64k' img.qcow2 > /dev/null
qemu-img convert -O raw img.qcow2 img.raw
cp img.raw ref.raw; cp img.qcow2 src.qcow2      # copies the servers do not lock
qnbd q.sock raw img.qcow2 -r                    # the qcow2 file's bytes
qnbd named.sock raw img.raw -x disk             # a named export
U="file.driver=nbd,file.server.type=unix,file.server.path=$T/q.sock"
N="file.driver=nbd,file.server.type=unix,file.server.path=$T/named.sock,file.export=disk"

for o in "$U" "driver=qcow2,$U" "driver=raw,$U,file.export=" "file.driver=nbd,file.path=$T/q.sock" \
         "driver=raw,$N" "$N,read-only=on" "driver=qcow2,$U,file.cache.direct=on,file.node-name=n1"; do
    oracle "info --image-opts $o" info --output=json --image-opts "$o"
done
oracle "info (human)" info --image-opts "driver=qcow2,$U"
oracle "map" map --output=json --image-opts "driver=qcow2,$U"
oracle "map (human)" map --image-opts "$N"
oracle "check" check --output=json --image-opts "driver=qcow2,$U"
oracle "measure" measure --output=json -O qcow2 --image-opts "driver=qcow2,$U"
oracle "compare two exports" compare --image-opts "driver=qcow2,$U" "driver=raw,$N"
oracle "compare -s" compare -s --image-opts "driver=qcow2,$U" "driver=raw,$N"
kimg checksum --image-opts "driver=qcow2,$U"
is "$(cut -d' ' -f1 out)" "$("$KIMG" checksum ref.raw | cut -d' ' -f1)" "checksum --image-opts"
kimg convert --image-opts -O raw "driver=qcow2,$U" out.raw
is "$RC" 0 "convert from --image-opts"
ok "  the export's data" cmp -s out.raw ref.raw

# TCP, the server.* form and the legacy host/port
tcpnbd tcp file img.raw || { done_testing; exit 0; }
for o in "file.driver=nbd,file.server.type=inet,file.server.host=127.0.0.1,file.server.port=$NBD_PORT" \
         "driver=raw,file.driver=nbd,file.host=127.0.0.1,file.port=$NBD_PORT"; do
    oracle "info (TCP) $o" info --output=json --image-opts "$o"
    oracle "compare (TCP) $o" compare --image-opts "$o" "driver=raw,$N"
done

# convert -n --target-image-opts into a writable export (twins: one for
# qemu-img, one for kimg)
qemu-img create -q -f raw tq.raw 16M; qemu-img create -q -f raw tk.raw 16M
qemu-io -f raw -c 'write -P 0xee 0 16M' tq.raw > /dev/null; cp tq.raw tk.raw
kitnbd tq.sock file tq.raw; kitnbd tk.sock file tk.raw
qimg convert -n -f qcow2 --target-image-opts src.qcow2 \
    "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=$T/tq.sock"
kimg convert -n -f qcow2 --target-image-opts src.qcow2 \
    "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=$T/tk.sock"
is "$RC" "$QRC" "convert -n --target-image-opts into an export: qemu-img's exit code"
nbd_stop tq.sock; nbd_stop tk.sock
ok "  the same bytes as qemu-img's export" cmp -s tk.raw tq.raw
ok "  the source's data" qemu-img compare -q -f raw -F raw tk.raw ref.raw
# a qcow2 target formatted on an export, written through --target-image-opts
kitnbd q2.sock memory 16M
kimg create -q -f qcow2 "$(nuri q2.sock)" 16M
kimg convert -n -f raw --target-image-opts ref.raw \
    "driver=qcow2,file.driver=nbd,file.server.type=unix,file.server.path=$T/q2.sock"
is "$RC" 0 "convert -n into a qcow2 on an export"
oracle "  reads as the source (qemu-img compare)" compare "$(nuri q2.sock)" ref.raw
qimg convert -n -f raw --target-image-opts ref.raw "driver=raw,$U"
kimg convert -n -f raw --target-image-opts ref.raw "driver=raw,$U"
err_line "a read-only export as a target: refused, one line"
is "$RC" "$QRC" "  qemu-img's exit code"

# the option errors, in qemu-img's order and words
S="file.server.path=$T/q.sock"
for o in "file.driver=nbd" "file.driver=nbd,file.port=1" "file.driver=nbd,$S" \
         "file.driver=nbd,file.server.type=foo" "file.driver=nbd,file.server.type=unix" \
         "file.driver=nbd,file.server.type=inet,file.server.host=127.0.0.1" \
         "file.driver=nbd,file.server.type=inet,file.server.port=1" \
         "file.driver=nbd,file.path=$T/q.sock,file.host=x" "$U,file.path=$T/q.sock" \
         "$U,file.tls-creds=tls0" "$U,file.foo=1" "$U,file.filename=x" "$U,file.locking=off" \
         "file.driver=nbd,file.filename=nbd+unix://?socket=$T/q.sock" \
         "file.driver=nbd,file.server.type=unix,file.server.path=$T/none.sock"; do
    qimg info --image-opts "$o"; kimg info --image-opts "$o"
    is "$RC/$(< err)" "$QRC/$(sed 's/^qemu-img:/kimg:/' qerr)" "error as qemu-img's: $o"
done
kimg info --image-opts "$U,file.export=nope"
err_line "a missing export: one line"
kimg info --image-opts "file.driver=nbd,file.server.type=vsock,file.server.cid=3,file.server.port=1"
err_line "vsock: refused"
like "$(< err)" "not supported" "  as not supported"
kimg info --image-opts "$U,file.reconnect-delay=5"
err_line "reconnect-delay: refused (kimg does not reconnect)"
oracle "reconnect-delay=0 is qemu's default" info --output=json --image-opts "$U,file.reconnect-delay=0"

# an image read this way that names a local backing file (807's rule)
qemu-img create -q -f qcow2 -u -b "$T/ref.raw" -F raw ov.qcow2 16M
kitnbd ov.sock -r file ov.qcow2
O="driver=qcow2,file.driver=nbd,file.server.type=unix,file.server.path=$T/ov.sock"
oracle "info: the backing name is shown" info --output=json --image-opts "$O"
kimg compare --image-opts "$O" "driver=raw,$N"
err_line "a local backing file named over NBD is refused"
like "$(< err)" "allow-nbd-local-backing" "  the message names the option"
kimg compare --allow-nbd-local-backing --image-opts "$O" "driver=raw,$N"
is "$RC" 0 "  followed with --allow-nbd-local-backing"
kimg compare --image-opts "$O,backing.file.filename=$T/ref.raw" "driver=raw,$N"
is "$RC" 0 "  a backing.file.filename the user gives is opened"
done_testing
