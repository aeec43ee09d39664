#!/bin/bash
# convert -r RATE / --rate-limit RATE (Proxmox passes it on every disk move
# with a bandwidth limit): qemu-img's cvtnum sizes (4M is 4 MiB/s), its
# message for a bad rate; the bytes written to the target are limited
# across all workers.  Timing is checked as a lower bound only (8 MiB of
# data at 4 MiB/s cannot finish in under ~1.5 s: only the first MiB goes
# at once; qemu-img 7.2 takes 1.43 s), never as an upper bound, so a slow
# machine cannot fail it.  Zero ranges a new target skips cost nothing.
# make check: a third of the convert -r forms (lib.sh sampled), and not
# qemu-img's own timing; check-slow the rest.
. "$(dirname "$0")/lib.sh"

head -c 8M /dev/urandom > d.raw
truncate -s 64M d.raw            # 56 MiB of hole after the data
qemu-img create -q -f qcow2 d.qcow2 64M
qemu-img convert -f raw -O qcow2 d.raw d.qcow2

elapsed() {     # elapsed CMD...: seconds (3 decimals) in $SECS, result in RC
    local t0 t1
    t0=$(date +%s%N); "$@"; t1=$(date +%s%N)
    SECS=$(( (t1 - t0) / 1000000 ))
}
# at_least MS NAME: the last run took at least MS milliseconds
at_least() { if [ "$SECS" -ge "$1" ]; then pass "$2 (${SECS} ms)"; else fail "$2" "took ${SECS} ms, expected >= $1"; fi; }

for args in "-r 4M" "--rate-limit 4M" "-r 4194304" "-r 4096k" "-m 16 -r 4M" "-O qcow2 -r 4M" \
            "-O qcow2 -c -r 4M" "-f qcow2 -r 4M"; do
    sampled || continue         # check: a third of the forms; check-slow: the rest
    src=d.raw; case "$args" in *"-f qcow2"*) src=d.qcow2 ;; esac
    rm -f o.img
    elapsed kimg convert $args "$src" o.img
    is "$RC" 0 "$args: exit 0"
    at_least 1400 "$args: 8 MiB of data at 4 MiB/s takes >= 1.4 s"
    ok "$args: the same content" qemu_oracle_compare -f raw d.raw o.img
done
# commit -r (qemu-img 7.2 has it; kimg's commit had it already)
qemu-img create -q -f qcow2 b.qcow2 64M
qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 t.qcow2
qemu-io -f qcow2 -c "write -P 7 0 8M" t.qcow2 > /dev/null
elapsed kimg commit -r 4M t.qcow2
is "$RC" 0 "commit -r 4M: exit 0"
at_least 1400 "commit -r 4M: 8 MiB takes >= 1.4 s"
# qemu-img is limited the same way (the bound above is its behaviour); a
# check of the oracle, not of kimg, and 1.4 s of waiting: check-slow only
if slow_part; then
    elapsed qimg convert -r 4M -f raw -O raw d.raw q.img
    at_least 1400 "qemu-img -r 4M: the same lower bound holds for qemu-img"
fi

# no limit: the same copy is fast (a sanity check the limit is what slows it)
rm -f o.img
elapsed kimg convert -r 0 d.raw o.img
is "$RC" 0 "-r 0 (no limit, as qemu-img): exit 0"
rm -f o.img
elapsed kimg convert -r 1G d.raw o.img
is "$RC" 0 "-r 1G: exit 0"

# -n into an existing target: the data is limited, the zero writes are
# not (qemu-img 7.2 neither: 0.42 s for this); -S 0 writes zeros as data
qemu-img create -q -f raw n.img 12M
head -c 4M /dev/urandom > z.raw
truncate -s 12M z.raw            # 4 MiB data + 8 MiB zeros to write
elapsed kimg convert -n -r 8M -f raw -O raw z.raw n.img
is "$RC" 0 "-n -r 8M: exit 0"
at_least 200 "-n -r 8M: 4 MiB of data takes >= 0.2 s"
ok "-n -r 8M: content" qemu_oracle_compare -f raw z.raw n.img
elapsed kimg convert -n -S 0 -r 8M -f raw -O raw z.raw n.img
is "$RC" 0 "-n -S 0 -r 8M: exit 0"
at_least 1100 "-n -S 0 -r 8M: 12 MiB written as data takes >= 1.1 s"

for bad in abc -5 4X ""; do
    rm -f o.img q.img
    oracle "-r '$bad'" convert -r "$bad" d.raw o.img
    err_line "-r '$bad'"
    is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr" | paste -sd' ')" \
       "-r '$bad': qemu-img's message (its two lines on one)"
    ok "-r '$bad': no target" [ ! -e o.img ]
done
done_testing
