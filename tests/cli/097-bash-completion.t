#!/bin/bash
# bash completion (issue 16): completion/kimg.bash sourced into a bash
# without bash-completion and into one with it (when installed), COMP_WORDS
# split as readline splits them (blanks and '='), _kimg called, COMPREPLY
# checked: the subcommands of `kimg --help`; for every command, the options
# `kimg CMD --help` prints (parsed here on its own); -f/-O/-F values from
# `kimg --formats`; --output= values; file names; dd's operands.  `make
# install` puts it in BASHCOMPDIR (bash-completion's folder by default) as
# "kimg"; `make uninstall` removes it.
# make check: every command's options for a third of the commands (lib.sh
# sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
COMP=$KIMG_SRC/completion/kimg.bash
BC=/usr/share/bash-completion/bash_completion
mkdir work bin
ln -s "$KIMG" bin/kimg
touch work/disk1.qcow2 work/disk2.raw work/other.img
mkdir work/sub

kimg --formats
formats=$(sort "$T/out" | tr '\n' ' ')
like "$formats" '(^| )qcow2 .*raw ' "kimg --formats lists the registry (qcow2, raw, ...)"
is "$(wc -l < "$T/out")" "$(sort -u "$T/out" | wc -l)" "  each once"
kimg --help
subs=$(awk '/^Commands/ { on = 1; next } on && /^$/ { exit } on { print $1 }' "$T/out" | sort | tr '\n' ' ')

# every option of `kimg SUB --help`, parsed apart from the completion's
# awk: opts-SUB for each SUB given (one python for them all)
help_opts_make() {
    local sub
    for sub; do "$KIMG" "$sub" --help > "help-$sub" 2> /dev/null < /dev/null; done
    $PY -S - "$@" <<'EOF'
import re, sys
for sub in sys.argv[1:]:
    on, out = False, set()
    for l in open('help-' + sub).read().split('\n'):
        if l == 'Options:':
            on = True
            continue
        if not on:
            continue
        if l == '':
            break
        l = l[2:]
        if l.startswith(' '):
            continue
        for t in re.findall(r'(?:^|[\s,])(--?[A-Za-z0-9][A-Za-z0-9-]*)', re.split(r'\s{2,}', l)[0]):
            out.add(t)
    open('opts-' + sub, 'w').write(' '.join(sorted(out)) + '\n')
EOF
}
help_opts() { local l; read -r l < "opts-$1"; echo "$l"; }

# The completions, computed in one bash per mode: each line of "cases" is a
# command line (completed at its end); the answers come back one a line,
# sorted and joined by blanks.
cases=(
    "kimg "
    "kimg -"
    "kimg co"
    "kimg info --out"
    "kimg info --output="
    "kimg info --output=j"
    "kimg info --output "
    "kimg check -r "
    "kimg convert -O "
    "kimg convert -f q"
    "kimg convert --target-format "
    "kimg convert -B "
    "kimg convert -b "
    "kimg convert -F "
    "kimg create -B "
    "kimg create -F r"
    "kimg compare -F "
    "kimg measure --source-format "
    "kimg dd -O "
    "kimg clone -f "
    "kimg convert -t "
    "kimg resize --preallocation="
    "kimg convert --progress="
    "kimg convert --progress "
    "kimg info "
    "kimg info disk"
    "kimg info --backing-chain d"
    "kimg convert -O qcow2 disk1.qcow2 "
    "kimg dd "
    "kimg dd if="
    "kimg dd of=disk"
    "kimg dd bs="
    "kimg convert --ta"
    "kimg map --allow"
)
# the commands whose options are checked: a third in check, the rest in
# check-slow
osubs=
for sub in $subs; do
    sampled || continue         # check: a third of the commands; check-slow: the rest
    osubs+=" $sub"
done
for sub in $osubs; do cases+=("kimg $sub -"); done
printf '%s\n' "${cases[@]}" > cases
help_opts_make convert $osubs

