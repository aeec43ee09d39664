#!/bin/bash
# kimg's error messages are qemu-img's, with "kimg:" for "qemu-img:"
# (scripts grep them: "Could not open", "Image is corrupt", "No such
# file"; glance takes any stderr as failure).  Each case runs the same
# failing command line through both tools on twin copies of the same files
# (tests/cli/msg-cases.sh: missing, unreadable and folder files, wrong -f,
# damaged headers, missing backing and data files, the corrupt flag, locks
# held by qemu-io, every command's usage errors, sizes, create options):
# the same exit code, the same stdout (create's "Formatting" line, printed
# before an option error with the size as given), and kimg's stderr is
# qemu-img's first line — kimg prints one line where qemu-img adds a hint
# ("Try 'qemu-img --help'", "Is another process using the image?").
# The cases kimg words differently on purpose are listed in KEPT with why;
# tests/cli/survey-messages.sh prints every difference.
# make check: every sixth case (lib.sh sampled 6: each group of the list
# in its turn, kept cases, a lock held and a case run as nobody among
# them); check-slow the rest.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/msg-cases.sh"
command -v setpriv > /dev/null || skip_all "setpriv not installed"
[ "$(id -u)" = 0 ] || skip_all "needs root (runs cases as nobody)"

# name -> why kimg keeps its own words (checked: still one kimg: line)
declare -A KEPT=(
    [info-ver1]="a version-1 header is qcow (v1) to qemu; kimg names the qcow2 version"
    [info-nobase-chain]="--backing-chain: kimg names the top image, as its other commands"
    [info-nobase-raw]="the same"
    [info-nobase-nofmt]="the same"
    [info-loop]="kimg finds the loop while opening the chain"
    [check-nobase]="kimg checks one layer without opening its backing file (exit 0)"
    [commit-base-locked]="kimg asks for the base's write lock at once"
    [snapshot-raw]="kimg refuses writes to a probed raw image"
    [amend-raw]="the same"
    [create-encrypt]="kimg does not create encrypted images"
)
msg_template "$T/tpl"
for c in "${MSG_CASES[@]}"; do
    sampled 6 || continue       # check: a sixth of the cases; check-slow: the rest
    name=${c%%|*}; args=${c#*|}
    msg_run_case "$args"
    if [ -n "${KEPT[$name]:-}" ]; then
        if [ "$MSG_KRC" = 0 ]; then
            pass "$name: kept (${KEPT[$name]})"
        else
            RC=$MSG_KRC; printf '%s\n' "$MSG_KERR" | grep -v '^WARNING\|^  ' > "$T/err"
            err_line "$name: kept (${KEPT[$name]})"
        fi
        continue
    fi
    is "$MSG_KRC" "$MSG_QRC" "$name: exit code as qemu-img's"
    is "$MSG_KERR" "$MSG_QERR1" "$name: stderr is qemu-img's first line"
    is "$MSG_KOUT" "$MSG_QOUT" "$name: stdout as qemu-img's"
done
done_testing
