#!/bin/bash
# amend of lazy_refcounts, data_file, data_file_raw, backing_file/_fmt
# (accepted only when unchanged, as qemu-img 7.2: rebase changes them),
# size (grows and shrinks with no --shrink, as qemu-img), and several
# options at once, applied in qemu-img's order, so that a refusal midway
# leaves what qemu-img leaves: against qemu-img on twins, exit code,
# stdout, the image's qemu-img info and content afterwards (also after a
# refusal), kimg's image clean.
# make check: one case of each kind and a third of the others and of the
# several-at-once matrix (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
fixtures
. "$KIMG_SRC/tests/cli/twins.sh"
. "$KIMG_SRC/tests/cli/twins-once.sh"   # (its cheaper twins, same_text, same_content)

# amend_case IMG OPTIONS [CHECK]: CHECK=nocheck when the image cannot be
# opened afterwards (a data file renamed), by either tool
amend_case() {
    local img=$1 o=$2 name="amend -o $2 $1" q1
    twins "$img"
    # (each tool from inside its folder, where qemu opens a data file;
    # cd by the shell itself: a subshell's fork costs ~5 ms here)
    cd "$T/q"; QRC=0; qemu-img amend -o "$o" "$img" > ../qout 2> ../qerr || QRC=$?
    cd "$T/k"; RC=0; "$KIMG" amend -o "$o" "$img" > ../out 2> ../err || RC=$?
    cd "$T"
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || { diag "kimg: $(< err) qemu-img: $(< qerr)"; return; }
    same_text out qout "$name: stdout as qemu-img's"
    if [ "$QRC" -ne 0 ]; then
        err_line "$name"
        # qemu-img's message (its first line, "qemu-img: " off) within kimg's
        IFS= read -r q1 < qerr || true
        if [[ $(< err) == *"${q1#qemu-img: }"* ]]; then pass "$name: qemu-img's message"
        else fail "$name: qemu-img's message" "got: $(< err)" "expected within: ${q1#qemu-img: }"; fi
    fi
    [ "${3:-}" = nocheck ] && return
    cd "$T/k"
    ok "$name: qemu-img check clean" check_clean "$img"
    qemu-img info --output=json "$img" > ../ki.json 2> /dev/null
    cd "$T/q"
    qemu-img info --output=json "$img" > ../qi.json 2> /dev/null
    cd "$T"
    PY="$PY -S" json_norm_files actual-size qi.json ki.json   # (json and sys: no site-packages)
    same_text ki.json.norm qi.json.norm "$name: qemu-img info as for qemu-img's amend"
    # (qemu-img compare, or of the flattened images for a data file; the
    # virtual size is info's)
    same_content "$name" "$img"
}

# sampled_case ARGS: amend_case ARGS in this part's sample (lib.sh
# sampled); the plain amend_case lines are what make check runs of each
# kind (a data file renamed, the backing file kept, the size shrunk); the
# sampled ones of a kind stand together, three or more in a row, so a
# third still takes one (lazy refcounts, backing file changes refused,
# sizes grown)
sampled_case() { sampled || return 0; amend_case "$@"; }

# lazy refcounts
sampled_case v3.qcow2 lazy_refcounts=on
sampled_case lazy-clean.qcow2 lazy_refcounts=off
sampled_case lazy-dirty.qcow2 lazy_refcounts=off
sampled_case lazy-dirty.qcow2 lazy_refcounts=on
sampled_case v2.qcow2 lazy_refcounts=off
# data files
sampled_case datafile.qcow2 data_file_raw=off
sampled_case datafile-raw.qcow2 data_file_raw=off
sampled_case datafile-raw.qcow2 data_file_raw=on
sampled_case datafile.qcow2 data_file=datafile.data
amend_case datafile.qcow2 data_file=new.data nocheck
is "$(qemu-img info --output=json k/datafile.qcow2 2>/dev/null | grep -c '"data-file": "new.data"')" \
   "$(qemu-img info --output=json q/datafile.qcow2 2>/dev/null | grep -c '"data-file": "new.data"')" \
   "data file renamed: recorded as qemu-img records it"
mv k/datafile.data k/new.data
ok "data file renamed, file moved: clean" eval '(cd k && check_clean datafile.qcow2)'
sampled_case datafile.qcow2 data_file= nocheck
# backing file: the same values pass, any change is refused
amend_case chain-mid.qcow2 backing_file=chain-base.raw,backing_fmt=raw
sampled_case chain-mid.qcow2 backing_file=chain-base.raw
sampled_case chain-mid.qcow2 backing_fmt=raw
sampled_case chain-mid.qcow2 backing_file=chain-base.raw,backing_fmt=qcow2
sampled_case chain-top.qcow2 backing_file=
sampled_case v3.qcow2 backing_file=v2.qcow2,backing_fmt=qcow2
sampled_case noformat-top.qcow2 backing_file=chain-base.raw
# size
amend_case v3.qcow2 size=1M
sampled_case v3.qcow2 size=8M
sampled_case v3.qcow2 size=0
sampled_case snap.qcow2 size=2M
sampled_case v2.qcow2 size=6M
sampled_case small-top.qcow2 size=3M
# several at once: what is applied before a refusal stays, as in qemu-img
# (8 option sets an image: a third of the cases takes each set once)
for img in v2.qcow2 rb8.qcow2 zero.qcow2; do
    for o in "refcount_bits=8,backing_file=foo" \
             "compat=1.1,refcount_bits=8,lazy_refcounts=on,backing_file=x" \
             "size=8M,compat=0.10" "refcount_bits=2,size=8M,data_file=x" \
             "compat=0.10,refcount_bits=8,lazy_refcounts=on" "lazy_refcounts=on,compat=0.10" \
             "size=1M,compat=0.10,lazy_refcounts=off" "compat=1.1,lazy_refcounts=on,size=5M"; do
        sampled || continue     # check: a third of the cases; check-slow: the rest
        amend_case "$img" "$o"
    done
done
sampled_case datafile.qcow2 data_file_raw=off,backing_file=x
done_testing
