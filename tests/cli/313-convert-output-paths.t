#!/bin/bash
# convert's target name: a symlink is followed (qemu-img writes through
# it): the new image replaces the link's real target and the link stays;
# the temporary file is made in the real target's folder.  A FIFO, a pipe
# or a character device is not replaced by a file: kimg fails as qemu-img
# does (but for a new raw target on a pipe or FIFO, which kimg streams and
# qemu-img 7.2 cannot: 324); a block device is written in place.
. "$(dirname "$0")/lib.sh"
leftovers() { find "$T" -name '*.kimg-*' | wc -l; }
qemu-img create -q -f qcow2 base.qcow2 4M
qemu-io -c 'write -P 0xab 0 1M' -c 'write -P 0x5c 3M 512k' base.qcow2 > /dev/null

# a symlink to an existing file, in another folder
mkdir real
echo old > real/target.raw
ln -s real/target.raw link.raw
kimg convert -O raw base.qcow2 link.raw
is "$RC" 0 "convert into a symlink succeeds"
ok "the symlink is still a symlink" test -L link.raw
is "$(readlink link.raw)" real/target.raw "and still names the same file"
ok "its target holds the image" qemu_oracle_compare base.qcow2 real/target.raw
is "$(leftovers)" 0 "no temporary file left"

# a dangling symlink into an existing folder creates its target
ln -s real/new.qcow2 dangling.qcow2
kimg convert -O qcow2 base.qcow2 dangling.qcow2
is "$RC" 0 "convert into a dangling symlink succeeds"
ok "the dangling link is kept" test -L dangling.qcow2
ok "its target was created as a regular file" test -f real/new.qcow2 -a ! -L real/new.qcow2
ok "with the image" qemu_oracle_compare base.qcow2 real/new.qcow2

# a chain: link -> link -> file (the middle one relative to its folder)
mkdir -p a b
echo old > b/file.raw
ln -s ../b/file.raw a/mid.raw
ln -s a/mid.raw chain.raw
kimg convert -O raw base.qcow2 chain.raw
is "$RC" 0 "convert into a symlink chain succeeds"
ok "both links stay links" test -L chain.raw -a -L a/mid.raw
ok "the chain's end holds the image" qemu_oracle_compare base.qcow2 b/file.raw

# a FIFO read by cat: qemu-img fails on resizing it; kimg fails alike
# (-O qcow2: a raw one kimg streams, 324)
mkfifo fifo
for tool in qemu kimg; do
    cat fifo > "got-$tool" & cpid=$!
    RC=0
    if [ $tool = kimg ]; then
        timeout 20 "$KIMG" convert -O qcow2 base.qcow2 fifo 2> err-$tool || RC=$?
    else
        timeout 20 qemu-img convert -O qcow2 base.qcow2 fifo 2> err-$tool || RC=$?
    fi
    eval "rc_$tool=$RC"
    # the reader ends once a writer has come and gone; else release it
    sleep 0.2; kill $cpid 2> /dev/null; exec 3<> fifo; exec 3>&-; wait $cpid 2> /dev/null
done
is "$rc_kimg" "$rc_qemu" "FIFO: exit code as qemu-img's"
ok "FIFO: it is still a FIFO" test -p fifo
is "$(sed 's/^qemu-img: //' err-qemu)" "$(sed 's/^kimg: //' err-kimg)" "FIFO: message as qemu-img's"
is "$(sha got-kimg)" "$(sha got-qemu)" "FIFO: the reader got what qemu-img's got"

# /dev/null through a symlink: a device is never replaced by a file
ln -s /dev/null null.raw
oracle "/dev/null through a symlink" convert -O raw base.qcow2 null.raw
is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" "/dev/null: message as qemu-img's"
ok "/dev/null is still a character device" test -c /dev/null
ok "and the link is kept" test -L null.raw

