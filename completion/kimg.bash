# completion/kimg.bash — bash completion for kimg (bash-completion's
# conventions: one file named after the command, installed by `make
# install` into `pkg-config --variable=completionsdir bash-completion`).
#
# Nothing here lists kimg's options: they are read at completion time from
# the kimg being completed, so they cannot drift from it —
#   subcommands          the "Commands" list of `kimg --help`
#   a command's options  the "Options:" block of `kimg CMD --help`, and
#                        what each takes from the placeholder after it
#                        (FMT: a format; human|json, leaks|all: those words;
#                        FILE, BACKING_FILE, BASE: a file name)
#   format names         `kimg --formats` (the driver registry)
# Works with bash-completion loaded (_init_completion, _filedir) and
# without it (plain COMP_WORDS and compgen).

# _kimg_run KIMG ARGS...: run the kimg being completed, stderr dropped
_kimg_run()
{
    local k=$1
    shift
    [[ $k == "~/"* ]] && k=$HOME/${k#"~/"}
    "$k" "$@" 2> /dev/null < /dev/null
}

# _kimg_opts KIMG CMD: one line per option of `kimg CMD --help`,
# "TOKEN KIND" (KIND: none, fmt, file, words:A|B, eqwords:A|B (only as
# --opt=A), or arg)
_kimg_opts()
{
    _kimg_run "$1" "$2" --help | awk '
        /^Options:/ { on = 1; next }
        on && /^$/ { exit }
        on && /^   / { next }   # a description continued on its own line
        on {
            line = substr($0, 3)
            col = index(line, "  ")
            if (col) line = substr(line, 1, col - 1)
            # each option takes the placeholder written after it, the
            # aliases before it too ("-b, -B, --backing FILE"), up to the
            # previous placeholder ("--connect URI, --check OPT, --replace")
            n = split(line, w, /[ ,]+/)
            kind = "none"
            for (i = n; i >= 1; i--) {
                t = w[i]
                if (t == "") continue
                if (t ~ /^--?[A-Za-z0-9][A-Za-z0-9-]*=/) {   # --progress=json|human
                    v = t; sub(/^[^=]*=/, "", v); sub(/=.*/, "", t)
                    print t " eqwords:" v   # a value only as --opt=VALUE
                } else if (t ~ /^--?[A-Za-z0-9][A-Za-z0-9-]*$/ || t ~ /^[a-z]+=$/) {
                    print t " " kind
                } else if (t ~ /^(FMT|FORMAT)$/) kind = "fmt"
                else if (t ~ /^(FILE|BACKING_FILE|BASE)$/) kind = "file"
                else if (t ~ /^[a-z]+(\|[a-z]+)+$/) kind = "words:" t
                else kind = "arg"
            }
        }'
}

# _kimg_kind KIMG CMD OPTION SPLIT: the KIND of OPTION in CMD (empty:
# unknown); SPLIT true: its value is written after '='
_kimg_kind()
{
    local t k seen=
    while read -r t k; do
        if [[ $k == eqwords:* ]]; then
            [[ $4 == true ]] || continue
            k=${k#eq}
        fi
        if [[ $t == "$3" ]]; then
            # an option taking a word is listed once with it: prefer that
            [[ $k != none ]] && { echo "$k"; return; }
            seen=$k
        fi
    done < <(_kimg_opts "$1" "$2")
    echo "$seen"
}

_kimg_files()
{
    if declare -F _filedir > /dev/null; then
        _filedir
    else
        compopt -o filenames 2> /dev/null
        local IFS=$'\n'
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}

# _kimg_values KIND: complete the value of an option of this KIND
_kimg_values()
{
    local kind=$1 kimg=$2 prevopt=$3
    case $prevopt in
        -t | -T | --cache | --target-cache | --source-cache | --backing-cache)
            COMPREPLY=($(compgen -W "none writeback writethrough directsync unsafe" -- "$cur"))
            return ;;
        --preallocation)
            COMPREPLY=($(compgen -W "off metadata falloc full" -- "$cur"))
            return ;;
    esac
    case $kind in
        fmt) COMPREPLY=($(compgen -W "$(_kimg_run "$kimg" --formats)" -- "$cur")) ;;
        file) _kimg_files ;;
        words:*)
            local w=${kind#words:}
            COMPREPLY=($(compgen -W "${w//|/ }" -- "$cur")) ;;
        *) COMPREPLY=() ;;
    esac
}

_kimg()
{
    local cur prev words cword split=false
    if declare -F _init_completion > /dev/null; then
        _init_completion -s || return
    else
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
        cur=${words[cword]}
        prev=${words[cword - 1]:-}
        # '=' is a word break: "--output=js" arrives as "--output" "=" "js"
        if [[ $cur == = ]]; then
            cur= prev=${words[cword - 1]} split=true
        elif [[ $prev == = && $cword -ge 2 ]]; then
            prev=${words[cword - 2]} split=true
        fi
    fi
    local kimg=${words[0]}

    if ((cword == 1)); then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--help --version --formats" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$(_kimg_run "$kimg" --help |
                awk '/^Commands/ { on = 1; next } on && /^$/ { exit } on { print $1 }')" -- "$cur"))
        fi
        return
    fi
    local cmd=${words[1]}

    # the value of the option before (or of --opt=, dd's if=/of=)
    local kind
    if [[ $prev == -* ]]; then
        kind=$(_kimg_kind "$kimg" "$cmd" "$prev" "$split")
        if [[ -n $kind && $kind != none ]]; then
            _kimg_values "$kind" "$kimg" "$prev"
            return
        fi
    elif $split && [[ $cmd == dd ]]; then
        case $prev in
            if | of) _kimg_files ;;
            *) COMPREPLY=() ;;
        esac
        return
    fi
    # with bash-completion absent, a dd operand word "if=x" split by '='
    if [[ $cmd == dd && $cur == *=* ]]; then
        local op=${cur%%=*}
        cur=${cur#*=}
        case $op in
            if | of) _kimg_files ;;
            *) COMPREPLY=() ;;
        esac
        return
    fi

    if [[ $cur == -* ]]; then
        local t k list=--allow-remote-backing
        while read -r t k; do
            [[ $t == -* ]] || continue
            case $t:$k in
                --*:words:* | --*:eqwords:*) list="$list $t=" ;;
                *) list="$list $t" ;;
            esac
        done < <(_kimg_opts "$kimg" "$cmd")
        COMPREPLY=($(compgen -W "$list" -- "$cur"))
        [[ ${COMPREPLY-} == *= ]] && compopt -o nospace 2> /dev/null
        return
    fi
    if [[ $cmd == dd ]]; then
        local ops
        ops=$(_kimg_opts "$kimg" dd | awk '$1 ~ /=$/ { print $1 }')
        COMPREPLY=($(compgen -W "$ops" -- "$cur"))
        compopt -o nospace 2> /dev/null
        return
    fi
    _kimg_files
} &&
    complete -F _kimg kimg
