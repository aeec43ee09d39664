#!/bin/bash
# TCP names (nbd://HOST:PORT/EXPORT, qemu's nbd:HOST:PORT[:exportname=])
# shown as qemu-img shows them, and the connections kimg opens: one per
# worker (more than one) when the server allows multi-conn, exactly one
# when it does not, counted by nbdkit's log filter; extra connections that
# the server refuses are no error.  The copies read as
# the file served either way.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/nbd.sh"
require nbdinfo

head -c 32M /dev/urandom > d.raw
cp d.raw d2.raw
tcpnbd tcp --filter=exportname file d.raw exportname=exp default-export=exp \
    || skip_all "no TCP port for nbdkit"
P=$NBD_PORT
for n in "nbd://127.0.0.1:$P/exp" "nbd:127.0.0.1:$P:exportname=exp" "nbd://127.0.0.1:$P"; do
    oracle "info --output=json $n" info --output=json "$n"
    oracle "info $n" info "$n"
    oracle "compare $n" compare "$n" d2.raw
done
qimg info "nbd://127.0.0.1:$P:x/"; kimg info "nbd://127.0.0.1:$P:x/"
is "$RC" "$QRC" "a bad port: exit code as qemu-img's"
err_line "a bad port"

for mode in emulate disable; do
    rm -f log.$mode
    kitnbd m.sock --filter=multi-conn --filter=log file d2.raw multi-conn-mode=$mode \
        logfile="$T/log.$mode"
    kimg convert -O raw "$(nuri m.sock)" o.raw
    is "$RC" 0 "convert from a server with multi-conn=$mode"
    ok "  reads as the file served" cmp -s o.raw d.raw
    n=$(grep -c 'Connect ' log.$mode)
    if [ $mode = emulate ]; then
        ok "  more than one connection ($n)" test "$n" -gt 1
    else
        is "$n" 1 "  one connection"
    fi
    nbd_stop m.sock
done
# a server that promises multi-conn but takes one client: the extra
# connections are refused, the copy goes on over the first
kitnbd lim.sock --filter=multi-conn --filter=limit file d2.raw multi-conn-mode=emulate limit=1
kimg convert -O raw "$(nuri lim.sock)" o2.raw
is "$RC" 0 "convert when extra connections are refused"
ok "  reads as the file served" cmp -s o2.raw d.raw
done_testing
