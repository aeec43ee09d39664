#!/bin/bash
# convert into a pipe (pve-storage exports with
# "convert -f F -O raw FILE /dev/stdout"): a raw target that is a pipe or
# a FIFO is written in order, zeros included, never seeking; the bytes
# are the source's content (sha256sum against the flattened file).
# qemu-img 7.2 cannot do this (its file driver resizes the target: "Could
# not resize file: Invalid argument", exit 1); for any other format kimg
# fails as it does, word for word.  qemu-img 7.2 refuses a source on a
# pipe ("'file' driver requires ... to be a regular file"); kimg reads it
# (325), and kimg dd reads standard input (330).  -p and
# --progress=json print nothing into a standard output that is the
# target.  A reader that goes away: exit 1, one line.
. "$(dirname "$0")/lib.sh"

qemu-img create -q -f qcow2 base.qcow2 16M
qemu-io -f qcow2 -c "write -P 1 0 3M" -c "write -P 2 10M 100k" base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -f qcow2 -c "write -P 3 1M 1M" -c "write -z 10M 64k" -c "write -P 4 15M 5k" top.qcow2 > /dev/null
qemu-img convert -f qcow2 -O raw top.qcow2 top.raw
head -c 3000 /dev/urandom > odd.bin     # raw, not a multiple of 512
qemu-img convert -f raw -O raw odd.bin odd.raw

# piped NAME SOURCES...: kimg convert ... SOURCES /dev/stdout | sha256sum
piped() {
    local name=$1 want=$2; shift 2
    PRC=0
    got=$( { timeout -k 5 60 "$KIMG" convert "$@" /dev/stdout 2> "$T/err" || echo "rc=$?" >&2; } 2> "$T/rc" | sha256sum | cut -d' ' -f1)
    is "$(< "$T/rc")" "" "$name: exit 0"
    is "$got" "$want" "$name: the bytes are the content (sha256)"
    is "$(< "$T/err")" "" "$name: nothing on stderr"
}
piped "qcow2 chain -> raw pipe" "$(sha top.raw)" -f qcow2 -O raw top.qcow2
piped "raw file -> raw pipe (-O raw default)" "$(sha top.raw)" -f raw top.raw
piped "raw of 3000 bytes" "$(sha odd.raw)" -f raw odd.bin
piped "two sources, concatenated" "$(cat top.raw odd.raw | sha256sum | cut -d' ' -f1)" top.qcow2 odd.bin
piped "-p: no progress in the data" "$(sha top.raw)" -p -f qcow2 top.qcow2
piped "--progress=json: no progress in the data" "$(sha top.raw)" --progress=json -f qcow2 top.qcow2
piped "-m 1 -S 0 -W (accepted)" "$(sha top.raw)" -m 1 -S 0 -W -f qcow2 top.qcow2
piped "-U" "$(sha top.raw)" -U -f qcow2 top.qcow2
piped "--salvage with nothing to salvage" "$(sha top.raw)" --salvage -f qcow2 top.qcow2

# qemu-img 7.2 refuses a raw pipe target (kimg streams: the difference)
qemu-img convert -f qcow2 -O raw top.qcow2 /dev/stdout 2> "$T/qerr" | cat > /dev/null
like "$(< "$T/qerr")" "Could not resize file" "qemu-img 7.2 cannot write a raw pipe (kimg can)"

# other formats into a pipe: qemu-img's failure, word for word
for f in qcow2 vmdk vpc; do
    qemu-img convert -f qcow2 -O $f top.qcow2 /dev/stdout 2> "$T/qerr" | cat > /dev/null
    QRC=${PIPESTATUS[0]}
    "$KIMG" convert -f qcow2 -O $f top.qcow2 /dev/stdout 2> "$T/err" | cat > "$T/kdata"; RC=${PIPESTATUS[0]}
    is "$RC" "$QRC" "-O $f into a pipe: exit code as qemu-img's ($QRC)"
    is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" "-O $f into a pipe: qemu-img's message"
    is "$(wc -c < "$T/kdata")" 0 "-O $f into a pipe: nothing written"
done
# raw with options that need a file: qemu-img's failure too
"$KIMG" convert -f qcow2 -O raw -o preallocation=full top.qcow2 /dev/stdout 2> "$T/err" | cat > /dev/null
is "${PIPESTATUS[0]}" 1 "-O raw -o preallocation=full into a pipe: exit 1 (as qemu-img)"

