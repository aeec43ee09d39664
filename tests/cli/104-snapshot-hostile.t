#!/bin/bash
# Hostile snapshot tables and snapshot L1 tables: every snapshot command
# (-l, -c, -a, -d, convert -l, info) either works or fails with one
# "kimg: " line and exit 1, never crashes or hangs; a refused command
# leaves the file as it was, a writing one that succeeds leaves it clean
# in qemu-img check (or no worse than it was).  Damage: snapshot counts
# (huge, past the table), table offset (unaligned, past the end, 0), entry
# fields (name and ID lengths past the end, too much extra data, huge/
# unaligned/out-of-file L1 tables, a huge disk size), L1 tables naming the
# refcount table, a cluster past the end, or one L2 table twice; a
# truncated table.  And odd but valid entries listed as qemu-img lists
# them: huge VM state size, icount past INT64_MAX, a name with a control
# character (escaped).
# make check: a third of the damaged images get every command (lib.sh
# sampled), every kind of damage among them; check-slow the rest.
. "$(dirname "$0")/lib.sh"
KIMG_TIMEOUT=30     # hostile input: each command under timeout, a hang fails on its own
fixtures
cd "$T"
cp "$FX/snap.qcow2" base.qcow2
so=$(get_be 8 base.qcow2 64)            # snapshot table
l1=$(get_be 8 base.qcow2 $so)           # snapshot 1's L1 table
cs=65536

# hostile NAME: run every command on copies of h.qcow2 (a repeated case)
hostile() {
    sampled || return 0
    local name=$1 a before cin=0 cout
    before=$(sha h.qcow2)
    qemu-img check h.qcow2 > /dev/null 2>&1 || cin=$?
    for a in "snapshot -l" "snapshot -c new" "snapshot -a 1" "snapshot -d first" \
             "convert -O raw -l 1" "info --output=json"; do
        cp h.qcow2 w.qcow2
        rm -f out.raw
        if [ "${a%% *}" = convert ]; then kimg $a w.qcow2 out.raw; else kimg $a w.qcow2; fi
        if [ "$RC" = 0 ]; then
            pass "$name: $a: exit 0"
            case $a in snapshot\ -[cad]*)
                cout=0; qemu-img check w.qcow2 > /dev/null 2>&1 || cout=$?
                [ "$cout" = 0 ] || [ "$cout" = "$cin" ] ||
                    fail "$name: $a: qemu-img check exit $cout (input: $cin)"
            esac
        else
            is "$RC" 1 "$name: $a: exit 1 (no crash, no hang)" || diag "$(head -3 "$T/err")"
            [ "$(grep -c '' "$T/err")" = 1 ] && head -1 "$T/err" | grep -q '^kimg: ' ||
                fail "$name: $a: one kimg: line" "$(head -3 "$T/err")"
            is "$(sha w.qcow2)" "$before" "$name: $a: file unchanged"
        fi
    done
}
patch() { cp base.qcow2 h.qcow2; while [ $# -gt 0 ]; do put_be "$1" h.qcow2 "$2" "$3"; shift 3; done; }

patch 4 60 4294967295;                     hostile "nb_snapshots 2^32-1"
patch 4 60 65536;                          hostile "nb_snapshots 65536 (table past the end)"
patch 4 60 3;                              hostile "nb_snapshots one past the table"
patch 8 64 $((so + 8));                    hostile "table offset unaligned"
patch 8 64 $((1 << 40));                   hostile "table offset past the end"
patch 8 64 0;                              hostile "table offset 0"
patch 2 $((so + 14)) 65535;                hostile "name length 65535"
patch 2 $((so + 12)) 65535;                hostile "ID length 65535"
patch 4 $((so + 36)) 1025;                 hostile "extra data 1025 bytes"
patch 4 $((so + 36)) 4294967295;           hostile "extra data 2^32-1 bytes"
patch 4 $((so + 8)) 2147483647;            hostile "L1 size 2^31-1"
patch 4 $((so + 8)) 4194304;               hostile "L1 size 4M entries (past the end)"
patch 8 $so $((l1 + 8));                   hostile "L1 offset unaligned"
patch 8 $so $((1 << 44));                  hostile "L1 offset past the end"
patch 8 $so 0;                             hostile "L1 offset 0"
patch 8 $((so + 48)) $((1 << 62));         hostile "disk size 2^62"
patch 8 $l1 "$(get_be 8 base.qcow2 48)";   hostile "L1 entry naming the refcount table"
patch 8 $l1 $((1 << 40));                  hostile "L1 entry past the end"
patch 4 $((so + 8)) 2 8 $((l1 + 8)) "$(get_be 8 base.qcow2 $l1)"
                                           hostile "L1 table naming one L2 table twice"

# odd but valid: listed as qemu-img lists them
patch 4 $((so + 32)) 0 8 $((so + 40)) $((1 << 50)); oracle "VM state size 1 PiB: -l" snapshot -l h.qcow2
hostile "VM state size 1 PiB"
patch 8 $((so + 56)) $((0x8000000000000001)); oracle "icount past INT64_MAX: -l" snapshot -l h.qcow2
cp base.qcow2 h.qcow2; poke h.qcow2 $((so + 40 + 24 + 2)) 01   # ID "1", name "first" → "f\x01rst"
kimg snapshot -l h.qcow2
like "$(sed -n 3p "$T/out")" '^1 +f\\x01rst ' "a control character in a name is escaped"
hostile "control character in a name"
# the table cut short comes last: the 22nd case, in make check's third
cp base.qcow2 h.qcow2; truncate -s $((so + 50)) h.qcow2
                                           hostile "table cut short"
done_testing
