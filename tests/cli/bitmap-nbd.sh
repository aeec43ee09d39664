# bitmap-nbd.sh — dirty bitmaps read through qemu-nbd, for the bitmap
# tests (160-166), sourced after lib.sh: one qemu-nbd exports every bitmap
# an image has (-B ...), nbdinfo --map reads each, and the server is
# stopped and its locks waited for before the test writes the image again.
#   info_of FILE            $SZ, $BL: its virtual size and bitmaps' list
#   state FILE              the list, then each of $NAMES and its regions
#   state_known FILE        the same, with the list info_of read last
#   dirty_names FILE        each of $NAMES ("NAME:" before each) and its regions
#   dirty_each IMG OUT NAME...  each NAME's regions into OUT.NAME
#   nbd_stop                stop the last server, wait for its locks
# info_of FILE: $SZ and $BL, its virtual size and bitmaps' list, from one
# qemu-img info and one python (where vsize and bitmaps took two each)
info_of() {
    qemu-img info --output=json "$1" > "$T/inf.json"
    $PY -S -c 'import json,sys
try:
    d = json.load(open(sys.argv[1]))
except ValueError as e:
    print("?"); print("INVALID JSON: %s" % e); sys.exit(0)
bm=d.get("format-specific",{}).get("data",{}).get("bitmaps",[])
print(d.get("virtual-size", "?"))
print(" ".join("%s:%s:%s" % (b["name"], b["granularity"], ",".join(b["flags"])) for b in bm))' "$T/inf.json" > "$T/inf.out"
    { read -r SZ; IFS= read -r BL; } < "$T/inf.out"
}
# nbd_stop: end the qemu-nbd dirty_each/state started (its own pid file:
# a server still exiting holds the last one's lock) and wait until no
# lock on the image is left (/proc/locks read by bash, nap between): kill
# only asks, and a writer next would find the image locked
nbd_stop() {
    local p= i=0 l ino
    while [ -z "$p" ] && [ $((i += 1)) -lt 2000 ]; do p=$(< "$T/nbd.pid.$nbd_n") 2> /dev/null || nap 0.005; done
    [ -n "$p" ] && kill "$p" 2> /dev/null
    ino=":$nbd_ino "; i=0
    while [ $((i += 1)) -lt 3000 ]; do
        l=$(< /proc/locks); [[ $l == *"$ino"* ]] || break
        nap 0.005
    done
}
# state FILE: the bitmaps' list, then each of $NAMES and its dirty
# regions as dirty prints them, from one qemu-nbd exporting them all
# (where dirty started one a bitmap); state_known FILE: the same with the
# list info_of read last
state() { info_of "$1"; state_known "$1"; }
state_known() { echo "$BL"; dirty_names "$1"; }
dirty_names() {
    local b a l t rest err= opts=()
    for b in $NAMES; do opts+=(-B "$b"); done
    rm -f "$T/nbd.sock"; nbd_n=$((${nbd_n:-0} + 1)); nbd_ino=$(stat -c %i "$1")
    qemu-nbd -r -f qcow2 "${opts[@]}" -t -k "$T/nbd.sock" --fork \
        --pid-file="$T/nbd.pid.$nbd_n" "$1" 2> "$T/nbd.err" || err="? qemu-nbd: $(head -1 "$T/nbd.err")"
    for b in $NAMES; do
        echo "$b:"
        if [ -n "$err" ]; then echo "$err"; continue; fi
        nbdinfo --map="qemu:dirty-bitmap:$b" "nbd+unix:///?socket=$T/nbd.sock" > "$T/nbd.map" 2>&1
        while read -r a l t rest; do
            if [ "$t" = 1 ]; then echo "$a $l"; elif [ "$t" != 0 ]; then echo "? $a $l $t $rest"; fi
        done < "$T/nbd.map"
    done
    [ -n "$err" ] || nbd_stop
}
# dirty_each IMG OUT NAME...: dirty's lines for each NAME into OUT.NAME
# (spaces as _), from one qemu-nbd exporting them all (where dirty started
# one a bitmap); a server that fails to start: its message in each
dirty_each() {
    local img=$1 out=$2 b a l t rest err=; shift 2
    local opts=(); for b; do opts+=(-B "$b"); done
    rm -f "$T/nbd.sock"; nbd_n=$((${nbd_n:-0} + 1)); nbd_ino=$(stat -c %i "$img")
    qemu-nbd -r -f qcow2 "${opts[@]}" -t -k "$T/nbd.sock" --fork --pid-file="$T/nbd.pid.$nbd_n" "$img" \
        2> "$T/nbd.err" || err="? qemu-nbd: $(head -1 "$T/nbd.err")"
    for b; do
        if [ -n "$err" ]; then echo "$err"; else
            nbdinfo --map="qemu:dirty-bitmap:$b" "nbd+unix:///?socket=$T/nbd.sock" > "$T/nbd.map" 2>&1
            while read -r a l t rest; do
                if [ "$t" = 1 ]; then echo "$a $l"; elif [ "$t" != 0 ]; then echo "? $a $l $t $rest"; fi
            done < "$T/nbd.map"
        fi > "$out.${b// /_}"
    done
    [ -n "$err" ] || nbd_stop
}
