#!/bin/bash
# convert --salvage (Proxmox passes it; qemu-img 7.2 has it): a source
# range that fails to read is read again 512 bytes at a time, what still
# fails becomes zeros, and each such 512-byte piece gets qemu-img's line
# "warning: error while reading offset N: STRERROR" (N: offset in that
# source; none with -q); exit 0.  Oracle: qemu-img 7.2 on the same
# sources: a qcow2 whose compressed cluster holds garbage (a local read
# error), and an NBD export whose reads of one range fail (nbdkit's sh
# plugin, a script below).  Without --salvage the copy fails as before.
. "$(dirname "$0")/lib.sh"
require nbdkit

qemu-img create -q -f qcow2 c.qcow2 1M
qemu-io -f qcow2 -c "write -c -P 9 64k 64k" -c "write -P 5 256k 64k" -c "write -c -P 7 512k 64k" \
    c.qcow2 > /dev/null
# the first compressed cluster's data: garbage (the L2 entry's offset bits)
$PY - <<'PY'
import struct
f = open('c.qcow2', 'r+b'); h = f.read(104)
l1 = struct.unpack('>Q', h[40:48])[0]
f.seek(l1); l2 = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
f.seek(l2 + 8); e = struct.unpack('>Q', f.read(8))[0]
f.seek(e & ((1 << 54) - 1)); f.write(b'\xff' * 64)
PY

# salv NAME ARGS...: kimg and qemu-img convert --salvage ARGS into kX / qX
# (the last argument is replaced); exit code, content and the warnings
salv() {
    local name=$1; shift
    rm -f kX qX
    kimg convert "$@" kX
    qimg convert "$@" qX
    is "$RC" "$QRC" "$name: exit code as qemu-img's ($QRC)"
    ok "$name: content as qemu-img's" qemu_oracle_compare kX qX
    # qemu-img's coroutines may print in another order: compare sorted
    is "$(grep -v '^nbdkit' "$T/err" | sed 's/^kimg: //' | sort)" \
       "$(grep -v '^nbdkit' "$T/qerr" | sed 's/^qemu-img: //' | sort)" "$name: warnings as qemu-img's"
    is "$(grep -c 'warning: error while reading offset' "$T/err")" "${EXPECT_LINES:-128}" \
       "$name: one warning per unreadable 512 bytes"
}
salv "qcow2 -> raw" --salvage -f qcow2 -O raw c.qcow2
salv "qcow2 -> qcow2" --salvage -f qcow2 -O qcow2 c.qcow2
salv "qcow2 -> qcow2 -c" --salvage -c -f qcow2 -O qcow2 c.qcow2
EXPECT_LINES=0 salv "-q: no warnings" --salvage -q -f qcow2 -O raw c.qcow2
salv "-m 1" --salvage -m 1 -f qcow2 -O raw c.qcow2
EXPECT_LINES=256 salv "two sources (offsets of each source)" --salvage -f qcow2 -O raw c.qcow2 c.qcow2
is "$(sed -n 1p "$T/err")" "kimg: warning: error while reading offset 65536: Input/output error" \
   "two sources: the first warning's exact text"
qio_ok() { qemu-io "$@" > "$T/qio" 2>&1 && ! grep -q "Pattern verification failed" "$T/qio"; }
ok "the readable data is copied" qio_ok -f raw -c "read -P 5 256k 64k" -c "read -P 7 512k 64k" \
   -c "read -P 0 64k 64k" kX

# without --salvage: the copy fails, no target
rm -f kX
kimg convert -f qcow2 -O raw c.qcow2 kX
is "$RC" 1 "no --salvage: exit 1"
err_line "no --salvage"
ok "no --salvage: no target" [ ! -e kX ]

for o in "-C"; do
    rm -f kX qX
    oracle "--salvage $o" convert --salvage $o -f qcow2 -O raw c.qcow2 kX
    is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" "--salvage $o: qemu-img's refusal"
done

