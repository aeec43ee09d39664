#!/bin/bash
# convert -l: the content of an internal snapshot, qemu-img's option forms
# (-l NAME-or-ID, -l snapshot.id=ID, -l snapshot.name=NAME, both, ",,"
# escapes) and semantics: the output equals qemu-img's byte for byte (raw)
# or in content (qcow2), the virtual size stays the image's as qemu-img
# keeps it; unknown snapshots, mismatched id/name, bad parameters, a bare
# name with several sources, a raw source: exit 1 with qemu-img's message
# as one "kimg: " line, no output file.
. "$(dirname "$0")/lib.sh"
fixtures
cd "$T"
cp "$FX/snap.qcow2" s.qcow2
kimg snapshot -c "third,x" s.qcow2            # made by kimg, a comma in the name
qemu-io -f qcow2 -c "write -P 0xc1 0 8k" s.qcow2 > /dev/null

same_output() {   # NAME LOPT [SOURCES...]: both tools, raw output compared
    local name=$1 l=$2; shift 2
    rm -f k.raw q.raw
    QRC=0; qemu-img convert -O raw -l "$l" "$@" q.raw 2> "$T/qerr" || QRC=$?
    kimg convert -O raw -l "$l" "$@" k.raw
    is "$RC" "$QRC" "$name: exit code $QRC as qemu-img's"
    if [ "$QRC" = 0 ]; then
        ok "$name: output as qemu-img's, byte for byte" cmp -s k.raw q.raw
    else
        err_line "$name"
        # (qemu-img's two-line messages are one line in kimg)
        [ "$(grep -c '' "$T/qerr")" = 1 ] &&
            is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" \
                "$name: qemu-img's message"
        ok "$name: no output file" test ! -e k.raw
    fi
}
same_output "-l first" first s.qcow2
same_output "-l 2 (an ID)" 2 s.qcow2
same_output "-l snapshot.name=second" snapshot.name=second s.qcow2
same_output "-l snapshot.id=1" snapshot.id=1 s.qcow2
same_output "-l snapshot.id=2,snapshot.name=second" snapshot.id=2,snapshot.name=second s.qcow2
same_output "-l snapshot.name=third,,x (kimg's snapshot)" "snapshot.name=third,,x" s.qcow2
same_output "-l 'third,x' (bare)" "third,x" s.qcow2
same_output "-l nosuch" nosuch s.qcow2
same_output "-l snapshot.id=1,snapshot.name=second (no such pair)" snapshot.id=1,snapshot.name=second s.qcow2
same_output "-l snapshot.id=first (an ID only)" snapshot.id=first s.qcow2
same_output "-l snapshot.foo=1" snapshot.foo=1 s.qcow2
same_output "-l with two sources" first s.qcow2 s.qcow2
same_output "-l snapshot.name= with two sources (the first source's)" snapshot.name=first s.qcow2 "$FX/v3.qcow2"

# the snapshot of a smaller disk: qemu-img keeps the current size
qemu-img create -q -f qcow2 rs.qcow2 1M
qemu-io -c "write -P 0xd1 0 64k" rs.qcow2 > /dev/null
kimg snapshot -c small rs.qcow2
qemu-img resize -q rs.qcow2 2M
qemu-io -c "write -P 0xd2 0 4k" -c "write -P 0xd3 1M 64k" rs.qcow2 > /dev/null
same_output "-l of a smaller snapshot" small rs.qcow2

# qcow2 output, and the source untouched
sum=$(sha s.qcow2)
rm -f k.qcow2
kimg convert -O qcow2 -l second s.qcow2 k.qcow2
is "$RC" 0 "-O qcow2 -l second: exit 0"
qemu-img convert -O raw -l second s.qcow2 q.raw
ok "-O qcow2 -l second: the snapshot's content" qemu_oracle_compare k.qcow2 q.raw
ok "-O qcow2 -l second: clean" check_clean k.qcow2
is "$(sha s.qcow2)" "$sum" "the source is unchanged"

# a raw source has no snapshots
rm -f k.raw
kimg convert -f raw -O raw -l x "$FX/holes.raw" k.raw
err_line "-l on a raw source"
ok "-l on a raw source: no output file" test ! -e k.raw
done_testing
