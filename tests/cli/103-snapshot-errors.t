#!/bin/bash
# snapshot refusals: exit code as qemu-img's, one "kimg: " line, and the
# image left exactly as it was (checksum) where kimg refuses before
# writing:
#   usage (no file, two files, mixed actions, missing argument, unknown
#   option, -U with a writing action); unknown snapshot for -a/-d; a raw
#   image; refcount_bits=1 (no cluster can be shared: qemu-img leaks a
#   cluster there, kimg leaves the image as it was) and refcounts that
#   would overflow 2 bits; an external data file; persistent bitmaps
#   (-a refused as qemu-img refuses it, -c/-d keep disabled bitmaps); the
#   corrupt bit; an image another process holds (locks); no action (opens
#   read-write, changes nothing); an empty name; a dirty lazy-refcount
#   image (its refcounts rebuilt first).
. "$(dirname "$0")/lib.sh"
fixtures
cd "$T"

# refused: exit code as qemu-img's, one line, image unchanged
refused() {   # NAME IMAGE ARGS...
    local name=$1 img=$2; shift 2
    local before; before=$(sha "$img")
    cp "$img" q.img
    QRC=0; qemu-img snapshot "$@" q.img > /dev/null 2>&1 || QRC=$?
    kimg snapshot "$@" "$img"
    is "$RC" "$QRC" "$name: exit code $QRC as qemu-img's"
    err_line "$name"
    is "$(sha "$img")" "$before" "$name: image unchanged"
}

cp "$FX/snap.qcow2" s.qcow2
for args in "" "-l s.qcow2 s.qcow2" "-l -c x s.qcow2" "-a first -d first s.qcow2" "-l -l s.qcow2" \
            "-a" "-x s.qcow2" "-U -c x s.qcow2" "-U -a first s.qcow2" "-U -d first s.qcow2"; do
    qimg snapshot $args
    kimg snapshot $args
    is "$RC" "$QRC" "snapshot $args: exit code $QRC as qemu-img's"
    err_line "snapshot $args"
done
refused "-a nosuch" s.qcow2 -a nosuch
like "$(< "$T/err")" "Could not apply snapshot 'nosuch'" "-a nosuch: qemu-img's message"
refused "-d nosuch" s.qcow2 -d nosuch
is "$(< "$T/err")" "kimg: Could not delete snapshot 'nosuch': snapshot not found" "-d nosuch: qemu-img's message"
refused "-a 3 (no such ID or name)" s.qcow2 -a 3

# raw: nothing to snapshot
cp "$FX/holes.raw" h.raw
for a in "-c x" "-a x" "-d x"; do
    kimg snapshot $a h.raw
    is "$RC" 1 "raw: snapshot $a: exit 1"
    like "$(tail -1 "$T/err")" "^kimg: " "raw: snapshot $a: a kimg: error line last"
done

# refcounts that cannot hold one more reference
cp "$FX/rb1.qcow2" r.qcow2
refused "refcount_bits=1: -c" r.qcow2 -c x
like "$(< "$T/err")" "refcount_bits=1" "refcount_bits=1: the message names the refcount width"
qemu-img create -q -f qcow2 -o refcount_bits=1 r0.qcow2 1M
kimg snapshot -c x r0.qcow2
is "$RC" 0 "refcount_bits=1, nothing allocated: -c works (nothing to share), as qemu-img"
ok "refcount_bits=1, nothing allocated: clean" check_clean r0.qcow2
kimg snapshot -d x r0.qcow2
is "$RC" 0 "refcount_bits=1: -d works"
cp "$FX/rb2.qcow2" r2.qcow2
kimg snapshot -c a r2.qcow2; kimg snapshot -c b r2.qcow2
refused "refcount_bits=2, third snapshot: -c" r2.qcow2 -c c
ok "refcount_bits=2: still clean" check_clean r2.qcow2

# external data file
cp "$FX/datafile.qcow2" "$FX/datafile.data" .
refused "external data file: -c" datafile.qcow2 -c x

# persistent bitmaps: -a refused (qemu-img: the bitmaps would be wrong),
# -c and -d keep a disabled bitmap
qemu-img create -q -f qcow2 bm.qcow2 1M
qemu-io -c "write -P 0x21 0 64k" bm.qcow2 > /dev/null
qemu-img bitmap --add bm.qcow2 b1
qemu-img bitmap --disable bm.qcow2 b1
kimg snapshot -c x bm.qcow2
is "$RC" 0 "disabled bitmap: -c works"
ok "disabled bitmap: clean after -c" check_clean bm.qcow2
like "$(qemu-img info bm.qcow2)" "name: b1" "disabled bitmap: kept by -c"
refused "bitmap: -a" bm.qcow2 -a x
is "$(< "$T/err")" "kimg: Could not apply snapshot 'x': Device has active dirty bitmaps" \
    "bitmap: -a: qemu-img's message"
kimg snapshot -d x bm.qcow2
is "$RC" 0 "disabled bitmap: -d works"
ok "disabled bitmap: clean after -d" check_clean bm.qcow2
like "$(qemu-img info bm.qcow2)" "name: b1" "disabled bitmap: kept by -d"

# the corrupt bit: read-only only
cp "$FX/corrupt-bit.qcow2" cb.qcow2
refused "corrupt bit: -c" cb.qcow2 -c x
oracle "corrupt bit: -l" snapshot -l cb.qcow2

# held by another process
cp "$FX/snap.qcow2" held.qcow2
mkfifo ctl
qemu-io -f qcow2 held.qcow2 < ctl > io.log 2>&1 &
io_pid=$!; _tap_bg_pids="${_tap_bg_pids:-} $io_pid"
exec 3> ctl
for i in $(seq 1000); do grep -q OFDLCK /proc/locks && break; nap 0.01; done
sleep 0.2
before=$(sha held.qcow2)
for a in "-c x" "-a first" "-d first" "-l"; do
    kimg snapshot $a held.qcow2
    is "$RC" 1 "held image: snapshot $a: exit 1"
    err_line "held image: snapshot $a"
    like "$(< "$T/err")" "[Ll]ock" "held image: snapshot $a: the error is about the lock"
done
oracle "held image: -U -l" snapshot -U -l held.qcow2
echo quit >&3; exec 3>&-; wait "$io_pid" 2> /dev/null
is "$(sha held.qcow2)" "$before" "held image: unchanged"

# no action: opened read-write, nothing changes
cp "$FX/snap.qcow2" n.qcow2
before=$(sha n.qcow2)
kimg snapshot n.qcow2
is "$RC" 0 "no action: exit 0, as qemu-img"
is "$(sha n.qcow2)" "$before" "no action: image unchanged"
kimg snapshot -q -c "" n.qcow2
is "$RC" 0 "an empty name is a name (as for qemu-img)"
like "$(qemu-img snapshot -l n.qcow2 | tail -1)" "^3 +0 B " "the empty name is listed"

# lazy refcounts left dirty: rebuilt on open, then the snapshot
cp "$FX/lazy-dirty.qcow2" ld.qcow2
qemu-img convert -O raw ld.qcow2 ld.raw
kimg snapshot -c x ld.qcow2
is "$RC" 0 "dirty lazy-refcount image: -c works"
ok "dirty lazy-refcount image: clean after -c" check_clean ld.qcow2
qemu-img convert -O raw -l x ld.qcow2 ldx.raw
ok "dirty lazy-refcount image: the snapshot holds the content" cmp -s ld.raw ldx.raw
done_testing
