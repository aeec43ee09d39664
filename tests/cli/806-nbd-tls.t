#!/bin/bash
# TLS: nbds+unix:// names with a user name and tls-psk-file= (typed by the
# user) against nbdkit --tls=require --tls-psk: info, checksum, convert
# from and into exports, the data as nbdcopy reads it over the same URI;
# a plain name to a TLS-only server, an unknown user, a missing key file
# and TLS parameters on a plain name fail with one line.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/nbd.sh"
require nbdcopy xxd

printf 'alice:%s\n' "$(head -c 32 /dev/urandom | xxd -p -c 64)" > keys.psk
head -c 16M /dev/urandom > d.raw
qemu-img create -q -f qcow2 q.qcow2 16M
qemu-io -c 'write -P 0x11 0 1M' -c 'write -P 0x22 9M 64k' q.qcow2 > /dev/null
qemu-img convert -O raw q.qcow2 q.raw
kitnbd t.sock --tls=require --tls-psk="$T/keys.psk" file d.raw
kitnbd w.sock --tls=require --tls-psk="$T/keys.psk" memory 16M
TU="nbds+unix://alice@/?socket=$T/t.sock&tls-psk-file=$T/keys.psk"
WU="nbds+unix://alice@/?socket=$T/w.sock&tls-psk-file=$T/keys.psk"

kimg info --output=json "$TU"
is "$RC" 0 "info over TLS"
like "$(< out)" "\"filename\": \"nbds\\+unix://\\?socket=$T/t.sock\"" "  shown as nbds+unix://?socket=..."
kimg convert -O raw "$TU" o.raw
is "$RC" 0 "convert from a TLS export"
ok "  reads as the file served" cmp -s o.raw d.raw
nbdcopy "$TU" n.raw
ok "  and as nbdcopy's copy" cmp -s o.raw n.raw
kimg checksum "$TU"
is "$RC $(cut -d' ' -f1 out)" "0 $("$KIMG" checksum d.raw | cut -d' ' -f1)" "checksum over TLS"
kimg convert -n -O raw q.qcow2 "$WU"
is "$RC" 0 "convert -n into a TLS export"
nbdcopy "$WU" w.raw
ok "  nbdcopy reads back the source" cmp -s w.raw q.raw

kimg info "nbd+unix:///?socket=$T/t.sock"
err_line "a plain name to a TLS-only server"
kimg info "nbds+unix://bob@/?socket=$T/t.sock&tls-psk-file=$T/keys.psk"
err_line "an unknown TLS user"
kimg info "nbds+unix://alice@/?socket=$T/t.sock&tls-psk-file=$T/none.psk"
err_line "a missing key file"
kimg info "nbd+unix:///?socket=$T/t.sock&tls-psk-file=$T/keys.psk"
err_line "tls-psk-file= on a plain name"
like "$(< err)" "nbds" "  the message says TLS needs nbds"
done_testing
