#!/bin/bash
# Parallel data writes into a qcow2 target: workers write the data, the
# main thread allocates clusters in job order and links them after the
# data.  The output is byte-identical for -m 1, -m 16 and -W (and, with
# the default clusters, to the serial path's and qemu-img's output), for
# several cluster sizes, extended L2,
# an image size that is not a cluster multiple, partial clusters at data
# edges, -n into an image that already has clusters, -B, and -t none (and
# with data writes held back, KIMG_CONVERT_WRITE_LAG);
# every output checks clean and reads as the source in qemu-img.
# make check: a third of the layouts (the default clusters, extended L2;
# lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
size=$((40 * 1024 * 1024 + 3584))
truncate -s $size src.raw
# (GNU dd's seek_bytes first: bs=1 is a pair of system calls per byte,
# most of this file's time on a loaded machine)
rnd() { head -c "$1" /dev/urandom | dd of=src.raw bs=64k oflag=seek_bytes seek="$2" conv=notrunc status=none 2> /dev/null ||
        head -c "$1" /dev/urandom | dd of=src.raw bs=1 seek="$2" conv=notrunc status=none; }
rnd $((3 * 1024 * 1024)) 0                      # a long run
rnd 8192 $((68 * 1024 + 4 * 1024 * 1024))       # inside one 64k cluster
rnd 4096 $((200 * 1024 + 4 * 1024 * 1024))
qemu-io -f raw -c 'write -P 0 6M 2M' -c 'write -P 0x77 9M 5M' -c 'write -P 0x31 20M 1M' \
    -c 'write -z 21M 64k' src.raw > /dev/null
rnd 3584 $((40 * 1024 * 1024))                  # the partial last cluster
rnd $((1024 * 1024)) $((30 * 1024 * 1024 + 512)) # unaligned to any cluster
for o in cluster_size=65536 cluster_size=512 cluster_size=2M \
         extended_l2=on,cluster_size=128k compat=0.10; do
    sampled || continue         # check: a third of the layouts; check-slow: the rest
    kimg convert -m 1 -o $o -f raw -O qcow2 src.raw m1.qcow2
    is "$RC" 0 "$o: -m 1" || diag "$(< "$T/err")"
    kimg convert -m 16 -o $o -f raw -O qcow2 src.raw m16.qcow2
    is "$RC" 0 "$o: -m 16"
    kimg convert -W -o $o -f raw -O qcow2 src.raw w.qcow2
    is "$RC" 0 "$o: -W accepted"
    ok "$o: -m 1 and -m 16 outputs are byte-identical" cmp -s m1.qcow2 m16.qcow2
    ok "$o: -W output is byte-identical too" cmp -s m1.qcow2 w.qcow2
    ok "$o: qemu-img check clean" check_clean m16.qcow2
    ok "$o: reads as the source (qemu-img compare)" qemu_oracle_compare src.raw m16.qcow2
    rm -f m1.qcow2 m16.qcow2 w.qcow2
done
# the default layout is qemu-img's own, byte for byte
kimg convert -f raw -O qcow2 src.raw k.qcow2
qemu-img convert -f raw -O qcow2 src.raw q.qcow2
ok "raw -> qcow2 is byte-identical to qemu-img's output" cmp -s k.qcow2 q.qcow2
KIMG_CONVERT_SERIAL=1 "$KIMG" convert -f raw -O qcow2 src.raw ser.qcow2
ok "the parallel and the serial writer lay out the same bytes" cmp -s k.qcow2 ser.qcow2
# the crash tests' hook that holds data writes back changes nothing either
KIMG_CONVERT_WRITE_LAG=4 "$KIMG" convert -m 16 -f raw -O qcow2 src.raw lag.qcow2
ok "data writes held back 4 jobs: the same bytes" cmp -s k.qcow2 lag.qcow2

# -n into an image that has clusters already: old ones written in place
# (or zeroed), new ones allocated and linked after their data
qemu-img create -q -f qcow2 n.qcow2 $size
qemu-io -c 'write -P 0xee 0 1M' -c 'write -P 0xdd 8M 4M' -c 'write -c -P 0xcc 16M 128k' \
    -c 'write -P 0xbb 39M 1M' n.qcow2 > /dev/null
cp n.qcow2 n2.qcow2
kimg convert -n -m 16 -f raw -O qcow2 src.raw n.qcow2
is "$RC" 0 "-n -m 16 into an image with data" || diag "$(< "$T/err")"
ok "-n: reads as the source" qemu_oracle_compare src.raw n.qcow2
ok "-n: qemu-img check clean" check_clean n.qcow2
kimg convert -n -m 1 -f raw -O qcow2 src.raw n2.qcow2
ok "-n: -m 1 and -m 16 give the same bytes" cmp -s n.qcow2 n2.qcow2

# -B: a target with a backing file (whole clusters need no copy-on-write)
qemu-img create -q -f raw base.raw $size
qemu-io -f raw -c 'write -P 0x42 0 40M' base.raw > /dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw ov.qcow2
qemu-io -c 'write -P 0x43 1M 3M' -c 'write -P 0x44 5M 100k' ov.qcow2 > /dev/null
kimg convert -m 16 -O qcow2 -B base.raw -F raw ov.qcow2 newov.qcow2
is "$RC" 0 "-B with parallel writes"
ok "-B: reads as the source" qemu_oracle_compare ov.qcow2 newov.qcow2
ok "-B: qemu-img check clean" check_clean newov.qcow2

# O_DIRECT target: the data goes through libaio batches
kimg convert -t none -m 16 -f raw -O qcow2 src.raw d.qcow2
is "$RC" 0 "-t none -> qcow2" || diag "$(< "$T/err")"
ok "-t none: byte-identical to the buffered output" cmp -s d.qcow2 k.qcow2
ok "-t none: qemu-img check clean" check_clean d.qcow2
# a qcow2 source, mapped from its file, into qcow2 and raw
kimg convert -m 16 -f qcow2 -O qcow2 q.qcow2 qq.qcow2
ok "qcow2 -> qcow2: reads as the source" qemu_oracle_compare src.raw qq.qcow2
ok "qcow2 -> qcow2: byte-identical to raw -> qcow2" cmp -s qq.qcow2 k.qcow2
kimg convert -m 16 -f qcow2 -O raw q.qcow2 back.raw
ok "qcow2 -> raw: identical" cmp -s back.raw src.raw
done_testing