# an NBD export whose reads touching [16k, 20k) fail with EIO (small:
# qemu-img reads each 512 bytes of a failed request again, one process
# of the script each)
head -c 64k /dev/urandom > r.raw
cat > bad.sh <<'SH'
#!/bin/bash
case "$1" in
  get_size) stat -c %s "$BADDIR/r.raw" ;;
  pread) if [ $(($4 + $3)) -gt 16384 ] && [ "$4" -lt 20480 ]; then echo "EIO injected" >&2; exit 1; fi
         dd if="$BADDIR/r.raw" skip="$4" count="$3" iflag=skip_bytes,count_bytes status=none ;;
  can_write) exit 3 ;;
  *) exit 2 ;;
esac
SH
chmod +x bad.sh
rm -f "$T/bad.sock"
BADDIR=$PWD nbdkit -f -U "$T/bad.sock" --exit-with-parent sh ./bad.sh > /dev/null 2>&1 &
_tap_bg_pids="${_tap_bg_pids:-} $!"
for i in $(seq 500); do [ -S "$T/bad.sock" ] && break; nap 0.01; done
U="nbd+unix:///?socket=$T/bad.sock"
EXPECT_LINES=8 salv "NBD export with a failing range" --salvage -f raw -O raw "$U"
ok "NBD: before the range, the file's data" cmp <(head -c 16384 kX) <(head -c 16384 r.raw)
ok "NBD: the range is zeros" cmp <(tail -c +16385 kX | head -c 4096) <(head -c 4096 /dev/zero)
ok "NBD: after the range, the file's data" cmp <(tail -c +20481 kX) <(tail -c +20481 r.raw)

# an NBD export whose block status always fails: without --salvage the
# copy fails; with it each 512 bytes gets qemu-img's "error while reading
# block status at offset N" and is read as data.  qemu-img 7.2 walks the
# block status twice (a counting pass, then the copy) and so prints each
# line twice; kimg asks once and prints it once.
cat > bs.sh <<'SH'
#!/bin/bash
case "$1" in
  get_size) stat -c %s "$BADDIR/s.raw" ;;
  pread) dd if="$BADDIR/s.raw" skip="$4" count="$3" iflag=skip_bytes,count_bytes status=none ;;
  can_write) exit 3 ;;
  can_extents) exit 0 ;;
  extents) echo "EIO no status" >&2; exit 1 ;;
  *) exit 2 ;;
esac
SH
chmod +x bs.sh
head -c 8k /dev/urandom > s.raw
rm -f "$T/bs.sock"
BADDIR=$PWD nbdkit -f -U "$T/bs.sock" --exit-with-parent sh ./bs.sh > /dev/null 2>&1 &
_tap_bg_pids="${_tap_bg_pids:-} $!"
for i in $(seq 500); do [ -S "$T/bs.sock" ] && break; nap 0.01; done
U="nbd+unix:///?socket=$T/bs.sock"
rm -f kX qX
kimg convert -f raw -O raw "$U" kX
is "$RC" 1 "block status fails, no --salvage: exit 1"
err_line "block status fails, no --salvage"
rm -f kX
kimg convert --salvage -f raw -O raw "$U" kX
qimg convert --salvage -f raw -O raw "$U" qX
is "$RC" "$QRC" "block status fails, --salvage: exit code as qemu-img's ($QRC)"
ok "block status fails, --salvage: the data is read" cmp kX s.raw
is "$(sed 's/^kimg: //' "$T/err" | sort)" "$(sed 's/^qemu-img: //' "$T/qerr" | sort -u)" \
   "block status fails, --salvage: qemu-img's warnings (each once)"
is "$(grep -c 'block status at offset' "$T/err")" 16 "block status fails: one warning per 512 bytes"
got=$("$KIMG" convert --salvage -f raw -O raw "$U" /dev/stdout 2> "$T/err2" | sha256sum | cut -d' ' -f1)
is "$got" "$(sha s.raw)" "block status fails, --salvage into a pipe: the data"
ok "block status fails, --salvage into a pipe: the same warnings" cmp "$T/err" "$T/err2"
done_testing
