#!/bin/bash
# Hand-written VMDK descriptors: what VMware and qemu write (comments,
# CRLF, quotes, blanks, ddb lines, vmfs and VMFS extents, several files)
# reads as qemu-img reads it; what qemu-img 7.2 does not read kimg reads
# as the format says (ZERO extents as zeros, RDONLY extents as data,
# NOACCESS refused).  Hostile descriptors (overlong lines, huge or bad
# numbers, 4097 extents, NUL bytes, missing files, unknown types, no CID)
# give one error line, a non-zero exit and no output file.
. "$(dirname "$0")/lib.sh"

head_desc() {   # head_desc CREATETYPE: the lines before the extents
    printf '# Disk DescriptorFile\nversion=1\nCID=%s\nparentCID=ffffffff\ncreateType="%s"\n\n# Extent description\n' \
        "${CID:-1a2b3c4d}" "$1"
}
desc() {        # desc FILE CREATETYPE EXTENT-LINE...
    local f=$1 t=$2; shift 2
    { head_desc "$t"; printf '%s\n' "$@"; printf '\n# The Disk Data Base\n#DDB\n\nddb.adapterType = "ide"\n'; } > "$f"
}
pattern() { $PY -c 'import sys; n=int(sys.argv[2]); sys.stdout.buffer.write(bytes(((i >> 9) * 37 + (i & 511)) % 251 + 1 for i in range(n)))' x "$2" > "$1"; }

pattern a.bin 1048576
pattern b.bin 2097152

# ---- what qemu-img reads alike --------------------------------------------
desc flat.vmdk monolithicFlat 'RW 2048 FLAT "a.bin" 0'
desc two.vmdk twoGbMaxExtentFlat 'RW 1024 FLAT "a.bin" 1024' 'RW 4096 FLAT "b.bin" 0'
desc vmfs.vmdk vmfs 'RW 4096 VMFS "b.bin"'
{ head_desc monolithicFlat; printf '  RW   2048   FLAT   "a.bin"   0   \n'; } | sed 's/$/\r/' > crlf.vmdk
{ printf '# comment\n\n   \nversion=1\nencoding="UTF-8"\nCID = 0000abcd\nparentCID = ffffffff\n'
  printf 'isNativeSnapshot = "no"\ncreateType = "monolithicFlat"\n'
  printf '# Extent description\nRW 2048 FLAT "a b.bin" 0\nchangeTrackPath="/etc/shadow"\n'
  printf 'ddb.longContentID = "x"\nddb.uuid = "60 00 C2 9b"\n'; } > vmware.vmdk
cp a.bin "a b.bin"
# vmfsSparse: a descriptor naming an ESX sparse ("COWD") extent
$PY "$KIMG_SRC/tests/images/make-vmdk.py" vs-delta.vmdk --type cowd --size 2097152 \
    --data 0:70000 --data 1000000:5000 --descriptor vs.vmdk
for i in flat.vmdk two.vmdk vmfs.vmdk crlf.vmdk vmware.vmdk vs.vmdk; do
    oracle "$i info" info "$i"
    oracle "$i info json" info --output=json "$i"
    oracle "$i map json" map --output=json "$i"
    oracle "$i check" check "$i"
    qemu-img convert -O raw "$i" "$i.raw"
    kimg convert -O raw "$i" out.raw
    ok "$i convert -O raw: qemu-img's bytes" cmp -s out.raw "$i.raw"
    kimg checksum "$i"; a=$(cut -d' ' -f1 "$T/out")
    kimg checksum -f raw "$i.raw"; b=$(cut -d' ' -f1 "$T/out")
    ok "$i checksum: that of qemu-img's raw conversion" test -n "$a" -a "$a" = "$b"
done
oracle "probing a descriptor that starts with blank lines" info --output=json vmware.vmdk

