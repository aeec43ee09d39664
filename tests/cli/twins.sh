# twins.sh — twin images for tests that run one command with qemu-img and
# with kimg and compare the results (resize, amend).  Source it after
# lib.sh and `fixtures`.
#   twins IMG              q/ and k/ hold links to every fixture (backing
#                          files) and their own copies of IMG and of the
#                          data file it writes
#   same_content NAME IMG  k/IMG reads as q/IMG
#   twin_state NAME IMG DROP OP
#                          after OP ("resize", "amend") succeeded on both:
#                          k/IMG is clean in qemu-img check and has q/IMG's
#                          qemu-img info and map (JSON keys DROP left out:
#                          host layout) and content; leaves qi.json ki.json
#   grow IMG SIZE [OPTS...] resize OPTS IMG SIZE with both tools on twins:
#                          the same exit code and stdout, then twin_state

twins() {
    rm -rf q k; mkdir q k
    ln -s "$FX"/* q/; ln -s "$FX"/* k/
    local f
    for f in "$1" "${1%.qcow2}.data"; do
        [ -e "$FX/$f" ] || continue
        cp --remove-destination "$FX/$f" q/"$f"; cp --remove-destination "$FX/$f" k/"$f"
    done
}

# (an image with a data file is flattened inside its folder first: qemu
# opens the data file relative to the cwd, so the two cannot be opened
# side by side)
same_content() {
    if [ -e "q/${2%.qcow2}.data" ]; then
        (cd q && qemu-img convert -O raw "$2" ../q.raw) && (cd k && qemu-img convert -O raw "$2" ../k.raw)
        ok "$1: content as qemu-img's" qemu_oracle_compare k.raw q.raw
        rm -f q.raw k.raw
    else
        ok "$1: content as qemu-img's" qemu_oracle_compare k/"$2" q/"$2"
    fi
}

twin_state() {
    local name=$1 img=$2 drop=$3 op=$4
    # (from inside the folders: qemu opens a data file relative to the cwd)
    ok "$name: qemu-img check clean" eval '(cd k && check_clean "$img")'
    (cd q && qemu-img info --output=json "$img") > qi.json
    (cd k && qemu-img info --output=json "$img") > ki.json
    (cd q && qemu-img map --output=json "$img") > qm.json
    (cd k && qemu-img map --output=json "$img") > km.json
    json_norm_files "$drop" qi.json ki.json qm.json km.json
    is_file ki.json.norm qi.json.norm "$name: qemu-img info as for qemu-img's $op"
    is_file km.json.norm qm.json.norm "$name: map as for qemu-img's $op (host layout aside)"
    same_content "$name" "$img"
}

grow() {
    local img=$1 size=$2; shift 2
    local name="resize $* $img $size"
    twins "$img"
    QRC=0; (cd q && qemu-img resize "$@" "$img" "$size") > qout 2> qerr || QRC=$?
    RC=0; (cd k && "$KIMG" resize "$@" "$img" "$size") > out 2> err || RC=$?
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || { diag "kimg: $(< err) qemu-img: $(< qerr)"; return; }
    is_file out qout "$name: stdout as qemu-img's"
    [ "$QRC" -eq 0 ] || return 0
    # (a data file's holes decide map's "zero" there: host layout, dropped)
    local drop=actual-size,offset
    [ -e "q/${img%.qcow2}.data" ] && drop=$drop,zero
    twin_state "$name" "$img" "$drop" resize
}
