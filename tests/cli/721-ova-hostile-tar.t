#!/bin/bash
# Hostile tar layers in an OVA (made with python's tarfile, which writes
# what tar would not): a damaged header checksum, members past the end
# of the file, symbolic and hard links, devices, FIFOs and folders, names
# with '/' or '..', a name twice, thousands of members, pax headers that
# lie (sizes past the end, malformed records, sparse files), oversized
# GNU long names, a file that ends inside a header.  Each archive: info,
# convert and checksum fail with one "kimg:" line, a non-zero exit, no
# output file, never a crash or a hang (kimg runs under a timeout).
. "$(dirname "$0")/lib.sh"
KIMG_TIMEOUT=30     # hostile input: each command under timeout, a hang fails on its own
. "$KIMG_SRC/tests/cli/ova.sh"

qemu-img create -q -f qcow2 d1.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x5a 1M 1M' d1.qcow2 > /dev/null
ovf_write vm.ovf vmware1 d1.qcow2
mf_write vm.mf SHA256 vm.ovf d1.qcow2

# hostile NAME: the three commands refuse the archive NAME.ova
hostile() {
    local name=$1
    kimg info "$name.ova"
    err_line "$name: info"
    rm -f out.raw
    kimg convert -O raw "$name.ova" out.raw
    err_line "$name: convert"
    ok "$name: convert left no output file" test ! -e out.raw
    kimg checksum "$name.ova"
    err_line "$name: checksum"
}

# mk NAME FORMAT PYTHON: NAME.ova from tarfile (in FORMAT: ustar, gnu, pax),
# vm.ovf first; PYTHON adds the rest (helpers: add(name, path or bytes,
# **TarInfo fields), t the TarFile).
mk() {
    $PY - "$1.ova" "$2" "$3" <<'EOF'
import io, sys, tarfile
out, fmt, code = sys.argv[1:4]
f = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}[fmt]
t = tarfile.open(out, "w", format=f)
def add(name, data, **kw):
    if isinstance(data, str):
        data = open(data, "rb").read()
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = 0
    for k, v in kw.items():
        setattr(ti, k, v)
    t.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
add("vm.ovf", "vm.ovf")
exec(code)
t.close()
EOF
}

# a good archive first (so each case below fails for its own reason)
mk good ustar 'add("vm.mf", "vm.mf"); add("d1.qcow2", "d1.qcow2")'
kimg convert -O raw good.ova out.raw
is "$RC" 0 "the good archive converts"

# the disk's header damaged: its checksum no longer matches
cp good.ova badsum.ova
off=$($PY -c 'import tarfile; t=tarfile.open("good.ova"); print([m.offset for m in t if m.name=="d1.qcow2"][0])')
poke badsum.ova $((off + 10)) 41
hostile badsum
like "$(kimg info badsum.ova; cat "$T/err")" "damaged tar header" "badsum: the message says which"

# the disk member runs past the end of the file
cp good.ova short.ova
truncate -s $(( $(sizeof good.ova) - 1024 * 1024 )) short.ova
hostile short
# a size in base-256 far past the end
cp good.ova b256.ova
printf '\x80\x00\x00\x00\x7f\xff\xff\xff\xff\xff\xff\xff' |
    dd of=b256.ova bs=1 seek=$((off + 124)) conv=notrunc status=none
$PY - b256.ova $off <<'EOF'
import sys
p, off = sys.argv[1], int(sys.argv[2])
d = bytearray(open(p, "rb").read())
h = d[off:off + 512]
h[148:156] = b" " * 8
s = sum(h)
d[off + 148:off + 156] = ("%06o\0 " % s).encode()
open(p, "wb").write(d)
EOF
hostile b256
# the file ends inside a header
head -c $((off + 300)) good.ova > midhdr.ova
hostile midhdr

