#!/bin/bash
# kimg dd: qemu-img 7.2's operands (bs, count, skip, if, of; -f, -O, -U,
# --image-opts) give the same exit code, output size and content as
# qemu-img dd; Proxmox's additions (its qemu-img carries them and
# qemu-server passes them): -n into an existing output, -l SNAPSHOT,
# osize=, isize= (0: standard input to its end), standard input and
# output; with its exact lines for EFI variable disks and cloud-init
# images.  A new output appears only when complete (a short input leaves
# none), and bs=2G copies in bounded memory (qemu-img allocates bs).
. "$(dirname "$0")/lib.sh"

qemu-img create -q -f qcow2 s.qcow2 4M
qemu-io -f qcow2 -c "write -P 3 0 1M" -c "write -P 4 3M 512" -c "write -P 5 3500k 3" s.qcow2 > /dev/null
head -c 3000 /dev/urandom > odd.bin

# twins NAME OPERANDS...: the same dd by both tools into kX and qX
twins() {
    local name=$1; shift
    rm -f kX qX
    kimg dd "$@" of=kX
    qimg dd "$@" of=qX
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || diag "kimg: $(head -2 "$T/err")"
    [ "$QRC" -ne 0 ] && { err_line "$name"; return; }
    is "$(qemu-img info --output=json kX | grep -E '"(virtual-size|format)"')" \
       "$(qemu-img info --output=json qX | grep -E '"(virtual-size|format)"')" "$name: size and format as qemu-img's"
    ok "$name: content as qemu-img's" qemu_oracle_compare kX qX
}
twins "defaults" if=s.qcow2
twins "-f qcow2 -O qcow2" -f qcow2 -O qcow2 if=s.qcow2
twins "bs=1M count=2 skip=1 (count includes skip)" -O qcow2 bs=1M count=2 skip=1 if=s.qcow2
twins "bs=3000 count=100 skip=7" bs=3000 count=100 skip=7 if=s.qcow2
twins "bs=7" -f raw bs=7 if=odd.bin
twins "count=1k" count=1k if=s.qcow2
twins "count=0" count=0 if=s.qcow2
twins "skip past the end (empty output, exit 0)" bs=1K skip=5000 if=s.qcow2
twins "a raw input not a multiple of 512" -f raw bs=1000 skip=1 if=odd.bin
twins "--image-opts" --image-opts if=driver=qcow2,file.filename=s.qcow2
twins "-U" -U if=s.qcow2
for bad in "bs=0" "bs=4G" "bs=1x" "count=-1" "skip=-1" "foo=1" "junk" "-O nonfmt" "-o x=1" "if="; do
    twins "refused: $bad" $bad if=s.qcow2
done
rm -f kX; kimg dd if=s.qcow2 of=/nonexistent-dir/x
is "$(< "$T/err")" "kimg: /nonexistent-dir/x: error while creating output image: Could not create '/nonexistent-dir/x': No such file or directory" \
   "an output that cannot be created: qemu-img's message"

# bounded memory: qemu-img allocates bs bytes
if [ -x /usr/bin/time ]; then
    /usr/bin/time -f %M -o rss "$KIMG" dd bs=2147483647 count=1 if=s.qcow2 of=big.raw 2> /dev/null
    ok "bs=2G-1: under 64 MiB of memory ($(tail -1 rss) KiB)" test "$(tail -1 rss)" -lt 65536
    ok "bs=2G-1: the whole input copied" qemu_oracle_compare -f raw -F qcow2 big.raw s.qcow2
fi

