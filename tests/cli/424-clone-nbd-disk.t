#!/bin/bash
# 424-clone-nbd-disk.t — a template disk on an NBD export (<disk
# type='network'> with <source protocol='nbd'>, as libvirt writes it for a
# unix socket, TCP and TLS) is read through kimg's NBD client and copied
# into the clone's --file: the clone's disk becomes type='file', its
# <source> loses protocol, name and <host>, the copy reads as the export
# (qemu-img compare against the same URI) and is sparse.  A qcow2 file
# served as plain bytes (<driver type='qcow2'>) is copied as qcow2.  In a
# batch the export is read once.  Refused, in one line and before anything
# is written: no --file for the disk, --linked, --reflink, a <host> that is
# not one, a server that is not there; other network protocols as before.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/nbd.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

mkdir -p vm
qemu-img create -q -f qcow2 vm/base.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x5a 1M 2M' -c 'write -P 0x6b 9M 64k' vm/base.qcow2 > /dev/null
qnbd g.sock qcow2 vm/base.qcow2 -x disk0          # guest bytes as a raw export
cp vm/base.qcow2 vm/file.qcow2
kitnbd f.sock file "$T/vm/file.qcow2"             # the qcow2 file's bytes

# xml NAME FORMAT SOURCE-ELEMENT: a template with one disk of that source
xml() {
    cat > "vm/$1.xml" <<XML
<domain type='kvm'>
  <name>$1</name>
  <memory>65536</memory>
  <os>
    <type arch='x86_64'>hvm</type>
  </os>
  <devices>
    <disk type='network' device='disk'>
      <driver name='qemu' type='$2'/>
      $3
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='default'/>
    </interface>
  </devices>
</domain>
XML
}
unix_src() { echo "<source protocol='nbd' name='$1'><host transport='unix' socket='$T/$2'/></source>"; }

xml web raw "$(unix_src disk0 g.sock)"
kimg clone --original-xml vm/web.xml -n web2 -f vm/web2.img -q
is "$RC" 0 "an nbd disk over a unix socket"
cp out web2.xml
is "$(disk_get web2.xml vda type):$(disk_get web2.xml vda source)" "file:$T/vm/web2.img" \
    "  type='file', <source file='--file'>"
is "$(grep -c -e protocol -e '<host' web2.xml)" 0 "  no protocol, name or <host> left"
ok "  the copy reads as the export" qemu-img compare -q -f raw -F raw "$(nuri g.sock disk0)" vm/web2.img
ok "  sparse (2M and 64k of data in 16M)" test "$(du -k vm/web2.img | cut -f1)" -le 2200
validate web2.xml "  valid"

xml q qcow2 "$(unix_src '' f.sock)"
kimg clone --original-xml vm/q.xml -n q2 -f vm/q2.qcow2 -q
is "$RC" 0 "a qcow2 file served as bytes (<driver type='qcow2'>, the default export)"
cp out q2.xml
is "$(disk_get q2.xml vda source)" "$T/vm/q2.qcow2" "  the clone's file"
is "$(qemu-img info --output=json vm/q2.qcow2 | grep -c '"format": "qcow2"')" 1 "  copied as qcow2"
ok "  it reads as the template's image" qemu-img compare -U -q vm/base.qcow2 vm/q2.qcow2
ok "  qemu-img check is clean" check_clean vm/q2.qcow2

# TCP, as libvirt writes <host name port>
tcpnbd t --filter=exportname file "$T/vm/file.qcow2" exportname=exp default-export=exp
xml tcp qcow2 "<source protocol='nbd' name='exp'><host name='127.0.0.1' port='$NBD_PORT'/></source>"
kimg clone --original-xml vm/tcp.xml -n tcp2 -f vm/tcp2.qcow2 -q
is "$RC" 0 "an nbd disk over TCP"
ok "  it reads as the template's image" qemu-img compare -U -q vm/base.qcow2 vm/tcp2.qcow2

