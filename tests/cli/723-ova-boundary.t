#!/bin/bash
# What an OVA's disk may reach, and the options that pick it: a disk is
# read inside the archive only.  A member that names a backing file or an
# external data file is refused (the file lies next to the archive and is
# never opened: checked under strace), with and without --untrusted; info
# still names the backing file; the archive is never opened for writing.
# convert keeps its fast paths through the window on the member: copy
# offload (-C), an O_DIRECT source (-T none, libaio), mapped reads.
# Member names are escaped in human output.  --disk N: its syntax, a
# number past the disks, a file that is no archive, with -f.
. "$(dirname "$0")/lib.sh"
KIMG_TIMEOUT=30     # hostile input: each command under timeout, a hang fails on its own
. "$KIMG_SRC/tests/cli/ova.sh"

disks_made
qemu-img create -q -f raw base.raw 16M
qemu-io -f raw -c 'write -P 0x77 0 1M' base.raw > /dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw ov.qcow2
qemu-img create -q -f qcow2 -o data_file=ext.data ext.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x66 0 64k' ext.qcow2 > /dev/null

# ---- nothing outside the archive ----------------------------------------
ovf_write vm.ovf vmware1 ov.qcow2 ext.qcow2 d1.qcow2
mf_write vm.mf SHA256 vm.ovf ov.qcow2 ext.qcow2 d1.qcow2
ova_tar named.ova ustar vm.ovf vm.mf ov.qcow2 ext.qcow2 d1.qcow2
for u in "" --untrusted; do
    rm -f out.raw
    kimg convert $u -O raw named.ova out.raw
    err_line "a disk with a backing file ${u:-(trusted)}: refused"
    like "$(< "$T/err")" "backing file 'base.raw'.*nothing outside the archive" \
        "a disk with a backing file ${u:-(trusted)}: the message says why"
    ok "a disk with a backing file ${u:-(trusted)}: no output" test ! -e out.raw
    kimg convert $u --disk 2 -O raw named.ova out.raw
    err_line "a disk with a data file ${u:-(trusted)}: refused"
    like "$(< "$T/err")" "external data file 'ext.data'.*nothing outside the archive" \
        "a disk with a data file ${u:-(trusted)}: the message says why"
    kimg convert $u --disk 3 -O raw named.ova out.raw
    is "$RC" 0 "disk 3 of the same archive ${u:-(trusted)}: read"
    ok "disk 3 ${u:-(trusted)}: its content" qemu_oracle_compare -f raw -F qcow2 out.raw d1.qcow2
done
kimg info --disk 1 --output=json named.ova
is "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["backing-filename"])' "$T/out")" \
    base.raw "info names the backing file of a disk (without opening it)"
kimg info --disk 1 --backing-chain named.ova
err_line "info --backing-chain on a disk with a backing file: refused"
if command -v strace > /dev/null; then
    for args in "convert -O raw named.ova out.raw" "convert --disk 2 -O raw named.ova out.raw" \
                "info named.ova" "compare named.ova d1.qcow2"; do
        strace -f -qq -e trace=open,openat -o trace.txt "$KIMG" $args > /dev/null 2>&1
        ok "$args: neither base.raw nor ext.data opened" \
            bash -c '! grep -E "base\.raw|ext\.data" trace.txt'
    done
else
    skip "strace: nothing outside opened" "strace not installed"
fi

# ---- read only ----------------------------------------------------------
ovf_write vm.ovf vbox2 d1.qcow2 d2.raw d3.vhd
ova_tar vm.ova ustar vm.ovf d1.qcow2 d2.raw d3.vhd
before=$(sha vm.ova)
kimg check -r all vm.ova
err_line "check -r all: refused"
like "$(< "$T/err")" "read only" "check -r all: the archive is read only"
kimg check --disk 2 vm.ova
is "$RC" 63 "check --disk 2 (raw): qemu-img's 63"
kimg check vm.ova
is "$RC" 0 "check of disk 1 (qcow2): clean"
is "$(sha vm.ova)" "$before" "the archive is unchanged"

# ---- the fast paths through the window ----------------------------------
for opts in "-C" "-T none" "-T none -t none" "-W -m 4"; do
    rm -f out.raw
    kimg convert $opts -O raw vm.ova out.raw
    is "$RC" 0 "convert $opts: exit 0"
    ok "convert $opts: the member's content" qemu_oracle_compare -f raw -F qcow2 out.raw d1.qcow2
    kimg convert $opts --disk 2 -O raw vm.ova out.raw
    ok "convert $opts --disk 2: the raw member's bytes" cmp -s out.raw d2.raw
done
KIMG_CONVERT_NO_MAP=1 kimg convert --disk 2 -O qcow2 vm.ova out.qcow2
ok "convert without mappings: the same content" qemu_oracle_compare -F raw out.qcow2 d2.raw
kimg measure --output=json -O qcow2 vm.ova
qimg measure --output=json -O qcow2 -f qcow2 d1.qcow2
is_file "$T/out" "$T/qout" "measure: of the first disk, as qemu-img measure of the member"

# ---- names --------------------------------------------------------------
# XML 1.0 holds no C0 control characters, but C1 ones (U+009B, CSI)
esc=$'d\xc2\x9b31mred.raw'
cp d2.raw "$esc"
ovf_write vm.ovf vmware1 "$esc"
ova_tar esc.ova ustar vm.ovf "$esc"
kimg info esc.ova
is "$(sed -n 2p "$T/out")" 'archive member: d\xc2\x9b31mred.raw (disk 1 of 1)' \
    "a member name with a C1 control: escaped in human info"
kimg info --output=json esc.ova
like "$(< "$T/out")" '"archive-member": "d\\u009B31mred.raw"' "the same name in JSON: JSON escapes"
# a tar member name with ESC and a newline, in an error message
$PY - bad-name.ova <<'PYEOF'
import io, sys, tarfile
t = tarfile.open(sys.argv[1], "w", format=tarfile.GNU_FORMAT)
for name, data in (("vm.ovf", open("vm.ovf", "rb").read()), ("x\x1b[2J\ny", None)):
    ti = tarfile.TarInfo(name)
    if data is None:
        ti.type = tarfile.SYMTYPE
        ti.linkname = "/etc/passwd"
        t.addfile(ti)
    else:
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
t.close()
PYEOF
kimg info bad-name.ova
err_line "a member name with ESC and a newline: one error line"
like "$(< "$T/err")" 'x\\x1b\[2J\\x0ay' "the name escaped in the message"

# ---- --disk -------------------------------------------------------------
for bad in 0 257 x 1x -1 ""; do
    kimg info --disk "$bad" vm.ova
    err_line "--disk '$bad': refused"
done
kimg info --disk 4 vm.ova
err_line "--disk 4 of three"
like "$(< "$T/err")" "has 3 disks, not 4" "--disk 4: the message counts the disks"
kimg info --disk 1 d1.qcow2
err_line "--disk on a file that is no archive"
kimg info -f qcow2 --disk 1 vm.ova
err_line "--disk with -f"
kimg compare --disk 2 --disk2 3 vm.ova vm.ova
is "$RC:$(< "$T/out")" "1:Content mismatch at offset 4096!" "compare --disk 2 --disk2 3"
kimg compare --disk2 2 d2.raw vm.ova
is "$RC" 0 "compare --disk2: the second file's disk"
kimg checksum --disk 2 vm.ova d1.qcow2
err_line "checksum --disk 2 with a file that is no archive: that one fails"
for c in info convert map compare checksum check; do
    kimg $c --help
    like "$(< "$T/out")" "--disk" "$c --help names --disk"
done

done_testing
