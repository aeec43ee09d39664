#!/bin/bash
# NBD exports as targets: convert -n into an existing export (raw; qcow2
# onto an export that create -f qcow2 formatted), convert without -n (the
# format created onto the export in place, old bytes overwritten: zeros
# written where the source reads zeros), an export smaller than the data
# (one error line, as qemu-img fails), a read-only export, and servers
# without write-zeroes (nozero), with a minimum block size, with several
# connections (multi-conn) and with each write delayed.  The oracle: qemu-img
# compare with the source, qemu-img check, and qemu-img doing the same.
# make check: a third of the constrained servers (nozero, multi-conn;
# lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/nbd.sh"

qemu-img create -q -f qcow2 q.qcow2 32M
qemu-io -c 'write -P 0x11 0 1M' -c 'write -P 0x22 10M 64k' -c 'write -P 0x33 20M 2M' \
    q.qcow2 > /dev/null
qemu-img convert -O raw q.qcow2 r.raw
qemu-img create -q -f raw big.raw 40M

# junk IMG SOCK: fill the export with 0x55 (so every byte must be written)
junk() { qemu-io -f raw -c "write -P 0x55 0 $2" "$1" > /dev/null; }

kitnbd mem.sock memory 32M
M=$(nuri mem.sock)
for src in q.qcow2 r.raw; do
    junk "$M" 32M
    kimg convert -n -O raw "$src" "$M"
    is "$RC" 0 "convert -n -O raw $src into the export"
    ok "  the export reads as the source" qemu_oracle_compare -f raw "$M" r.raw
done
junk "$M" 32M
kimg convert -O raw q.qcow2 "$M"
is "$RC" 0 "convert -O raw (no -n) onto the export"
ok "  the export reads as the source" qemu_oracle_compare -f raw "$M" r.raw
ok "  written in place: no temporary file left" test -z "$(ls -A "$T" | grep kimg-)"
kimg convert -O qcow2 r.raw "$M"
is "$RC" 0 "convert -O qcow2 onto the export"
ok "  qemu-img check: clean" check_clean -f qcow2 "$M"
ok "  reads as the source" qemu_oracle_compare "$M" r.raw

junk "$M" 32M
kimg create -q -f qcow2 "$M" 32M
is "$RC" 0 "create -f qcow2 onto the export"
oracle "  info as qemu-img's" info --output=json "$M"
kimg convert -n -O qcow2 q.qcow2 "$M"
is "$RC" 0 "convert -n -O qcow2 into it"
ok "  qemu-img check: clean" check_clean -f qcow2 "$M"
ok "  reads as the source" qemu_oracle_compare "$M" q.qcow2
kimg checksum "$M"
is "$(cut -d' ' -f1 out)" "$("$KIMG" checksum q.qcow2 | cut -d' ' -f1)" "  checksum as the source's"

# too small: qemu-img's exit code, one line
qimg convert -n -O raw big.raw "$M"; kimg convert -n -O raw big.raw "$M"
is "$RC" "$QRC" "convert -n into a smaller export: exit code as qemu-img's"
err_line "convert -n into a smaller export"
qimg convert -O raw big.raw "$M"; kimg convert -O raw big.raw "$M"
is "$RC" "$QRC" "convert into a smaller export: exit code as qemu-img's"
err_line "convert into a smaller export"
like "$(< err)" "Cannot grow NBD nodes" "  qemu-img's reason"

# a read-only export
kitnbd ro.sock -r memory 32M
kimg convert -n -O raw r.raw "$(nuri ro.sock)"
err_line "convert -n into a read-only export"

# servers that lack things, or have constraints
# (blocksize-policy refuses any request off its 4 KiB blocks: kimg's own
# small writes, qcow2 headers and tables, go as read-modify-write)
for filt in "--filter=nozero" "--filter=blocksize minblock=4096 maxdata=65536" \
            "--filter=blocksize-policy blocksize-minimum=4096 blocksize-maximum=1M blocksize-error-policy=error" \
            "--filter=multi-conn multi-conn-mode=emulate" "--filter=delay wdelay=1ms"; do
    sampled || continue         # check: a third of the servers; check-slow: the rest
    # shellcheck disable=SC2086
    kitnbd f.sock ${filt%% *} memory 32M ${filt#* }
    F=$(nuri f.sock)
    junk "$F" 32M
    kimg convert -n -O raw q.qcow2 "$F"
    is "$RC" 0 "convert -n ($filt)"
    ok "  reads as the source" qemu_oracle_compare -f raw "$F" r.raw
    kimg convert -O qcow2 q.qcow2 "$F"
    is "$RC" 0 "convert -O qcow2 ($filt)"
    ok "  qemu-img check: clean" check_clean -f qcow2 "$F"
    ok "  reads as the source" qemu_oracle_compare "$F" r.raw
    nbd_stop f.sock
done

# qemu-nbd serving a qcow2 file as qcow2 (the export is the guest view)
cp q.qcow2 target.qcow2
qemu-img create -q -f qcow2 target.qcow2 32M
qnbd t.sock qcow2 target.qcow2
kimg convert -n -O raw q.qcow2 "$(nuri t.sock)"
is "$RC" 0 "convert -n into qemu-nbd's qcow2 export"
nbd_stop t.sock
ok "  the qcow2 file reads as the source" qemu_oracle_compare target.qcow2 r.raw
done_testing
