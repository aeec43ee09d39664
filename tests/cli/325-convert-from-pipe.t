#!/bin/bash
# convert FROM a pipe (issue 16, streaming): `cat disk.raw | kimg convert
# -f raw -O FMT /dev/stdin OUT` and a named FIFO.  The source is read once,
# in order, to its end (img/convert_pipe.c; also a socket as standard
# input); the target is created empty and grows as the data arrives,
# under a temporary name renamed into place when complete (formats that
# cannot grow, -B and -o preallocation: the stream is spooled into an
# unnamed temporary file, then converted as a file).  qemu-img 7.2 refuses a pipe source ("'file' driver
# requires ... to be a regular file"), so the oracle is qemu-img's
# conversion of the same bytes from a regular file: the same content
# (qemu-img compare), a clean qemu-img check, the same virtual size (a
# length not a multiple of 512 rounded up, as qemu shows such a raw file),
# the same guest map (zeros become unallocated clusters or holes) and an
# allocated size within 10% of it.  Then a pipe into a pipe, -n, the
# failures (interrupted, a write or read that fails: no output left) and
# the one-line refusals (no -f raw, options that need the source at any
# offset: -l, --bitmaps, -C, --salvage).
. "$(dirname "$0")/lib.sh"

# inputs: data, a 24 MiB zero run, data with a zero cluster inside, and
# an odd tail; a short odd one; an empty one
{ head -c 3M /dev/urandom; head -c 24M /dev/zero; head -c 1M /dev/urandom
  head -c 64k /dev/zero; head -c 1M /dev/urandom; head -c 1000 /dev/urandom; } > big.bin
head -c 3000 /dev/urandom > odd.bin
: > empty.bin
printf 'kimg' > tiny.bin
SECRET=(--object secret,id=s0,data=pw)

