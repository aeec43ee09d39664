#!/bin/bash
# Damaged and hostile sparse VMDKs (tests/images/make-vmdk.py): bad magic,
# version and flags, huge capacity and grain sizes, tables outside the
# file or on each other, grains past the end of the file, streams whose
# footer, markers or deflated grains are wrong, COWD headers.  Every one:
# one "kimg: " line with the reason, non-zero exit, no output file, never
# a crash or a hang; damage only a read finds lets info through and stops
# convert, checksum and compare.  check reports a grain past the end of
# the file as qemu-img does (its message and exit code).
# make check: a third of the damaged images (lib.sh sampled); check-slow
# the rest.
. "$(dirname "$0")/lib.sh"
KIMG_TIMEOUT=30     # hostile input: each command under timeout, a hang fails on its own
MK="$PY $KIMG_SRC/tests/images/make-vmdk.py"
MiB=$((1024 * 1024))

S="--type sparse --size $((10 * MiB)) --data 0:200000 --data 5000000:100000"
S4="--type sparse --size $((10 * MiB)) --grain 8 --data 0:200000 --data 5000000:100000"
ST="--type stream --size $((10 * MiB)) --data 0:200000 --data 5000000:100000"
C="--type cowd --size $((10 * MiB)) --data 0:200000"
# when | name | generator arguments | expected message (a regex)
# when: open (every command fails) or read (info works, reading fails)
cases=(
    "open|version 4|$S --set header.version=4|Unsupported VMDK version 4"
    "open|unknown flag|$S --set header.flags=0x1000003|flags 0x1000000"
    "open|newline check|$S --set header.nl_chars=abcd|newline check"
    "open|compression 2|$S --set header.compress=2|compression algorithm 2"
    "open|capacity 8 PiB|$S --set header.capacity=0x4000000000000|too large"
    "open|grain 3 sectors|$S --set header.grain=3|grain size"
    "open|grain 1 GiB|$S --set header.grain=0x200000|grain size"
    "open|1024 entries per table|$S --set header.gtes=1024|grain table entries"
    "open|directory past the end|$S --set header.gd_offset=0x100000|grain directory"
    "open|redundant directory past the end|$S --set header.rgd_offset=0xfffffff0|redundant"
    "open|descriptor over 1 MiB|$S --set header.desc_size=4096|larger than 1 MiB"
    "open|descriptor past the end|$S --set header.desc_offset=0xffffff|descriptor"
    "open|overhead past the end|$S --set header.overhead=0xffffffff|File truncated"
    "open|table past the end|$S --gd 0=0x7ffffff0|outside the file"
    "open|table on the directory|$S --gd 0=26|overlaps"
    "open|two entries, one table|$S4 --gd 1=@0|overlap"
    "read|grain past the end|$S --gt 0:1=0x7fffff00|past the end of the file"
    "read|truncated in the grains|$S --truncate 200000|past the end of the file"
    "open|stream without its end|$ST --truncate 512|Invalid footer"
    "open|stream footer magic|$ST --set footer.magic=XXXX|Invalid footer"
    "open|footer and header differ|$ST --set footer.capacity=4096|does not match"
    "open|footer without a directory|$ST --set footer.gd_offset=0xffffffffffffffff|footer does not say"
    "open|directory marker|$ST --break-marker gd|bad grain directory marker"
    "read|table marker|$ST --break-marker gt|bad grain table marker"
    "read|grain marker lba|$ST --marker 1:lba=0|has lba 0"
    "read|grain marker size|$ST --marker 1:size=0x7fffffff|compressed size"
    "read|grain inflates short|$ST --bad-grain 2|does not inflate to one grain"
    "read|grain not deflate|$ST --poke 65548=deadbeefdeadbeef|does not inflate to one grain"
    "open|COWD version 2|$C --set header.version=2|COWD version 2"
    "open|COWD directory too short|$C --set header.gd_entries=0|needs 1"
    "open|COWD grain 5 sectors|$C --set header.grain=5|grain size"
)
for c in "${cases[@]}"; do
    sampled || continue         # check: a third of the cases; check-slow: the rest
    IFS='|' read -r when name args want <<< "$c"
    $MK h.vmdk $args
    if [ "$when" = open ]; then cmds="info map compare checksum convert"; else cmds="compare checksum convert"; fi
    for cmd in $cmds; do
        rm -f out.raw
        case $cmd in
        compare) kimg compare h.vmdk h.vmdk ;;
        convert) kimg convert -O raw h.vmdk out.raw ;;
        map) kimg map --output=json h.vmdk ;;
        *) kimg $cmd h.vmdk ;;
        esac
        err_line "$name: $cmd"
    done
    ok "$name: no output file" test ! -e out.raw
    like "$(< "$T/err")" "$want" "$name: the reason"
    if [ "$when" = read ]; then
        kimg info h.vmdk
        is "$RC" 0 "$name: info still reads the header"
    fi
done

# check: a grain past the end of the file, as qemu-img (message, exit 1)
$MK ck.vmdk --type sparse --size $MiB --data 0:200000 --gt 0:2=0x7fffff00
qimg check ck.vmdk; kimg check ck.vmdk
is "$RC" "$QRC" "check, grain past the end: qemu-img's exit code"
is "$(< "$T/err")" "$(sed 's/^qemu-img:/kimg:/' "$T/qerr")" "check, grain past the end: qemu-img's messages"
done_testing