# Proxmox: EFI variables into an existing disk (-n, osize=, bs=1M), also
# from a snapshot (-l)
truncate -s 540672 vars.fd
qemu-io -f raw -c "write -P 0x45 0 128k" vars.fd > /dev/null
qemu-img create -q -f qcow2 efi.qcow2 540672
qemu-io -f qcow2 -c "write -P 0x66 200k 4k" efi.qcow2 > /dev/null
kimg dd -n -f raw -O qcow2 bs=1M osize=540672 if=vars.fd of=efi.qcow2
is "$RC" 0 "Proxmox EFI line: exit 0"
ok "Proxmox EFI line: the disk now holds the variables" qemu_oracle_compare -F raw efi.qcow2 vars.fd
ok "Proxmox EFI line: check clean" check_clean efi.qcow2
qemu-img snapshot -c before efi.qcow2
qemu-io -f qcow2 -c "write -P 0x67 0 4k" efi.qcow2 > /dev/null
truncate -s 540672 fromsnap.raw
kimg dd -n -f qcow2 -O raw -l before bs=1M osize=540672 if=efi.qcow2 of=fromsnap.raw
is "$RC" 0 "-l SNAPSHOT: exit 0"
ok "-l SNAPSHOT: the snapshot's content" cmp -s fromsnap.raw vars.fd
kimg dd -n -f qcow2 -O raw -l nope bs=1M osize=540672 if=efi.qcow2 of=fromsnap.raw
err_line "-l with a missing snapshot"

# Proxmox: cloud-init, a stream from standard input into a bigger disk
head -c 370000 /dev/urandom > iso.bin
qemu-img create -q -f qcow2 ci.qcow2 4M
qemu-io -f qcow2 -c "write -P 0x71 3M 4k" ci.qcow2 > /dev/null
cat iso.bin | "$KIMG" dd -n -f raw -O qcow2 isize=0 osize=4194304 of=ci.qcow2 2> err
is "$?" 0 "Proxmox cloud-init line (isize=0, a pipe): exit 0"
qemu-img convert -f qcow2 -O raw ci.qcow2 ci.raw
ok "cloud-init: the stream written at the start" cmp -s -n 370000 ci.raw iso.bin
is "$(od -An -tx1 -j 3145728 -N 2 ci.raw | tr -d ' ')" "7171" "cloud-init: the rest of the disk untouched"
# a short stream without isize is an error, and a new output is not left
head -c 1000 iso.bin | "$KIMG" dd -f raw osize=1M of=short.raw 2> err
isnt "$?" 0 "a stream shorter than osize without isize: refused"
like "$(< err)" "Input ended unexpectedly" "short stream: Proxmox's message"
ok "short stream: no output file left" test ! -e short.raw
# a stream that ends inside the skipped part: the same error, no output
head -c 500 iso.bin | "$KIMG" dd -f raw bs=1000 skip=1 count=2 of=skipshort.raw 2> err
isnt "$?" 0 "a stream shorter than skip: refused"
like "$(< err)" "Input ended unexpectedly" "short skip: said so"
ok "short skip: no output file left" test ! -e skipshort.raw
# standard output, and standard input to standard output
kimg dd -f raw bs=1000 skip=1 if=odd.bin of=want.raw
"$KIMG" dd -f raw bs=1000 skip=1 if=odd.bin > got.raw 2> err
is "$(stat -c %s got.raw)" 2072 "of= missing: the bytes dd copies (3072, 512-rounded as qemu, less 1000)"
ok "of= missing: raw on standard output, as a file gets it" cmp -s -n 2072 got.raw want.raw
head -c 5000 iso.bin | "$KIMG" dd -f raw bs=1000 skip=2 count=5 > got2.raw 2> err
ok "a pipe to a pipe, skip read past" cmp -s got2.raw <(head -c 5000 iso.bin | tail -c 3000)
kimg dd -O qcow2 if=s.qcow2
is "$(< "$T/err")" "kimg: Output format must be raw when writing to stdout" "stdout: raw only"
kimg dd -f qcow2 of=x.raw
is "$(< "$T/err")" "kimg: Input format must be raw when reading from stdin" "stdin: raw only"
kimg dd -f raw of=x.raw
is "$(< "$T/err")" "kimg: Output size must be known when reading from stdin" "stdin: a size is needed"
done_testing
