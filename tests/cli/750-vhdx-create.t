#!/bin/bash
# kimg create -f vhdx as qemu-img 7.2: `-o help` byte for byte (with and
# without a file name, and convert's), the "Formatting ..." line and exit
# code for every option, the layout qemu-img writes (headers' log fields,
# region table, metadata items with the block sizes by image size and
# 512-byte sectors, the BAT entry by entry, the file's length:
# tests/images/vhdx-layout.py, which leaves out GUIDs, sequence numbers,
# the creator and the regions' "required" bit, which kimg sets as Hyper-V
# does), info JSON as qemu-img's, qemu-img check clean, vhdiinfo reads
# it; qemu-img's refusals in its words, with no file left behind.
# make check: a third of the option x size cases (lib.sh sampled) and the
# two corners (1 MiB blocks at 5G and at 0); check-slow the other cases.
. "$(dirname "$0")/lib.sh"
require vhdiinfo
LAYOUT="$PY $KIMG_SRC/tests/images/vhdx-layout.py"

for args in "" "x.vhdx"; do
    oracle "create -o help $args" create -f vhdx -o help $args
done
oracle "convert -o help" convert -O vhdx -o help
oracle "convert -o help a b" convert -O vhdx -o help a.img b.vhdx

# created OPTS SIZE: kimg's and qemu-img's images of the same command
created() {
    local o=$1 size=$2 name="create ${1:+-o $1 }$2"
    rm -f k.vhdx q.vhdx
    qimg create -f vhdx ${o:+-o "$o"} q.vhdx "$size"
    kimg create -f vhdx ${o:+-o "$o"} k.vhdx "$size"
    is "$RC" "$QRC" "$name: exit code as qemu-img's"
    is "$(sed 's/k\.vhdx/X/' "$T/out")" "$(sed 's/q\.vhdx/X/' "$T/qout")" "$name: Formatting line"
    is "$($LAYOUT k.vhdx)" "$($LAYOUT q.vhdx)" "$name: the layout qemu-img writes"
    # (actual-size: kimg writes less of the tables than qemu-img)
    is "$("$KIMG" info --output=json k.vhdx | sed 's/k\.vhdx/X/; /actual-size/d')" \
       "$(qemu-img info --output=json q.vhdx | sed 's/q\.vhdx/X/; /actual-size/d')" \
       "$name: info JSON as qemu-img's"
    ok "$name: allocates no more than qemu-img" \
        test "$(stat -c %b k.vhdx)" -le "$(stat -c %b q.vhdx)"
    ok "$name: qemu-img check clean" qemu-img check -q k.vhdx
    if vhdiinfo q.vhdx > /dev/null 2>&1; then
        ok "$name: vhdiinfo reads it" vhdiinfo k.vhdx
    else
        skip "$name: vhdiinfo reads it" "vhdiinfo refuses qemu-img's image too (no blocks)"
    fi
}
# created_case OPTS SIZE: one case of the matrix below, sampled
created_case() { sampled || return 0; created "$@"; }
MiB=$((1024 * 1024)) GiB=$((1024 * 1024 * 1024))
created_case "" 100M
created_case "" 1000
created_case "" 1G
created_case "" $((GiB + 512))
created_case "" 101G
created_case "" 33T
created_case "" 64T
created_case "subformat=dynamic" 3M
created_case "subformat=fixed" 100M
created_case "subformat=fixed" $((3 * MiB + 512))
created_case "subformat=fixed,block_state_zero=off" 100M
created_case "subformat=fixed,block_state_zero=off,block_size=1M" 100M
created_case "block_state_zero=off" 100M
created_case "block_state_zero=on,subformat=dynamic" 20M
created_case "block_size=1M" 1G
created_case "block_size=2M,log_size=3M" 1G
created_case "block_size=256M" 2G
created_case "block_size=300M" 2G
created_case "block_size=1000" 20M
created_case "block_size=0" 200G
created_case "log_size=1000" 20M
created_case "log_size=64M" 20M
created_case "log_size=4095M" 20M
created_case "nocow=on,extent_size_hint=2M,preallocation=off" 20M
created_case "preallocation=full" 20M
# corners, in both parts: 1 MiB blocks, sector bitmap entries every 4096
# blocks (the only case with them)
created "block_size=1M" 5G
# size 0: qemu's BAT region is 64 MiB (an unsigned underflow in its
# entry count, which its open checks too): the same, so qemu-img opens it
# (1 MiB blocks in both parts; the default's 64 MiB BAT is sampled)
created_case "" 0
created "block_size=1M" 0

# refusals, in qemu-img's words and order; no file left
for o in "subformat=foo" "subformat=FIXED" "block_size=3M" "log_size=0" "log_size=5G" \
         "block_state_zero=maybe" "preallocation=foo" \
         "block_size=3M,subformat=bad" "log_size=0,block_size=3M"; do
    rm -f r.vhdx
    qimg create -f vhdx -o "$o" r.vhdx 1G; rm -f r.vhdx
    kimg create -f vhdx -o "$o" r.vhdx 1G
    is "$RC" "$QRC" "create -o $o: exit code as qemu-img's"
    is "$(< "$T/out")" "$(< "$T/qout")" "create -o $o: stdout as qemu-img's"
    is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" "create -o $o: qemu-img's message"
    ok "create -o $o: no file left" test ! -e r.vhdx
done
for size in 65T 70368744177665; do
    qimg create -f vhdx r.vhdx $size; rm -f r.vhdx
    kimg create -f vhdx r.vhdx $size
    is "$RC" "$QRC" "create $size: exit code as qemu-img's"
    is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" "create $size: qemu-img's message"
    ok "create $size: no file left" test ! -e r.vhdx
done
oracle "create -b: refused as qemu-img" create -f vhdx -b k.vhdx -F vhdx r.vhdx 1G
ok "create -b: no file left" test ! -e r.vhdx
done_testing