# qemu-img 7.2 parses an extent line twice when a blank line comes before
# it (its sscanf skips the newline): kimg reads each line once
{ head_desc monolithicFlat; printf '\nRW 2048 FLAT "a.bin" 0\n'; } > blank.vmdk
kimg info --output=json blank.vmdk
like "$(< "$T/out")" '"virtual-size": 1048576,' "blank line before an extent: one extent"
qimg info --output=json blank.vmdk
like "$(< "$T/qout")" '"virtual-size": 2097152,' "(qemu-img 7.2 counts it twice)"

# ---- ZERO, RDONLY, NOACCESS (qemu-img 7.2 skips every non-RW line) --------
desc zero.vmdk monolithicFlat 'RW 2048 FLAT "a.bin" 0' 'RW 2048 ZERO' 'RDONLY 1024 FLAT "b.bin" 0'
kimg info --output=json zero.vmdk
like "$(< "$T/out")" '"virtual-size": 2621440,' "ZERO and RDONLY extents count in the size"
kimg convert -O raw zero.vmdk z.raw
{ cat a.bin; head -c 1048576 /dev/zero; head -c 524288 b.bin; } > z.expect
ok "ZERO reads as zeros, RDONLY as its data" cmp -s z.raw z.expect
kimg map --output=json zero.vmdk
like "$(< "$T/out")" '"start": 1048576, "length": 1048576, "depth": 0, "present": true, "zero": true, "data": false}' \
    "map: a ZERO extent is present zeros"
desc noacc.vmdk monolithicFlat 'RW 2048 FLAT "a.bin" 0' 'NOACCESS 2048 FLAT "b.bin" 0'
kimg convert -O raw noacc.vmdk n.raw
err_line "NOACCESS extent refused"
ok "NOACCESS: no output file" test ! -e n.raw

