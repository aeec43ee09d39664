#!/bin/bash
# check of a raw image (probed or -f raw, also a qcow2 read with -f raw)
# exits 63 with qemu-img's message "This image format does not support
# checks" as the one stderr line, stdout empty in both output modes;
# a missing file and a bad -r value exit 1.
. "$(dirname "$0")/lib.sh"
fixtures
cd "$FX"
for args in "holes.raw" "-f raw holes.raw" "--output=json holes.raw" "-f raw v3.qcow2" "-r all -f raw odd.raw"; do
    oracle "check $args" check $args
    err_line "check $args"
    like "$(< "$T/err")" "^kimg: (.*: )?This image format does not support checks$" "check $args: qemu-img's message"
done
kimg check nosuch.qcow2; is "$RC" 1 "check of a missing file: exit 1"; err_line "check of a missing file"
kimg check -r bogus v3.qcow2; is "$RC" 1 "check -r bogus: exit 1"
done_testing
