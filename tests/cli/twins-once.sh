# twins-once.sh — twins.sh's `twins IMG` with the same contract (q/ and
# k/ hold links to every image and their own copies of IMG and of its
# data file), cheaper for files that call it once a case: the folders and
# their links are made once; each call copies IMG over its links, and
# copies the previous call's images over again, pristine (a resized or
# amended backing file must not leak into a later case): one cp a folder,
# where twins.sh rebuilt both folders (6 processes and some 260 link
# syscalls, ~90 ms a case on the test VM).  Source it after lib.sh and
# `fixtures` (and twins.sh, whose twins it replaces).  $twins_src: where
# the images are (default $FX; every image must be there at the first
# call, which makes the links).  Used by 111, 113, 115, 121, 122, 123.
_twins_prev=()
twins() {
    local f src=${twins_src:-$FX} new=() all
    for f in "$1" "${1%.qcow2}.data"; do [ -e "$src/$f" ] && new+=("$src/$f"); done
    all=("${new[@]}")
    if [ ! -d q ]; then
        mkdir q k; ln -s "$src"/* q/; ln -s "$src"/* k/
    elif [ "${_twins_prev[*]}" != "${new[*]}" ]; then
        all+=("${_twins_prev[@]}")
    fi
    _twins_prev=("${new[@]}")
    [ ${#all[@]} -eq 0 ] || { cp --remove-destination -t q "${all[@]}"; cp --remove-destination -t k "${all[@]}"; }
}
# same_text GOT WANT NAME: is_file (byte-identical) without its cmp
# process, for small files: bash reads both (a NUL byte splits a read,
# so the pieces are compared one by one); is_file's diff on a failure.
same_text() {
    local -a a b; local i
    mapfile -d '' a < "$1"; mapfile -d '' b < "$2"
    if [ "${#a[@]}" -eq "${#b[@]}" ]; then
        for ((i = 0; i < ${#a[@]}; i++)); do [ "${a[i]}" = "${b[i]}" ] || break; done
        [ "$i" -lt "${#a[@]}" ] || { pass "$3"; return 0; }
    fi
    is_file "$@"
}
# twin_state NAME IMG DROP OP and same_content NAME IMG: twins.sh's, each
# tool run from inside its folder (where qemu opens a data file) by the
# shell's own cd, not a subshell (a fork costs ~5 ms on the test VM), the
# JSON compared by same_text.  twin_state leaves qemu-img check's output
# for k/IMG in $T/kcheck (its "Image end offset" line).
twin_state() {
    local name=$1 img=$2 drop=$3 op=$4 rc=0
    cd "$T/k"
    qemu-img check "$img" > ../kcheck 2>&1 || rc=$?
    qemu-img info --output=json "$img" > ../ki.json
    qemu-img map --output=json "$img" > ../km.json
    cd "$T/q"
    qemu-img info --output=json "$img" > ../qi.json
    qemu-img map --output=json "$img" > ../qm.json
    cd "$T"
    if [ "$rc" -eq 0 ]; then pass "$name: qemu-img check clean"
    else fail "$name: qemu-img check clean" "exit $rc: $(head -5 kcheck)"; fi
    PY="$PY -S" json_norm_files "$drop" qi.json ki.json qm.json km.json   # (json and sys: no site-packages)
    same_text ki.json.norm qi.json.norm "$name: qemu-img info as for qemu-img's $op"
    same_text km.json.norm qm.json.norm "$name: map as for qemu-img's $op (host layout aside)"
    same_content "$name" "$img"
}
same_content() {
    if [ -e "q/${2%.qcow2}.data" ]; then
        cd "$T/q"; qemu-img convert -O raw "$2" ../q.raw
        cd "$T/k"; qemu-img convert -O raw "$2" ../k.raw
        cd "$T"
        ok "$1: content as qemu-img's" qemu_oracle_compare k.raw q.raw
        rm -f q.raw k.raw
    else
        ok "$1: content as qemu-img's" qemu_oracle_compare k/"$2" q/"$2"
    fi
}
# end_offset VAR FILE: VAR = the "Image end offset" of qemu-img check's
# output in FILE (empty if none), read by bash
end_offset() {
    local l; printf -v "$1" ''
    while IFS= read -r l; do
        [[ $l == "Image end offset: "* ]] && printf -v "$1" %s "${l#Image end offset: }"
    done < "$2"
}
# grow IMG SIZE [OPTS...]: twins.sh's, as above
grow() {
    local img=$1 size=$2; shift 2
    local name="resize $* $img $size"
    twins "$img"
    cd "$T/q"; QRC=0; qemu-img resize "$@" "$img" "$size" > ../qout 2> ../qerr || QRC=$?
    cd "$T/k"; RC=0; "$KIMG" resize "$@" "$img" "$size" > ../out 2> ../err || RC=$?
    cd "$T"
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || { diag "kimg: $(< err) qemu-img: $(< qerr)"; return; }
    same_text out qout "$name: stdout as qemu-img's"
    [ "$QRC" -eq 0 ] || return 0
    # (a data file's holes decide map's "zero" there: host layout, dropped)
    local drop=actual-size,offset
    [ -e "q/${img%.qcow2}.data" ] && drop=$drop,zero
    twin_state "$name" "$img" "$drop" resize
}
# reps_first K "REP..." ITEM...: $order = the ITEMs, REPs (those among
# them) at places 1, K+1, 2K+1..., the others in their order around them:
# a loop over $order that is the file's first to call `sampled K` takes
# every REP in check (lib.sh sampled: its calls 1, K+1, 2K+1...)
reps_first() {
    local k=$1 reps=" $2 " x r i=0 others=() have=()
    shift 2
    for x; do case $reps in *" $x "*) have+=("$x") ;; *) others+=("$x") ;; esac; done
    order=()
    for r in "${have[@]}"; do order+=("$r" "${others[@]:i:k-1}"); i=$((i + k - 1)); done
    order+=("${others[@]:i}")
}