# ---- hostile descriptors: one line, non-zero, nothing written ----------------
H=$(head_desc monolithicFlat)
hostile() {     # hostile NAME: the descriptor is in h.vmdk
    kimg info h.vmdk; err_line "$1: info"
    kimg convert -O raw h.vmdk h.raw; err_line "$1: convert"
    ok "$1: no output file" test ! -e h.raw
}
{ echo "$H"; printf 'ddb.x = "%s"\n' "$(head -c 70000 /dev/zero | tr '\0' a)"; echo 'RW 2048 FLAT "a.bin" 0'; } > h.vmdk
hostile "a 70000-byte line"
{ echo "$H"; echo 'RW 99999999999999999999 FLAT "a.bin" 0'; } > h.vmdk
hostile "a sector count past 2^64"
{ echo "$H"; echo 'RW 17592186044416 FLAT "a.bin" 0'; echo 'RW 17592186044416 FLAT "a.bin" 0'; } > h.vmdk
hostile "extents adding up past 2^44 sectors"
{ echo "$H"; echo 'RW -5 FLAT "a.bin" 0'; } > h.vmdk
hostile "a negative sector count"
{ echo "$H"; echo 'RW 0 FLAT "a.bin" 0'; } > h.vmdk
hostile "a zero sector count"
{ echo "$H"; echo 'RW 0x800 FLAT "a.bin" 0'; } > h.vmdk
hostile "a hex sector count"
{ echo "$H"; echo 'RW 2048 FLAT "a.bin" 1e3'; } > h.vmdk
hostile "a bad offset"
{ echo "$H"; echo 'RW 2048 FLAT "a.bin"'; } > h.vmdk
hostile "a FLAT extent without offset"
{ echo "$H"; echo 'RW 2048 FLAT a.bin 0'; } > h.vmdk
hostile "an unquoted file name"
{ echo "$H"; echo 'RW 2048 FLAT "a.bin 0'; } > h.vmdk
hostile "an unterminated file name"
{ echo "$H"; echo 'RW 2048 FLAT "a.bin" 0 junk'; } > h.vmdk
hostile "text after the extent"
{ echo "$H"; echo 'RW 2048 VMFSRDM "a.bin"'; } > h.vmdk
hostile "a raw device map extent"
{ echo "$H"; echo 'RW 2048 SESPARSE "a.bin"'; } > h.vmdk
hostile "an seSparse extent"
{ echo "$H"; echo 'RW 2048 FLAT "missing.bin" 0'; } > h.vmdk
hostile "a missing extent file"
{ echo "$H"; } > h.vmdk
hostile "no extent"
{ echo "$H"; yes 'RW 1 FLAT "a.bin" 0' | head -4097; } > h.vmdk
hostile "4097 extents"
{ echo "$H" | grep -v '^CID'; echo 'RW 2048 FLAT "a.bin" 0'; } > h.vmdk
hostile "no CID"
{ echo "$H" | sed 's/^CID=.*/CID=xyz/'; echo 'RW 2048 FLAT "a.bin" 0'; } > h.vmdk
hostile "a bad CID"
{ echo "$H" | sed 's/^version=1/version=4/'; echo 'RW 2048 FLAT "a.bin" 0'; } > h.vmdk
hostile "version 4"
{ echo "$H" | sed 's/monolithicFlat/fullDevice/'; echo 'RW 2048 FLAT "a.bin" 0'; } > h.vmdk
hostile "createType fullDevice"
{ echo "$H" | grep -v createType; echo 'RW 2048 FLAT "a.bin" 0'; } > h.vmdk
hostile "no createType"
{ echo "$H"; echo 'createType="vmfs"'; echo 'RW 2048 FLAT "a.bin" 0'; } > h.vmdk
hostile "createType twice"
{ echo "$H"; printf 'RW 2048 FLAT "a.bin\0x" 0\n'; } > h.vmdk
hostile "a NUL byte inside an extent line"
{ echo "$H"; head -c 2000000 /dev/zero | tr '\0' '#'; } > h.vmdk
hostile "a 2 MB descriptor"
{ echo "$H" | sed "s/monolithicFlat/$(printf '\033[2Jevil')/"; echo 'RW 2048 FLAT "a.bin" 0'; } > h.vmdk
kimg info h.vmdk
err_line "an escape sequence in createType"
ok "the escape sequence is escaped in the message" grep -qF '\x1b[2Jevil' "$T/err"
{ echo "$H"; printf 'RW 2048 FLAT "\033]0;x\007.bin" 0\n'; } > h.vmdk
kimg info h.vmdk
err_line "an escape sequence in an extent name"
ok "the extent name is escaped in the message" grep -qF '\x1b]0;x\x07.bin' "$T/err"
# an extent file whose name holds an escape sequence: escaped in info and map
esc=$(printf 'e\033[31m.bin')
cp a.bin "$esc"
{ head_desc monolithicFlat; printf 'RW 2048 FLAT "%s" 0\n' "$esc"; } > esc.vmdk
kimg info esc.vmdk
ok "info: the extent name escaped" grep -qF 'filename: e\x1b[31m.bin' "$T/out"
kimg map esc.vmdk
ok "map: the extent name escaped" grep -qF 'e\x1b[31m.bin' "$T/out"
ok "info, map: no raw ESC byte" eval '! grep -q "$(printf "\033")" "$T/out"'
kimg info --output=json esc.vmdk
ok "info json: the extent name as a JSON escape" grep -qF '"filename": "e\u001B[31m.bin"' "$T/out"

# ---- sparse extent files opened alone ----------------------------------------
# a twoGbMaxExtentSparse piece carries an empty embedded descriptor: no
# CID, refused as qemu-img refuses it
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse ts.vmdk 3G
kimg info ts-s001.vmdk
err_line "a twoGbMaxExtentSparse piece alone"
qimg info ts-s001.vmdk
isnt "$QRC" 0 "(qemu-img refuses it too)"
# an ESX delta extent ("COWD") has no descriptor inside: read, with a
# warning that it may need the rest of its disk (qemu-img refuses it)
$PY "$KIMG_SRC/tests/images/make-vmdk.py" cowd.vmdk --type cowd --size 1048576 --data 0:70000
kimg info --output=json cowd.vmdk
is "$RC" 0 "a COWD extent alone: opened"
like "$(< "$T/out")" '"create-type": "vmfsSparse"' "a COWD extent alone: vmfsSparse"
like "$(< "$T/err")" "sparse extent without a descriptor" "a COWD extent alone: a warning"
done_testing
