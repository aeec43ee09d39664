#!/bin/bash
# QEMU 10.1's spellings (issue 16): every subcommand takes qemu-img 10.1's
# long option names beside 7.2's letters, with the same effect: each pair
# below runs the short and the long form on twin inputs and compares exit
# code, stdout and every file written (byte for byte); where qemu-img 7.2
# has the long name, against qemu-img too.  10.1's new letters (create and
# rebase -B for the backing format, convert -b for the backing file,
# snapshot -f, measure -s) as the old ones; 7.2's convert -B still the
# backing file.  `kimg CMD --help` / `-h`: exit 0, nothing on stderr, and
# every option of the command's getopt string and long-option table (read
# from cmd/CMD.c) on the page.  Under the name qemu-img, --version's first
# line matches cinder's version regex.
# make check: a third of the help pages and of the pairs beyond each
# command's first (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"

# ---- help pages, checked against the parsers' tables ----------------------
subs=$(sed -n 's/^    { "\([a-z]*\)", cmd_[a-z]*,$/\1/p' "$KIMG_SRC/cmd/main.c")
ok "main.c lists the subcommands" test "$(echo "$subs" | wc -w)" -ge 16
# every parser reads its letters from the optstring the check reads
ok "every getopt_long call uses its command's optstring" \
    test -z "$(grep -n 'getopt_long(argc, argv, "' "$KIMG_SRC"/cmd/*.c)"
for sub in $subs; do
    sampled || continue         # check: a third of the commands; check-slow: the rest
    for h in --help -h; do
        kimg $sub $h
        is "$RC" 0 "$sub $h: exit 0"
        is "$(< "$T/err")" "" "$sub $h: nothing on stderr (no option missing from the page)"
        like "$(head -1 "$T/out")" "^usage: kimg $sub " "$sub $h: usage line"
    done
    missing=$($PY - "$KIMG_SRC/cmd/$sub.c" "$T/out" <<'EOF'
import re, sys
src = open(sys.argv[1]).read()
page = open(sys.argv[2]).read()
opts = re.search(r'optstring\[\] = "([^"]*)"', src).group(1)
body = re.search(r'struct option longopts\[\] = \{(.*?)\n    \};', src, re.S).group(1)
tokens = ['-' + c for c in opts if c not in ':+-']
tokens += ['--' + n for n in re.findall(r'\{ "([a-z0-9-]+)",', body)]
def on_page(t):
    return re.search(r'(^|[\s\[|,(])' + re.escape(t) + r'(?![A-Za-z0-9-])', page, re.M)
print(' '.join(t for t in tokens if not on_page(t)))
EOF
)
    is "$missing" "" "$sub --help names every option of cmd/$sub.c's tables"
done

# ---- short and long forms on twins ------------------------------------------
mkdir tpl
qemu-img create -q -f qcow2 tpl/base.qcow2 4M
qemu-io -f qcow2 -c 'write -P 0x11 0 1M' -c 'write -P 0x22 2M 64k' tpl/base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 tpl/top.qcow2
qemu-io -f qcow2 -c 'write -P 0x33 1M 64k' tpl/top.qcow2 > /dev/null
qemu-img create -q -f qcow2 tpl/base2.qcow2 4M
qemu-img convert -O raw tpl/base.qcow2 tpl/base.raw
qemu-img snapshot -c snap1 tpl/base.qcow2
qemu-io -f qcow2 -c 'write -P 0x44 0 64k' tpl/base.qcow2 > /dev/null