run_cases() {
    local mode=$1
    (cd work && PATH=$T/bin:$PATH bash --norc --noprofile -c '
        mode=$1 comp=$2 bc=$3
        [ "$mode" = bash-completion ] && . "$bc"
        . "$comp" || exit 1
        complete -p kimg > /dev/null || exit 1
        while IFS= read -r line; do
            w=() cur=
            for ((i = 0; i < ${#line}; i++)); do
                c=${line:i:1}
                if [[ $c == " " ]]; then [[ -n $cur ]] && w+=("$cur"); cur=
                elif [[ $c == "=" ]]; then [[ -n $cur ]] && w+=("$cur"); w+=("="); cur=
                else cur+=$c; fi
            done
            w+=("$cur")
            COMP_WORDS=("${w[@]}") COMP_CWORD=$((${#w[@]} - 1))
            COMP_LINE=$line COMP_POINT=${#line} COMP_TYPE=9 COMP_KEY=9
            COMPREPLY=()
            _kimg kimg "${w[COMP_CWORD]}" "${w[COMP_CWORD - 1]}"
            # the answers sorted (LC_ALL=C, as sort) and joined by blanks,
            # empty ones dropped, in this bash: no process per case
            r=()
            for x in "${COMPREPLY[@]}"; do [[ -n $x ]] && r+=("$x"); done
            for ((i = 1; i < ${#r[@]}; i++)); do
                x=${r[i]}
                for ((j = i - 1; j >= 0; j--)); do [[ ${r[j]} > $x ]] || break; r[j + 1]=${r[j]}; done
                r[j + 1]=$x
            done
            s=; for x in "${r[@]}"; do s+=${s:+ }$x; done
            printf "%s\n" "$s"
        done' _ "$mode" "$COMP" "$BC" < ../cases > ../"answers-$mode" 2> ../"err-$mode")
}

modes=plain
if [ -r "$BC" ]; then modes="plain bash-completion"
else skip "with bash-completion loaded" "$BC not installed (Debian: bash-completion)"; fi
for mode in $modes; do
    run_cases "$mode"
    is "$(cat "err-$mode")" "" "$mode: sourcing and completing print nothing on stderr"
    is "$(wc -l < "answers-$mode")" "${#cases[@]}" "$mode: an answer for each case"
    mapfile -t got < "answers-$mode"
    # ans LINE: the answer to that case
    ans() { local i; for i in "${!cases[@]}"; do [ "${cases[i]}" = "$1" ] && { echo "${got[i]}"; return; }; done; echo "NO SUCH CASE"; }
    m="$mode:"
    is "$(ans "kimg ")" "$(echo $subs)" "$m the subcommands of kimg --help"
    is "$(ans "kimg -")" "--formats --help --version" "$m the options before a command"
    is "$(ans "kimg co")" "commit compare convert" "$m subcommands by prefix"
    is "$(ans "kimg info --out")" "--output=" "$m --out -> --output="
    is "$(ans "kimg info --output=")" "human json" "$m --output= values"
    is "$(ans "kimg info --output=j")" "json" "$m --output=j"
    is "$(ans "kimg info --output ")" "human json" "$m --output VALUE"
    is "$(ans "kimg check -r ")" "all leaks" "$m check -r values"
    for c in "kimg convert -O " "kimg convert --target-format " "kimg convert -F " "kimg create -B " \
             "kimg compare -F " "kimg measure --source-format " "kimg dd -O "; do
        is "$(ans "$c")" "$(echo $formats)" "$m '$c' completes kimg --formats"
    done
    is "$(ans "kimg convert -f q")" "qcow2" "$m convert -f q -> qcow2"
    is "$(ans "kimg create -F r")" "raw" "$m create -F r -> raw"
    # letters that name a file in one command and a format in another
    is "$(ans "kimg convert -B ")" "disk1.qcow2 disk2.raw other.img sub" "$m convert -B takes a file (7.2's backing file)"
    is "$(ans "kimg convert -b ")" "disk1.qcow2 disk2.raw other.img sub" "$m convert -b takes a file"
    is "$(ans "kimg clone -f ")" "disk1.qcow2 disk2.raw other.img sub" "$m clone -f takes a file"
    is "$(ans "kimg convert -t ")" "directsync none unsafe writeback writethrough" "$m cache modes"
    is "$(ans "kimg resize --preallocation=")" "falloc full metadata off" "$m preallocation modes"
    is "$(ans "kimg convert --progress=")" "human json" "$m convert --progress= values"
    is "$(ans "kimg convert --progress ")" "disk1.qcow2 disk2.raw other.img sub" "$m convert --progress takes no value (files next)"
    is "$(ans "kimg info ")" "disk1.qcow2 disk2.raw other.img sub" "$m file names"
    is "$(ans "kimg info disk")" "disk1.qcow2 disk2.raw" "$m file names by prefix"
    is "$(ans "kimg info --backing-chain d")" "disk1.qcow2 disk2.raw" "$m files after an option without a value"
    is "$(ans "kimg convert -O qcow2 disk1.qcow2 ")" "disk1.qcow2 disk2.raw other.img sub" "$m files after a format value"
    is "$(ans "kimg dd ")" "bs= count= if= isize= of= osize= skip=" "$m dd operands"
    is "$(ans "kimg dd if=")" "disk1.qcow2 disk2.raw other.img sub" "$m dd if= takes a file"
    is "$(ans "kimg dd of=disk")" "disk1.qcow2 disk2.raw" "$m dd of=disk"
    is "$(ans "kimg dd bs=")" "" "$m dd bs= offers nothing"
    is "$(ans "kimg map --allow")" "--allow-remote-backing" "$m --allow-remote-backing on every command"
    want=$(for t in $(help_opts convert); do [[ $t == --ta* ]] && echo "$t"; done | sort | tr '\n' ' ')
    is "$(ans "kimg convert --ta")" "${want% }" "$m convert --ta: the --target-* options"
    # every command: exactly its --help options (long ones taking words
    # also as --name=), and --allow-remote-backing
    bad=
    for sub in $osubs; do
        a=" $(ans "kimg $sub -") " h=" $(help_opts "$sub") --allow-remote-backing "
        for t in $h; do
            [[ $a == *" $t "* || $a == *" $t= "* ]] || bad="$bad $sub:$t(missing)"
        done
        for t in $a; do
            [[ $h == *" ${t%=} "* ]] || bad="$bad $sub:$t(extra)"
        done
    done
    is "$bad" "" "$m every command checked here completes exactly the options of its --help"
done

# ---- install / uninstall -------------------------------------------------------
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$KIMG_SRC" -o all "$@" > "$T/make.log" 2>&1; }
san=; [ "$(basename "$KIMG_BUILD")" = build-san ] && san=SANITIZE=1
D=$T/root
dir=$(pkg-config --variable=completionsdir bash-completion 2> /dev/null)
[ -n "$dir" ] || dir=/usr/local/share/bash-completion/completions
if mk $san install DESTDIR="$D" PREFIX=/usr/local; then
    is_file "$D$dir/kimg" "$COMP" "make install: completion/kimg.bash as $dir/kimg"
    mk $san uninstall DESTDIR="$D" PREFIX=/usr/local
    ok "make uninstall removes it" test ! -e "$D$dir/kimg"
else
    fail "make install" "$(tail -5 "$T/make.log")"
fi
D=$T/root2
bcd=/opt/k/share/bash-completion/completions
if mk $san install DESTDIR="$D" PREFIX=/opt/k BASHCOMPDIR=$bcd; then
    ok "make install BASHCOMPDIR=$bcd" test -f "$D$bcd/kimg"
    # bash-completion's loader finds it by the command's name, on first use
    if [ -r "$BC" ]; then
        r=$(PATH=$T/bin:$PATH BASH_COMPLETION_USER_DIR=$D/opt/k/share/bash-completion \
            bash --norc --noprofile -c '. "$1"; complete -p kimg 2> /dev/null || echo none;
                if declare -F _comp_load > /dev/null; then _comp_load kimg  # 2.12
                else __load_completion kimg; fi; complete -p kimg' _ "$BC" 2>&1)
        is "$r" "none
complete -F _kimg kimg" "  bash-completion's loader loads it when kimg is first completed"
    fi
    mk $san uninstall DESTDIR="$D" PREFIX=/opt/k BASHCOMPDIR=$bcd
    ok "  make uninstall with it removes it" test ! -e "$D$bcd/kimg"
else
    fail "make install BASHCOMPDIR=" "$(tail -5 "$T/make.log")"
fi
done_testing
