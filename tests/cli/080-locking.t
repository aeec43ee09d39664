#!/bin/bash
# Image locking as QEMU's (OFD locks), against a running qemu-io:
# - qemu-io holds the image read-write: kimg info/map/check/compare fail
#   with one "kimg: " line about the lock (compare: exit 2); with -U they
#   succeed and print what qemu-img -U prints; create over it fails and
#   leaves it untouched; check -r with -U is refused.
# - qemu-io holds it read-only: reading works, check -r all fails (needs
#   the write lock), the image is untouched.
# - qemu-io writes a file an image names (a flat VMDK's extent, a qcow2
#   external data file): convert of that image fails as qemu-img 7.2's
#   does (its lock covers the files the source names) and writes nothing;
#   info, check, map, measure, compare and dd lock only the image file and
#   go on, as qemu-img's do; convert -U goes on.
# The other half (qemu-img blocked while kimg holds an image) needs a
# long-running kimg command; it is skipped until there is one.
. "$(dirname "$0")/lib.sh"
fixtures
cp "$FX/v3.qcow2" img.qcow2
qemu-img convert -O raw img.qcow2 flat.raw
mkfifo ctl
# hold IMG [-r]: start qemu-io on IMG (read-write, or read-only with -r) and
# wait until it holds its lock: byte 101 (write permission) or 100
# (consistent read), as QEMU's file locking lays them out.
hold() {
    local img=$1; shift
    qemu-io "$@" -f "${HOLD_FMT:-qcow2}" "$img" < ctl > io.log 2>&1 &
    io_pid=$!; _tap_bg_pids="${_tap_bg_pids:-} $io_pid"
    exec 3> ctl
    local i byte=101; [ "${1:-}" = -r ] && byte=100
    for i in $(seq 1000); do    # up to 10 s
        locked_byte "$img" $byte && return 0
        kill -0 "$io_pid" 2> /dev/null || break
        nap 0.01
    done
    diag "qemu-io never took its lock: $(< io.log)"; return 1
}
release() { kill -0 "$io_pid" 2> /dev/null && echo quit >&3; exec 3>&-; wait "$io_pid" 2> /dev/null; }
trap '' PIPE

before=$(sha img.qcow2)
ok "qemu-io holds img.qcow2 read-write" hold img.qcow2
for cmd in "info" "info --output=json" "map --output=json" "check" "check --output=json"; do
    kimg $cmd img.qcow2
    isnt "$RC" 0 "$cmd while qemu-io writes: fails"
    err_line "$cmd while qemu-io writes"
    like "$(head -1 "$T/err")" "[Ll]ock" "$cmd while qemu-io writes: the error is about the lock"
    oracle "$cmd -U while qemu-io writes" $cmd -U img.qcow2
done
kimg compare img.qcow2 flat.raw
is "$RC" 2 "compare while qemu-io writes: exit 2"
err_line "compare while qemu-io writes"
oracle "compare -U while qemu-io writes" compare -U img.qcow2 flat.raw
kimg check -r all -U img.qcow2
is "$RC" 1 "check -r all -U: refused (exit 1)"
kimg create -q -f qcow2 img.qcow2 1M
is "$RC" 1 "create over an image qemu-io holds: exit 1"
err_line "create over a held image"
release
is "$(sha img.qcow2)" "$before" "the held image was not modified"

ok "qemu-io holds img.qcow2 read-only" hold img.qcow2 -r
oracle "info while qemu-io reads" info --output=json img.qcow2
kimg check -r all img.qcow2
is "$RC" 1 "check -r all while qemu-io reads: exit 1 (no write lock)"
err_line "check -r all while qemu-io reads"
kimg create -q -f qcow2 img.qcow2 1M
is "$RC" 1 "create over an image qemu-io reads: exit 1"
release
is "$(sha img.qcow2)" "$before" "the image read by qemu-io was not modified"

qemu-img create -q -f vmdk -o subformat=monolithicFlat flat.vmdk 4M
qemu-io -f vmdk -c 'write -P 0x5a 1M 64k' flat.vmdk > /dev/null
qemu-img create -q -f qcow2 -o data_file=data.raw ext.qcow2 4M
qemu-io -f qcow2 -c 'write -P 0x5a 1M 64k' ext.qcow2 > /dev/null
for pair in flat.vmdk:flat-flat.vmdk ext.qcow2:data.raw; do
    img=${pair%%:*} named=${pair#*:}
    before=$(sha "$named")
    HOLD_FMT=raw
    ok "qemu-io holds $named (named by $img) read-write" hold "$named"
    rm -f out.raw
    qimg convert -O raw "$img" out.raw
    rm -f out.raw
    kimg convert -O raw "$img" out.raw
    is "$RC" "$QRC" "convert of $img while $named is written: exit $QRC as qemu-img's"
    err_line "convert of $img while $named is written"
    like "$(head -1 "$T/err")" "[Ll]ock" "  the error is about the lock"
    ok "  and writes no output" test ! -e out.raw
    oracle "convert -U of $img while $named is written" convert -U -O raw "$img" out.raw
    for cmd in "info --output=json" "check" "map --output=json" "measure -O qcow2"; do
        oracle "$cmd $img while $named is written" $cmd "$img"
    done
    oracle "compare $img while $named is written" compare "$img" "$img"
    oracle "dd of $img while $named is written" dd if="$img" of=dd.raw bs=64k count=20
    release
    is "$(sha "$named")" "$before" "$named was not modified"
done
HOLD_FMT=

skip "qemu-img blocked while kimg holds an image" "kimg has no long-running command yet"
done_testing