# a named FIFO
mkfifo fifo
sha256sum < fifo | cut -d' ' -f1 > fifo.sum &
reader=$!
kimg convert -f qcow2 -O raw top.qcow2 fifo
wait $reader
is "$RC" 0 "named FIFO: exit 0"
is "$(< fifo.sum)" "$(sha top.raw)" "named FIFO: the content"

# -r into a pipe: 8 MiB of data at 4 MiB/s takes >= 1.4 s (lower bound only)
head -c 8M /dev/urandom > d.raw
t0=$(date +%s%N)
"$KIMG" convert -r 4M -f raw d.raw /dev/stdout 2> "$T/err" | cat > d.out
t1=$(date +%s%N)
ok "-r 4M into a pipe: the content" cmp d.out d.raw
ms=$(( (t1 - t0) / 1000000 ))
ok "-r 4M into a pipe: 8 MiB takes >= 1.4 s ($ms ms)" [ "$ms" -ge 1400 ]

# the reader goes away: exit 1, one line
"$KIMG" convert -f qcow2 -O raw top.qcow2 /dev/stdout 2> "$T/err" | head -c 1000 > /dev/null
RC=${PIPESTATUS[0]}
err_line "a reader that closes the pipe"
like "$(< "$T/err")" "Broken pipe" "a reader that closes the pipe: says so"

# /dev/stdout redirected to a file: as qemu-img (a file target)
"$KIMG" convert -f qcow2 -O raw top.qcow2 /dev/stdout > k.out; RC=$?
qemu-img convert -f qcow2 -O raw top.qcow2 /dev/stdout > q.out; QRC=$?
is "$RC" "$QRC" "/dev/stdout to a file: exit code as qemu-img's"
ok "/dev/stdout to a file: the same bytes as qemu-img's" cmp k.out q.out

# kimg dd with of=/dev/stdout and if=/dev/stdin on pipes: our standard
# output and input, in order (qemu-img 7.2: of= exits 0 with nothing
# written, if= is refused)
got=$("$KIMG" dd -O raw if=top.raw of=/dev/stdout 2> "$T/err" | sha256sum | cut -d' ' -f1)
is "$got" "$(sha top.raw)" "dd of=/dev/stdout on a pipe: the content"
got=$(cat top.raw | "$KIMG" dd -f raw if=/dev/stdin of=/dev/stdout osize=16M 2> "$T/err" | sha256sum | cut -d' ' -f1)
is "$got" "$(sha top.raw)" "dd if=/dev/stdin of=/dev/stdout on pipes: the content"
rm -f dd.raw
cat top.raw | "$KIMG" dd -f raw if=/dev/stdin of=dd.raw osize=16M 2> "$T/err"
ok "dd if=/dev/stdin on a pipe into a file: the content" cmp dd.raw top.raw
# a failed create on a name that is a link to a FIFO (or /dev/stdout on
# a pipe) removes nothing: the link stays (it used to be unlinked)
mkfifo fifo2; ln -s fifo2 link2
( sleep 0.5; exec 3<> fifo2 ) &
"$KIMG" dd -O raw if=top.raw of=link2 2> "$T/err"; RC=$?
wait
ok "dd into a link to a FIFO: fails (as qemu-img)" [ "$RC" -ne 0 ]
ok "dd into a link to a FIFO: the link stays" test -L link2
ok "... and the FIFO" test -p fifo2
ln -s /proc/self/fd/1 mystdout
"$KIMG" convert -O qcow2 top.qcow2 mystdout 2> "$T/err" | cat > /dev/null
ok "convert -O qcow2 into a link to our pipe stdout: the link stays" test -L mystdout

# a source read from a pipe: qemu-img 7.2 refuses it; kimg reads it (325)
cat top.raw | qemu-img convert -f raw -O raw /dev/stdin q2.raw 2> "$T/qerr"
like "$(< "$T/qerr")" "requires '/dev/stdin' to be a regular file" \
    "source on a pipe: qemu-img 7.2 refuses it (kimg reads it: 325)"
cat top.raw | "$KIMG" convert -f raw -O raw /dev/stdin k2.raw 2> "$T/err"
ok "source on a pipe: kimg reads it" cmp k2.raw top.raw
done_testing
