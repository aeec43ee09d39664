#!/bin/bash
# survey-messages.sh — not a test: runs failing command lines through
# qemu-img and kimg on twin copies of the same files and prints, for each
# case, qemu-img's stderr (qemu-img: → kimg:) and stdout next to kimg's
# where they differ (all cases with -v); kimg's one line matches when it
# is qemu-img's first line.  Used to bring kimg's messages to
# qemu-img's wording; tests/cli/091-messages.t asserts the matching ones.
#   KIMG=build/kimg KIMG_BUILD=$PWD/build KIMG_SRC=$PWD tests/cli/survey-messages.sh [-v] [FILTER]
. "$(dirname "$0")/msg-cases.sh"
verbose=0; [ "${1:-}" = -v ] && { verbose=1; shift; }
filter=${1:-}
msg_template "$T/tpl"
same=0; diff=0
for c in "${MSG_CASES[@]}"; do
    name=${c%%|*}; args=${c#*|}
    [ -n "$filter" ] && [[ $name != *$filter* ]] && continue
    msg_run_case "$args"
    if [ "$MSG_QERR1" = "$MSG_KERR" ] && [ "$MSG_QOUT" = "$MSG_KOUT" ] && [ "$MSG_QRC" = "$MSG_KRC" ]; then
        same=$((same + 1)); [ $verbose = 1 ] || continue
        echo "== $name: SAME ($args)"
    else
        diff=$((diff + 1)); echo "== $name: DIFF ($args)"
    fi
    echo "   qemu-img rc=$MSG_QRC: $(printf '%s' "$MSG_QERR" | head -4 | sed '2,$s/^/                 /')"
    [ "$MSG_QERR1" = "$MSG_KERR" ] && [ "$MSG_QRC" = "$MSG_KRC" ] ||
    echo "   kimg     rc=$MSG_KRC: $(printf '%s' "$MSG_KERR" | head -4 | sed '2,$s/^/                 /')"
    [ "$MSG_QOUT" = "$MSG_KOUT" ] || printf '   stdout q: %s\n   stdout k: %s\n' "$(head -c 300 <<< "$MSG_QOUT")" "$(head -c 300 <<< "$MSG_KOUT")"
done
echo "# $same same, $diff different"