# members that are not regular files
mk symlink ustar 'add("vm.mf", "vm.mf"); add("d1.qcow2", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd")'
hostile symlink
like "$(kimg info symlink.ova; cat "$T/err")" "symbolic link" "symlink: named in the message"
mk hardlink ustar 'add("x", "d1.qcow2"); add("d1.qcow2", b"", type=tarfile.LNKTYPE, linkname="x")'
hostile hardlink
mk chardev ustar 'add("d1.qcow2", b"", type=tarfile.CHRTYPE, devmajor=1, devminor=3)'
hostile chardev
mk blockdev gnu 'add("d1.qcow2", b"", type=tarfile.BLKTYPE, devmajor=8, devminor=0)'
hostile blockdev
mk fifo pax 'add("d1.qcow2", b"", type=tarfile.FIFOTYPE)'
hostile fifo
mk folder ustar 'add("d", b"", type=tarfile.DIRTYPE); add("d1.qcow2", "d1.qcow2")'
hostile folder

# names
mk slash ustar 'add("sub/d1.qcow2", "d1.qcow2"); add("d1.qcow2", "d1.qcow2")'
hostile slash
mk dotdot gnu 'add("../d1.qcow2", "d1.qcow2"); add("d1.qcow2", "d1.qcow2")'
hostile dotdot
mk dotdot2 pax 'add("d1.qcow2", "d1.qcow2"); add("..", b"x")'
hostile dotdot2
mk twice ustar 'add("d1.qcow2", "d1.qcow2"); add("d1.qcow2", "d1.qcow2")'
hostile twice
like "$(kimg info twice.ova; cat "$T/err")" "appears twice" "twice: named in the message"
mk longgnu gnu 'add("y" * 5000, b"x"); add("d1.qcow2", "d1.qcow2")'
hostile longgnu

# thousands of members
mk many ustar 'add("d1.qcow2", "d1.qcow2")
for i in range(3000): add("f%d" % i, b"")'
hostile many
like "$(kimg info many.ova; cat "$T/err")" "more than 1024 members" "many: the cap is named"
# thousands of headers that are not members (global pax headers)
mk headers pax '
for i in range(5000):
    ti = tarfile.TarInfo("g"); ti.type = tarfile.XGLTYPE; ti.pax_headers = {"comment": "x"}
    t.addfile(ti)
add("d1.qcow2", "d1.qcow2")'
hostile headers

# pax records that lie or are malformed
mk paxsize pax '
ti = tarfile.TarInfo("d1.qcow2"); ti.size = 4; ti.pax_headers = {"size": "999999999999"}
t.addfile(ti, io.BytesIO(b"abcd"))'
hostile paxsize
mk paxsparse pax '
ti = tarfile.TarInfo("d1.qcow2"); data = open("d1.qcow2","rb").read(); ti.size = len(data)
ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
t.addfile(ti, io.BytesIO(data))'
hostile paxsparse
# a pax header whose record length points past its data
mk paxbad pax '
ti = tarfile.TarInfo("d1.qcow2"); data = open("d1.qcow2","rb").read(); ti.size = len(data)
ti.pax_headers = {"comment": "x"}
t.addfile(ti, io.BytesIO(data))'
$PY - paxbad.ova <<'EOF'
import sys, tarfile
p = sys.argv[1]
d = bytearray(open(p, "rb").read())
# the disk's pax header: its first record's length made larger than its data
t = tarfile.open(p)
off = [m.offset for m in t if m.name == "d1.qcow2"][0]
rec = d.index(b" ", off + 512)
d[off + 512:rec] = b"9" * (rec - off - 512)
open(p, "wb").write(d)
EOF
hostile paxbad

# a damaged first header: not a tar, so no OVA: probed as raw, as before
cp good.ova first.ova
poke first.ova 10 41
kimg info --output=json first.ova
qimg info --output=json first.ova
is_file "$T/out" "$T/qout" "a damaged first header: no archive, info as qemu-img's"

done_testing
