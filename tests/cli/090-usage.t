#!/bin/bash
# Command-line usage as qemu-img's exit codes (0 for --help/--version/-h,
# 1 for no command, an unknown command, a missing file name, an unknown
# option), each error being one "kimg: " line on stderr (kimg's contract;
# qemu-img adds a "Try ... --help" line).  Output that cannot be written
# (stdout on /dev/full) is an error, exit 1, not a silent success.
. "$(dirname "$0")/lib.sh"
fixtures
kimg --version;  is "$RC" 0 "--version: exit 0"; like "$(head -1 "$T/out")" "kimg" "--version names kimg"
kimg --help;     is "$RC" 0 "--help: exit 0"
for sub in info map check compare create; do
    kimg $sub -h; is "$RC" 0 "$sub -h: exit 0 (qemu-img prints help)"
done
kimg;                           is "$RC" 1 "no command: exit 1";      err_line "no command"
kimg frobnicate;                is "$RC" 1 "unknown command: exit 1"; err_line "unknown command"
kimg info;                      is "$RC" 1 "info without a file: exit 1"; err_line "info without a file"
kimg info --bogus "$FX/v3.qcow2"; is "$RC" 1 "info --bogus: exit 1"; err_line "info --bogus"
kimg map -z "$FX/v3.qcow2";     is "$RC" 1 "map -z: exit 1";         err_line "map -z"
kimg info --output=xml "$FX/v3.qcow2"; is "$RC" 1 "info --output=xml: exit 1"; err_line "info --output=xml"
kimg check -r "$FX/v3.qcow2";   is "$RC" 1 "check -r without a value: exit 1"
kimg info "$FX/v3.qcow2" "$FX/v2.qcow2"; is "$RC" 1 "info with two files: exit 1"; err_line "info with two files"
if [ -w /dev/full ]; then
    for cmd in "info" "info --output=json" "map --output=json" "check --output=json" "info --backing-chain"; do
        RC=0; "$KIMG" $cmd "$FX/chain-top.qcow2" > /dev/full 2> "$T/err" || RC=$?
        is "$RC" 1 "$cmd > /dev/full: exit 1 (write error reported)"
        err_line "$cmd > /dev/full"
    done
else
    skip "stdout write errors" "/dev/full not available"
fi
done_testing