# a pipe (/dev/stdout; -O qcow2: kimg streams raw, 324) and, with -n, a
# FIFO or a pipe: qemu-img refuses them all; kimg alike, with its words
for case in "pipe:convert -O qcow2 base.qcow2 /dev/stdout" \
            "-n pipe:convert -n -O raw base.qcow2 /dev/stdout" \
            "-n FIFO:convert -n -O raw base.qcow2 fifo"; do
    name=${case%%:*}; args=${case#*:}
    cat fifo > /dev/null & cpid=$!
    qrc=0; timeout 20 qemu-img $args 2> qerr | cat > qout || qrc=${PIPESTATUS[0]}
    krc=0; timeout 20 "$KIMG" $args 2> kerr | cat > kout || krc=${PIPESTATUS[0]}
    sleep 0.2; kill $cpid 2> /dev/null; exec 3<> fifo; exec 3>&-; wait $cpid 2> /dev/null
    is "$krc" "$qrc" "$name: exit code as qemu-img's"
    is "$(sed 's/^kimg: //' kerr)" "$(sed 's/^qemu-img: //' qerr)" "$name: message as qemu-img's"
    is "$(wc -c < kout)" "$(wc -c < qout)" "$name: as much written as qemu-img"
done
ok "the FIFO is still a FIFO" test -p fifo

# a block device through a symlink: written in place, the link kept
loop_attach loop.img 8M
if [ -n "$LOOPDEV" ]; then
    ln -s "$LOOPDEV" loop.raw
    kimg convert -O raw base.qcow2 loop.raw
    is "$RC" 0 "loop device through a symlink: exit 0"
    ok "the link is kept" test -L loop.raw
    ok "the device is still a block device" test -b "$LOOPDEV"
    qemu-img convert -O raw base.qcow2 flat.raw
    ok "the device holds the image" cmp -n 4194304 flat.raw "$LOOPDEV"
    is "$(leftovers)" 0 "no temporary file left"
    is "$(find /dev -maxdepth 1 -name '*.kimg-*' | wc -l)" 0 "none in /dev either"
else
    for i in 1 2 3 4 5 6; do skip "loop device through a symlink" "needs root and losetup"; done
fi

# an existing target keeps its mode and owner, as qemu-img's in-place
# truncation keeps them (the owner only where kimg may set it: as root)
for tool in qemu kimg; do
    echo old > mode-$tool.raw
    chmod 0640 mode-$tool.raw
    [ "$(id -u)" = 0 ] && chown 12345:23456 mode-$tool.raw
done
qemu-img convert -O raw base.qcow2 mode-qemu.raw
"$KIMG" convert -O raw base.qcow2 mode-kimg.raw
is "$(stat -c %a:%u:%g mode-kimg.raw)" "$(stat -c %a:%u:%g mode-qemu.raw)" \
   "an existing target's mode and owner kept, as qemu-img keeps them"
ln -s mode-kimg.raw mode-link.raw
chmod 0604 mode-kimg.raw
"$KIMG" convert -O raw base.qcow2 mode-link.raw
is "$(stat -c %a mode-kimg.raw)" 604 "the same through a symlink"

# an interrupted convert into a symlink: link and old target untouched
head -c $((64 * 1024 * 1024)) /dev/urandom > rnd.raw
echo "keep me" > real/keep.img
ln -s real/keep.img keep-link.img
for sig in INT TERM; do
    # (a script's background job starts with SIGINT ignored, and kimg
    # keeps an ignored signal ignored: give it the default back)
    env --default-signal=INT "$KIMG" convert -c -f raw -O qcow2 rnd.raw keep-link.img & pid=$!
    seen=0
    for i in $(seq 1000); do
        ls -A real | grep -q '^\.keep\.img\.kimg-' && { seen=1; break; }
        nap 0.01
    done
    is "$seen" 1 "SIG$sig: the temporary file is made in the real target's folder"
    kill -$sig $pid
    RC=0; wait $pid || RC=$?
    ok "SIG$sig ends convert by the signal (exit $RC)" test "$RC" -ge 128
    ok "SIG$sig: the link is kept" test -L keep-link.img
    is "$(< real/keep.img)" "keep me" "SIG$sig: the old target is untouched"
    is "$(leftovers)" 0 "SIG$sig: temporary output removed"
done
# a signal the caller ignores (nohup: SIGHUP) stays ignored: the convert
# runs to the end instead of being killed and undone
(trap '' HUP; exec "$KIMG" convert -c -f raw -O qcow2 rnd.raw nohup.qcow2) & pid=$!
seen=0
for i in $(seq 1000); do
    ls -A | grep -q '^\.nohup\.qcow2\.kimg-' && { seen=1; break; }
    nap 0.01
done
is "$seen" 1 "SIGHUP ignored: the convert is under way"
kill -HUP $pid
RC=0; wait $pid || RC=$?
is "$RC" 0 "SIGHUP ignored: the convert completes"
ok "SIGHUP ignored: the output is the source" qemu_oracle_compare rnd.raw nohup.qcow2
is "$(leftovers)" 0 "SIGHUP ignored: no temporary file left"
done_testing