# pair NAME "SHORT ARGS" "LONG ARGS": each in a fresh copy of tpl/.  pair
# is one of the sampled cases; pair_each (a command's first) runs in each part.
pair() {
    sampled || return 0         # check: a third of the pairs; check-slow: the rest
    pair_each "$@"
}
pair_each() {
    local name=$1 short=$2 long=$3 f r=0 src=$PWD
    rm -rf s l; cp -a tpl s; cp -a tpl l
    (cd s && eval "kimg $short"; echo "$RC" > ../s.rc; cp "$T/out" ../s.out)
    (cd l && eval "kimg $long"; echo "$RC" > ../l.rc; cp "$T/out" ../l.out; cp "$T/err" ../l.err)
    is "$(< l.rc)" "$(< s.rc)" "$name: exit code as the short form's" || { r=1; diag "$(< l.err)"; }
    is_file l.out s.out "$name: stdout as the short form's" || r=1
    for f in s/*; do
        f=${f#s/}
        cmp -s "s/$f" "l/$f" || { r=1; fail "$name: $f as the short form's"; }
    done
    [ $r = 0 ] && pass "$name: every file as the short form's"
    cd "$src"
}

pair_each "info" "-f qcow2 -U --output=json top.qcow2" \
            "--format qcow2 --force-share --output=json top.qcow2"
cd tpl; oracle "info --format (7.2 has it)" info --format qcow2 --force-share top.qcow2; cd ..
pair_each "map -s/-l" "-f qcow2 -s 64k -l 2M --output=json top.qcow2" \
                 "--format=qcow2 --start-offset=64k --max-length=2M --output=json top.qcow2"
cd tpl; oracle "map --start-offset (7.2 has it)" map --format qcow2 --start-offset 64k --max-length 2M --output=json top.qcow2; cd ..
pair_each "check" "-f qcow2 -q -U -T none top.qcow2" \
             "--format qcow2 --quiet --force-share --cache none top.qcow2"
pair "check -r" "-f qcow2 -r leaks --output=json base.qcow2" \
                "--format qcow2 --repair leaks --output=json base.qcow2"
cd tpl; oracle "check --repair (7.2 has it)" check --format qcow2 --repair leaks --output=json base2.qcow2; cd ..
pair_each "compare" "-f qcow2 -F raw -s -p -T writeback base.qcow2 base.raw" \
               "--a-format qcow2 --b-format raw --strict --progress --cache writeback base.qcow2 base.raw"
pair "compare -q" "-q -U top.qcow2 base.qcow2" "--quiet --force-share top.qcow2 base.qcow2"

pair_each "create -b/-F" "create -q -f qcow2 -b base.qcow2 -F qcow2 -o cluster_size=4k new.qcow2" \
    "create --quiet --format qcow2 --backing base.qcow2 --backing-format qcow2 --options cluster_size=4k new.qcow2"
pair "create -B (10.1's backing format)" "create -f qcow2 -b base.qcow2 -F qcow2 new.qcow2" \
    "create -f qcow2 -b base.qcow2 -B qcow2 new.qcow2"
pair "create --backing-unsafe" "create -f qcow2 -u -b nothere.qcow2 -F qcow2 new.qcow2 1M" \
    "create -f qcow2 --backing-unsafe -b nothere.qcow2 --backing-format=qcow2 new.qcow2 1M"
rm -rf c7; cp -a tpl c7; cd c7
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 q7.qcow2
kimg create -q --format qcow2 --backing base.qcow2 -B qcow2 k7.qcow2
ok "create --backing -B: the image qemu-img 7.2 makes with -b -F" cmp -s k7.qcow2 q7.qcow2
qemu-img convert -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 q7c.qcow2
kimg convert -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 k7c.qcow2
is "$RC" 0 "convert -B (7.2's callers): exit 0"
is "$(qemu-img info --output=json k7c.qcow2 | grep '"backing-filename"')" \
   "$(qemu-img info --output=json q7c.qcow2 | grep '"backing-filename"')" \
   "convert -B: the overlay names base.qcow2, as qemu-img 7.2's"
ok "convert -B: same guest content as qemu-img 7.2's" qemu_oracle_compare k7c.qcow2 q7c.qcow2
cd ..

pair_each "convert" "convert -f qcow2 -O qcow2 -o cluster_size=16k -S 8k -m 2 -W -q -t writeback -T none top.qcow2 out.qcow2" \
    "convert --source-format qcow2 --target-format qcow2 --target-format-options cluster_size=16k --sparse-size 8k --parallel 2 --oob-writes --quiet --target-cache writeback --source-cache none top.qcow2 out.qcow2"
pair "convert -b (10.1) = -B (7.2)" "convert -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 out.qcow2" \
    "convert -O qcow2 -b base.qcow2 -F qcow2 top.qcow2 out.qcow2"
pair "convert --backing" "convert -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 out.qcow2" \
    "convert --target-format=qcow2 --backing=base.qcow2 --backing-format=qcow2 top.qcow2 out.qcow2"
pair "convert -n" "convert -n -f qcow2 -O qcow2 top.qcow2 base2.qcow2" \
    "convert --no-create --source-format qcow2 --target-format qcow2 top.qcow2 base2.qcow2"
pair "convert -l" "convert -l snap1 -O raw base.qcow2 out.raw" \
    "convert --snapshot snap1 -O raw base.qcow2 out.raw"
pair "convert -c" "convert -c -O qcow2 base.raw out.qcow2" "convert --compress -O qcow2 base.raw out.qcow2"
pair "convert -C" "convert -C -O raw base.raw out.raw" \
    "convert --copy-range-offloading -O raw base.raw out.raw"
pair "convert --progress (10.1: -p)" "convert -p -O raw base.raw out.raw" \
    "convert --progress -O raw base.raw out.raw"
# kimg's --progress=json, also as two words (elapsed times dropped)
for form in "--progress=json" "--progress json"; do
    rm -rf s; cp -a tpl s; cd s
    kimg convert $form -O raw base.raw out.raw
    is "$RC" 0 "convert $form: exit 0"
    is "$(sed 's/, "elapsed": [0-9.]*//' "$T/out" | tail -1)" '{"done": 4194304, "total": 4194304}' \
        "convert $form: JSON progress lines"
    cd ..
done

pair_each "snapshot -l" "snapshot -l base.qcow2" "snapshot --list base.qcow2"
pair "snapshot -f" "snapshot -l base.qcow2" "snapshot -f qcow2 -l base.qcow2"
pair "snapshot --format" "snapshot -l -U base.qcow2" "snapshot --format qcow2 --list --force-share base.qcow2"
pair "snapshot -a" "snapshot -a snap1 base.qcow2" "snapshot --apply snap1 base.qcow2"
pair "snapshot -d" "snapshot -q -d snap1 base.qcow2" "snapshot --quiet --delete snap1 base.qcow2"
rm -rf s; cp -a tpl s; cd s
kimg snapshot --create snap2 base.qcow2
is "$RC" 0 "snapshot --create: exit 0"
like "$(qemu-img snapshot -l base.qcow2)" "snap2" "snapshot --create: qemu-img lists it"
kimg snapshot -f raw -c snap3 base.raw
like "$(< "$T/err")" "Format driver 'raw' does not support internal snapshots" \
    "snapshot -f raw -c: the raw driver answers (-f is used, no probing refusal)"
kimg snapshot --format raw --list base.qcow2
is "$RC:$(< "$T/out")" "0:" "snapshot --format raw on a qcow2 file: read as raw, no snapshots"
cd ..

pair_each "rebase -u" "rebase -u -b base2.qcow2 -F qcow2 top.qcow2" \
    "rebase --backing-unsafe --backing base2.qcow2 --backing-format qcow2 top.qcow2"
pair "rebase -B (10.1's backing format)" "rebase -u -b base2.qcow2 -F qcow2 top.qcow2" \
    "rebase -u -b base2.qcow2 -B qcow2 top.qcow2"
pair "rebase (safe)" "rebase -f qcow2 -t writeback -T writeback -q -b base2.qcow2 -F qcow2 top.qcow2" \
    "rebase --format qcow2 --cache writeback --backing-cache writeback --quiet --backing base2.qcow2 --backing-format qcow2 top.qcow2"
pair "rebase -p" "rebase -p -b base2.qcow2 -F qcow2 top.qcow2" \
    "rebase --progress -b base2.qcow2 -F qcow2 top.qcow2"

pair_each "commit" "commit -f qcow2 -t writeback -q top.qcow2" \
    "commit --format qcow2 --cache writeback --quiet top.qcow2"
pair "commit -d -r" "commit -d -r 1G top.qcow2" "commit --drop --rate-limit 1G top.qcow2"
pair "commit -b" "commit -b base.qcow2 top.qcow2" "commit --base base.qcow2 top.qcow2"
# commit's intermediate progress steps depend on the workers' timing
rm -rf s; cp -a tpl s; cd s
kimg commit --progress top.qcow2
is "$RC" 0 "commit --progress: exit 0"
like "$(tr '\r' '\n' < "$T/out" | grep -v '^$' | grep -v committed | tail -1)" '^    \(100\.00/100%\)$' "commit --progress: qemu-img's progress lines, as -p"
cd ..

pair_each "resize" "resize -f qcow2 -q base2.qcow2 +1M" "resize --format qcow2 --quiet base2.qcow2 +1M"
pair_each "amend" "amend -f qcow2 -o compat=0.10 -t writeback -q base2.qcow2" \
    "amend --format qcow2 --options compat=0.10 --cache writeback --quiet base2.qcow2"
pair "amend -p" "amend -p -o lazy_refcounts=on base2.qcow2" \
    "amend --progress --options lazy_refcounts=on base2.qcow2"

pair_each "measure -s (10.1)" "measure --size 1G -O qcow2" "measure -s 1G -O qcow2"
pair "measure --target-format" "measure --size 1G -O qcow2 -o cluster_size=4k --output=json" \
    "measure --size 1G --target-format qcow2 --target-format-options cluster_size=4k --output=json"
pair "measure --options" "measure -f qcow2 -O qcow2 -o cluster_size=4k -l snap1 base.qcow2" \
    "measure --source-format qcow2 --target-format qcow2 --options cluster_size=4k --snapshot snap1 base.qcow2"
pair "measure --format" "measure -f qcow2 -U base.qcow2" "measure --format qcow2 --force-share base.qcow2"
oracle "measure --size (7.2 has it)" measure --size 1G -O qcow2 --output=json

pair_each "dd" "dd -f qcow2 -O raw bs=64k count=4 if=top.qcow2 of=out.raw" \
    "dd --format qcow2 --output-format raw bs=64k count=4 if=top.qcow2 of=out.raw"
pair "dd -n -l" "dd -n -l snap1 -U if=base.qcow2 of=base.raw" \
    "dd --no-create --snapshot snap1 --force-share if=base.qcow2 of=base.raw"

pair_each "bitmap" "bitmap -f qcow2 --add -g 64k base2.qcow2 b0" \
    "bitmap --format qcow2 --add --granularity 64k base2.qcow2 b0"
pair_each "checksum" "checksum -f qcow2 -a sha256 top.qcow2" "checksum --format qcow2 --algorithm sha256 top.qcow2"

# ---- errors stay as before ---------------------------------------------------
kimg convert --progress=xml -O raw tpl/base.raw x.raw
err_line "convert --progress=xml"
kimg create --backing-format
is "$RC" 1 "create --backing-format without a value: exit 1"; err_line "create --backing-format without a value"
kimg info --frobnicate tpl/base.qcow2
err_line "info --frobnicate"

# ---- the name qemu-img -------------------------------------------------------
mkdir bin && ln -s "$KIMG" bin/qemu-img
run bin/qemu-img --version
is "$RC" 0 "qemu-img --version (kimg through a symlink): exit 0"
v=$($PY -c 'import re,sys; m=re.search(r"qemu-img version ([0-9\.]*)", sys.stdin.readline()); print(m.group(1) if m else "")' < "$T/out")
is "$v" "7.2.0" "cinder's regex reads 7.2.0 from the first line"
like "$(head -1 "$T/out")" '^qemu-img version 7\.2\.0 \(kimg [0-9.]+\)$' "first line: qemu-img version 7.2.0 (kimg X.Y.Z)"
run bin/qemu-img -V
like "$(head -1 "$T/out")" '^qemu-img version 7\.2\.0 ' "qemu-img -V: the same line"
kimg --version
like "$(head -1 "$T/out")" '^kimg version [0-9.]+$' "under its own name: kimg version X.Y.Z"
run bin/qemu-img info --output=json tpl/base.raw
is "$RC" 0 "the qemu-img name runs subcommands as kimg"
done_testing