# a batch: the export is read once for every clone (nbdkit's log filter
# counts the bytes read: the data, 2M and 64k, once)
qemu-img convert -U -f qcow2 -O raw vm/base.qcow2 vm/base.raw
kitnbd l.sock --filter=log file "$T/vm/base.raw" logfile="$T/read.log"
xml batch raw "$(unix_src '' l.sock)"
kimg clone --original-xml vm/batch.xml -n b1 -n b2 -n b3 -f 'vm/{name}.img' \
    --output-xml 'vm/{name}.xml' -q
is "$RC" 0 "a batch of three from the nbd disk"
for n in b1 b2 b3; do
    ok "  $n reads as the export" qemu-img compare -q -f raw -F raw vm/base.raw vm/$n.img
done
read_bytes=$($PY -c '
import re, sys
print(sum(int(m, 16) for m in re.findall(r" Read id=\d+ offset=0x[0-9a-f]+ count=0x([0-9a-f]+)", open(sys.argv[1]).read())))' "$T/read.log")
ok "  the export was read once ($read_bytes bytes read)" test "$read_bytes" -ge 2162688 -a "$read_bytes" -lt 3000000

# ---- refusals: one line, nothing written --------------------------------
refused() {   # NAME PATTERN ARGS...
    local name=$1 pat=$2; shift 2
    rm -rf vm/r && mkdir vm/r
    kimg clone "$@"
    err_line "$name"
    like "$(cat "$T/err")" "$pat" "  says why"
    is "$(ls vm/r)" "" "  nothing written"
}
refused "no --file for the nbd disk" "needs a --file" \
    --original-xml vm/web.xml -n r1 --auto-clone --output-xml vm/r/r1.xml
refused "--linked" "cannot be the base of a linked clone" \
    --original-xml vm/web.xml -n r2 -f vm/r/r2.qcow2 --linked
refused "--reflink" "cannot be reflinked" \
    --original-xml vm/web.xml -n r3 -f vm/r/r3.img --reflink
xml gone raw "$(unix_src disk0 nothere.sock)"
refused "a server that is not there" "nothere.sock" \
    --original-xml vm/gone.xml -n r4 -f vm/r/r4.img
xml tls raw "<source protocol='nbd' name='disk0' tls='yes'><host transport='unix' socket='$T/g.sock'/></source>"
refused "tls='yes' against a server without TLS" "nbds\+unix:///disk0.*refused TLS" \
    --original-xml vm/tls.xml -n r9 -f vm/r/r9.img
xml badhost raw "<source protocol='nbd' name='x'><host name='a/b' port='10809'/></source>"
refused "a <host name> that is not a host name" "not a host name" \
    --original-xml vm/badhost.xml -n r5 -f vm/r/r5.img
xml badport raw "<source protocol='nbd' name='x'><host name='h' port='99999'/></source>"
refused "a <host port> that is not a port" "not a port number" \
    --original-xml vm/badport.xml -n r6 -f vm/r/r6.img
xml nohost raw "<source protocol='nbd' name='x'/>"
refused "no <host>" "has no <host>" --original-xml vm/nohost.xml -n r7 -f vm/r/r7.img
xml rbd raw "<source protocol='rbd' name='pool/img'><host name='mon' port='6789'/></source>"
refused "an rbd disk, as before" "cannot be cloned; share it" \
    --original-xml vm/rbd.xml -n r8 -f vm/r/r8.img

# shared with --skip-copy: the XML keeps the export
kimg clone --original-xml vm/web.xml -n s1 --skip-copy vda --auto-clone --print-xml
is "$RC" 0 "--skip-copy shares the nbd disk"
cp out s1.xml
is "$(disk_get s1.xml vda type)" "network" "  the clone's disk is the same export"
like "$(cat s1.xml)" "protocol=.nbd. name=.disk0." "  <source protocol='nbd' name='disk0'> kept"
done_testing
