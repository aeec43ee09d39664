#!/bin/bash
# 421-clone-batch-one-read.t — a batch's full copies read each template
# disk once: the bytes kimg reads do not grow with the batch (strace), nor
# does its peak memory beyond a small cost per clone; every copy is the
# template's content (qemu-img compare), sparse as the template, flattened
# from an overlay, fully allocated with --nonsparse; --linked batches make
# one small overlay each.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"
require strace /usr/bin/time

clone_fixture web01
# a bigger data disk: 24 MiB of data over 128 MiB, some of it zeros
qemu-img create -q -f raw vm/data.img 128M
qemu-io -f raw -c "write -P 0x61 0 8M" -c "write -P 0x62 50M 8M" -c "write -z 70M 4M" \
        -c "write -P 0x63 100M 8M" vm/data.img > /dev/null
snapshot_sources vm

# bytes read from the template's files (not the new images' own
# metadata), by a batch of N
read_bytes() {
    local n=$1; shift
    rm -f st.log
    strace -f -qq -y -e trace=pread64,read,preadv,preadv2 -e signal=none -o st.log \
        "$KIMG" clone --original-xml vm/web01.xml -n "r$n-{n}" --count "$n" --auto-clone -q \
        --output-xml "x$n-{n}.xml" "$@" > /dev/null 2> err.log
    awk -v d="$T/vm/" '{ r = $NF } r ~ /^[0-9]+$/ && index($0, "<" d) && !index($0, "<" d ".") &&
                       !index($0, ".xml>") { s += r } END { print s + 0 }' st.log
}
b2=$(read_bytes 2)
b6=$(read_bytes 5)
diag "bytes read: batch of 2: $b2, batch of 5: $b6"
# each clone's plan opens the template's images (headers, L1 and refcount
# tables: about 200 KiB for each of its three qcow2 files); its data (over
# 24 MiB) is read once
ok "a batch of 5 reads the template's data no more than a batch of 2 (+ its headers per clone)" \
   test "$b2" -gt $((24 << 20)) -a "$b6" -le $((b2 + 3 * (768 << 10)))
for i in 1 3 5; do
    ok "r5-$i: vdb as the template" cmp -s vm/data.img "$(disk_get x5-$i.xml vdb source)"
    ok "r5-$i: vda as the template" qemu_oracle_compare vm/web01.qcow2 "$(disk_get x5-$i.xml vda source)"
    ok "r5-$i: vdc flattened" qemu_oracle_compare vm/logs.qcow2 "$(disk_get x5-$i.xml vdc source)"
    ok "r5-$i: vda passes check" check_clean "$(disk_get x5-$i.xml vda source)"
done
src_kb=$(du -k vm/data.img | cut -f1)
dst_kb=$(du -k "$(disk_get x5-3.xml vdb source)" | cut -f1)
ok "vdb's copies as sparse as the template ($dst_kb KiB, template $src_kb KiB)" \
   test "$dst_kb" -le "$src_kb"
like "$(qemu-img info "$(disk_get x5-2.xml vdc source)")" "cluster_size: 65536" "a qcow2 copy keeps qcow2"
ok "a flattened copy has no backing file" \
   bash -c "! qemu-img info '$(disk_get x5-2.xml vdc source)' | grep -q 'backing file'"

# memory: a batch of 16 against a batch of 2
mem() {
    /usr/bin/time -f %M -o mem.txt "$KIMG" clone --original-xml vm/web01.xml -n "m$1-{n}" \
        --count "$1" --auto-clone -q --output-xml "m$1-{n}.xml" > /dev/null 2>&1
    cat mem.txt
}
m2=$(mem 2)
m16=$(mem 16)
diag "peak RSS: batch of 2: $m2 KiB, batch of 16: $m16 KiB"
# (a sanitizer build's memory is ASan's: shadow, quarantine; not measured)
if [ -n "${KIMG_SANFLAGS:-}" ]; then skip "14 more clones cost under 8 MiB of memory" "sanitizer build"
else ok "14 more clones cost under 8 MiB of memory" test "$m16" -lt $((m2 + 8192)); fi
is "$(ls m16-*.xml | wc -l)" 16 "16 clones made"
ok "the 16th clone's vdb" cmp -s vm/data.img "$(disk_get m16-16.xml vdb source)"

# memory whatever the batch size: a qcow2 target with big clusters holds
# megabytes of caches (about 7 MiB with 1 MiB clusters), so the targets
# are written in groups that fit a budget, each group from one read
mkdir -p big
qemu-img create -q -f qcow2 -o cluster_size=1M big/t.qcow2 1G
qemu-io -f qcow2 -c "write -P 0x71 0 4k" -c "write -P 0x72 700M 4k" big/t.qcow2 > /dev/null
cat > big/t.xml <<EOF
<domain type='kvm'><name>bigc</name><memory>524288</memory>
<os><type arch='x86_64'>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='$T/big/t.qcow2'/><target dev='vda' bus='virtio'/></disk>
</devices></domain>
EOF
/usr/bin/time -f %M -o mem.txt "$KIMG" clone --original-xml big/t.xml -n 'bc{n}' --count 16 \
    -f 'big/{name}.qcow2' -q > /dev/null 2> err
is "$?" 0 "a batch of 16 of a qcow2 with 1 MiB clusters"
diag "peak RSS: $(< mem.txt) KiB"
if [ -n "${KIMG_SANFLAGS:-}" ]; then skip "under 64 MiB of memory" "sanitizer build"
else ok "under 64 MiB of memory" test "$(< mem.txt)" -lt 65536; fi
for i in 1 9 16; do
    ok "bc$i: as the template" qemu_oracle_compare big/t.qcow2 big/bc$i.qcow2
done
rm -f big/bc*.qcow2

# --nonsparse: every copy fully allocated
kimg clone --original-xml vm/web01.xml -n 'n{n}' --count 2 --auto-clone -q --nonsparse --output-xml 'n{n}.xml'
is "$RC" 0 "a --nonsparse batch"
for i in 1 2; do
    f=$(disk_get n$i.xml vdb source)
    ok "n$i: vdb as the template" cmp -s vm/data.img "$f"
    ok "n$i: vdb fully allocated" test "$(du -k "$f" | cut -f1)" -ge $((128 * 1024))
done

# --linked: one small overlay per clone
kimg clone --original-xml vm/web01.xml -n 'l{n}' --count 5 --auto-clone -q --linked --output-xml 'l{n}.xml'
is "$RC" 0 "a --linked batch of 5"
for i in 1 5; do
    f=$(disk_get l$i.xml vdb source)
    like "$(qemu-img info "$f")" "backing file: data.img" "l$i: vdb an overlay of the template"
    ok "l$i: small" test "$(stat -c %s "$f")" -lt 1048576
    ok "l$i: reads as the template" qemu_oracle_compare -f raw -F qcow2 vm/data.img "$f"
done
ok "sources unchanged" sources_unchanged vm
done_testing