vsize() { qemu-img info "${@:2}" --output=json "$1" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p'; }
alloc() { du -k "$1" | cut -f1; }
# guest map without host offsets (what is data, what is zero)
gmap() { qemu-img map --output=json "$@" | sed 's/, "offset": [0-9]*//'; }

# case NAME FMT INPUT CONVERT-ARGS...
case_() {
    local name=$1 fmt=$2 in=$3; shift 3
    rm -f k.img q.img
    RC=0
    cat "$in" | "$KIMG" convert -f raw -O "$fmt" "$@" /dev/stdin k.img 2> "$T/err" || RC=$?
    is "$RC" 0 "$name: exit 0"
    is "$(< "$T/err")" "" "$name: nothing on stderr"
    qemu-img convert -f raw -O "$fmt" "$@" "$in" q.img
    local open=(-f "$fmt") ka=k.img qa=q.img
    if [ "$fmt" = luks ]; then
        open=("${SECRET[@]}" --image-opts)
        ka="driver=luks,key-secret=s0,file.filename=k.img"
        qa="driver=luks,key-secret=s0,file.filename=q.img"
    fi
    ok "$name: the content of qemu-img's conversion of the file" \
        qemu-img compare -q "${open[@]}" "$qa" "$ka"
    is "$(vsize "$ka" "${open[@]}")" "$(vsize "$qa" "${open[@]}")" "$name: virtual size as qemu-img's"
    if [ "$fmt" = qcow2 ]; then
        ok "$name: qemu-img check" check_clean k.img
        is "$(gmap -f qcow2 k.img)" "$(gmap -f qcow2 q.img)" "$name: the guest map as qemu-img's"
    fi
    local ks qs who="qemu-img's"
    if [ -n "${OWN_ALLOC:-}" ]; then
        # formats whose layout kimg lays out more tightly than qemu-img
        # (vhdx, vdi): against kimg's own conversion of the file
        rm -f q.img; "$KIMG" convert -f raw -O "$fmt" "$@" "$in" q.img; who="kimg's from the file"
    fi
    ks=$(alloc k.img); qs=$(alloc q.img)
    ok "$name: allocated ${ks}k, $who ${qs}k (within 10%)" \
        [ $((ks * 10)) -le $((qs * 11 + 640)) ] && [ $((ks * 11 + 640)) -ge $((qs * 10)) ]
}

for in in big odd empty tiny; do
    case_ "raw <- $in" raw $in.bin
    case_ "qcow2 <- $in" qcow2 $in.bin
    case_ "qcow2 -c <- $in" qcow2 $in.bin -c
    case_ "qcow2 -c zstd <- $in" qcow2 $in.bin -c -o compression_type=zstd
done
case_ "qcow2 cluster_size=2M <- big" qcow2 big.bin -o cluster_size=2M
case_ "qcow2 -S 0 <- big" qcow2 big.bin -S 0
case_ "raw -S 0 <- big" raw big.bin -S 0
case_ "qcow2 -c -m 1 <- big (one worker)" qcow2 big.bin -c -m 1
# formats that cannot grow: the stream is held in an unnamed temporary
# file in the target's folder, then converted as a file (vhdx and vdi:
# kimg lays them out more tightly than qemu-img, so their allocation is
# held against kimg's own conversion of the file: OWN_ALLOC)
case_ "vmdk <- big (spooled)" vmdk big.bin
case_ "vmdk streamOptimized <- odd (spooled)" vmdk odd.bin -o subformat=streamOptimized
case_ "vpc <- big (spooled)" vpc big.bin
OWN_ALLOC=1 case_ "vhdx <- big (spooled)" vhdx big.bin
OWN_ALLOC=1 case_ "vdi <- empty (spooled)" vdi empty.bin
# -B and -o preallocation need the size first: spooled as well
qemu-img create -q -f raw base.raw 32M
case_ "qcow2 -B base.raw <- big (spooled)" qcow2 big.bin -B base.raw -F raw
case_ "qcow2 -o preallocation=full <- odd (spooled)" qcow2 odd.bin -o preallocation=full
case_ "raw -o preallocation=falloc <- big (spooled)" raw big.bin -o preallocation=falloc
ok "spooled: no temporary file left in the folder" eval '! ls -A | grep -q kimg'

# memory stays bounded whatever the stream's length (one 16 MiB window,
# and with -c one compressed copy of it): 192 MiB through in < 64 MiB
if [ -x /usr/bin/time ]; then
    for c in "" -c; do
        rm -f k.img
        yes 0123456789abcdef | head -c 192M |
            /usr/bin/time -f %M -o "$T/rss" "$KIMG" convert -f raw -O qcow2 $c /dev/stdin k.img
        rss=$(tail -1 "$T/rss")
        ok "qcow2 ${c:--}: 192 MiB from a pipe in ${rss} KiB (< 64 MiB)" [ "$rss" -lt 65536 ]
        is "$(vsize k.img)" $((192 << 20)) "qcow2 ${c:--}: 192 MiB from a pipe: the size"
    done
    rm -f k.img
else
    skip "memory bound" "no /usr/bin/time"
fi

# -o compression_level (kimg's): the content
rm -f k.img
cat big.bin | "$KIMG" convert -f raw -O qcow2 -c -o compression_level=1 /dev/stdin k.img
ok "qcow2 -c -o compression_level=1: the content" qemu-img compare -q -f raw -F qcow2 big.bin k.img
case_ "luks <- big" luks big.bin "${SECRET[@]}" -o key-secret=s0,iter-time=10
case_ "luks <- odd" luks odd.bin "${SECRET[@]}" -o key-secret=s0,iter-time=10

# a named FIFO; -p, --progress=json and -r do not get in the way
rm -f k.img; mkfifo fifo
cat big.bin > fifo &
kimg convert -f raw -O qcow2 -p -r 1G fifo k.img
wait
is "$RC" 0 "named FIFO, -p, -r: exit 0"
ok "named FIFO: the content" qemu-img compare -q -f raw -F qcow2 big.bin k.img
like "$(< "$T/out")" "100.00/100%" "named FIFO: -p ends at 100%"
rm -f k.img
cat big.bin | "$KIMG" convert --progress=json -f raw -O qcow2 /dev/stdin k.img > "$T/out"
n=$(vsize k.img)
like "$(tail -1 "$T/out")" "^\{\"done\": $n, \"total\": $n, " \
    "--progress=json: the last line has the total (unknown before the end)"

# a socket as standard input (ssh, a systemd socket unit)
rm -f k.img
"$PY" - "$KIMG" big.bin <<'EOF' 2> "$T/err"
import socket, subprocess, sys
a, b = socket.socketpair()
p = subprocess.Popen([sys.argv[1], "convert", "-f", "raw", "-O", "qcow2", "/dev/stdin", "k.img"], stdin=b)
b.close()
a.sendall(open(sys.argv[2], "rb").read())
a.shutdown(socket.SHUT_WR)
sys.exit(p.wait())
EOF
RC=$?
is "$RC" 0 "socket as standard input: exit 0"
ok "socket as standard input: the content" qemu-img compare -q -f raw -F qcow2 big.bin k.img

# a pipe into a pipe: the bytes, padded to 512 as qemu-img's raw
qemu-img convert -f raw -O raw odd.bin odd.raw
got=$(cat odd.bin | "$KIMG" convert -f raw -O raw /dev/stdin /dev/stdout 2> "$T/err" | sha256sum | cut -d' ' -f1)
is "$got" "$(sha odd.raw)" "pipe into a pipe: the bytes, padded as qemu-img's raw"
is "$(< "$T/err")" "" "pipe into a pipe: nothing on stderr"
qemu-img convert -f raw -O raw big.bin big.raw
got=$(cat big.bin | "$KIMG" convert -f raw /dev/stdin /dev/stdout | sha256sum | cut -d' ' -f1)
is "$got" "$(sha big.raw)" "pipe into a pipe: zero runs included"

# -n: into an existing image, in place, as qemu-img -n from the file
for t in k q; do
    qemu-img create -q -f qcow2 $t.img 64M
    qemu-io -f qcow2 -c "write -P 7 0 64M" $t.img > /dev/null
done
cat big.bin | "$KIMG" convert -n -f raw -O qcow2 /dev/stdin k.img 2> "$T/err"; RC=$?
qemu-img convert -n -f raw -O qcow2 big.bin q.img
is "$RC" 0 "-n: exit 0"
ok "-n: the content of qemu-img -n from the file" qemu-img compare -q k.img q.img
ok "-n: qemu-img check" check_clean k.img
qemu-img create -q -f qcow2 small.img 1M
RC=0; cat big.bin | "$KIMG" convert -n -f raw -O qcow2 /dev/stdin small.img 2> "$T/err" || RC=$?
err_line "-n into a smaller target"
like "$(< "$T/err")" "smaller than the source" "-n into a smaller target: says so"

# nothing left behind: no output, no temporary file
no_output() { ! ls -A | grep -q '^\.\?out\.img'; }

# a writer that stays, then kimg interrupted (Ctrl-C, a supervisor's
# SIGTERM): killed by that signal, no output, no temporary file
mkfifo slow
tmp_seen() { ls -A | grep -q '^\.out\.img'; }
for c in "INT qcow2" "TERM qcow2" "INT vmdk"; do
    sig=${c% *} fmt=${c#* }
    ( head -c 5M /dev/urandom; exec sleep 60 ) > slow &
    wpid=$!
    # (a background job of a script starts with SIGINT ignored)
    env --default-signal=INT "$KIMG" convert -f raw -O $fmt slow out.img 2> "$T/err" &
    kpid=$!
    if [ $fmt = qcow2 ]; then
        for _ in $(seq 50); do tmp_seen && break; sleep 0.1; done
        ok "SIG$sig mid-stream, $fmt: the temporary file exists while reading" tmp_seen
    fi
    sleep 0.5
    kill -$sig $kpid; RC=0; wait $kpid || RC=$?
    is "$RC" $((128 + $(kill -l $sig))) "SIG$sig mid-stream, $fmt: killed by it"
    ok "SIG$sig mid-stream, $fmt: no output, no temporary file" no_output
    ok "SIG$sig mid-stream, $fmt: nothing of kimg's left" eval '! ls -A | grep -q kimg'
    kill $wpid 2> /dev/null; wait $wpid 2> /dev/null
done

# the writer killed alone: a pipe cannot tell that from its end (the
# reader sees end-of-file either way), so the bytes received are the
# image, exit 0 (as dd, gzip or any pipe reader); a caller checks its
# pipeline's status (set -o pipefail)
( head -c 5M /dev/urandom; exec sleep 60 ) > slow &
wpid=$!
"$KIMG" convert -f raw -O qcow2 slow out.img 2> "$T/err" &
kpid=$!
sleep 0.5
kill -KILL $wpid; wait $wpid 2> /dev/null
RC=0; wait $kpid || RC=$?
is "$RC" 0 "writer killed alone: the end of the stream, exit 0"
is "$(vsize out.img)" 5242880 "writer killed alone: the bytes received"
rm -f out.img

# a write that fails mid-stream (a file size limit): exit 1, one line,
# no output
RC=0; ( ulimit -f 4096; cat big.bin | "$KIMG" convert -f raw -O raw /dev/stdin out.img 2> "$T/err" ) || RC=$?
err_line "a write that fails mid-stream"
ok "a write that fails mid-stream: no output, no temporary file" no_output

# a read that fails (standard input is a pipe's write end: EBADF)
RC=0; "$KIMG" convert -f raw -O qcow2 /dev/stdin out.img 0<&1 2> "$T/err" | cat > /dev/null
RC=${PIPESTATUS[0]}
err_line "a read that fails"
like "$(< "$T/err")" "error while reading at offset 0" "a read that fails: says so"
ok "a read that fails: no output, no temporary file" no_output

# refusals, one line each, nothing read, nothing written
refuse() {
    local name=$1; shift
    RC=0
    cat tiny.bin | "$KIMG" convert "$@" > /dev/null 2> "$T/err" || RC=$?
    err_line "$name"
    ok "$name: no output" no_output
}
refuse "no -f" -O qcow2 /dev/stdin out.img
refuse "-f qcow2" -f qcow2 -O qcow2 /dev/stdin out.img
refuse "two sources" -f raw -O qcow2 /dev/stdin odd.bin out.img
refuse "-l" -f raw -O qcow2 -l snap /dev/stdin out.img
refuse "--bitmaps" -f raw -O qcow2 --bitmaps /dev/stdin out.img
refuse "-C" -f raw -O raw -C /dev/stdin out.img
refuse "--salvage" -f raw -O raw --salvage /dev/stdin out.img
refuse "-O vmdk -o bad option" -f raw -O vmdk -o no_such=1 /dev/stdin out.img
refuse "-o bad option" -f raw -O qcow2 -o no_such=1 /dev/stdin out.img
cat tiny.bin | "$KIMG" convert -f raw -O qcow2 /dev/stdin /dev/stdout 2> "$T/err" | cat > "$T/out"
RC=${PIPESTATUS[1]}
err_line "-O qcow2 into a pipe"
is "$(wc -c < "$T/out")" 0 "-O qcow2 into a pipe: nothing written"
done_testing
