#!/bin/bash
# snapshot -l prints what qemu-img prints (byte for byte, exit code), and
# snapshots made by kimg look exactly like qemu-img's in `snapshot -l`,
# `info` and `info --output=json` of both tools:
#   qemu-made fixtures (two snapshots, none, compat 0.10, extended L2),
#   -U, -q, --untrusted, a raw image (nothing listed, exit 0);
#   kimg-made snapshots with long (cut at 255 bytes as qemu-img cuts),
#   empty, duplicate, spaced and non-ASCII names, twenty of them (ID
#   widths), on v3 and v2 images; a snapshot with VM state (VM SIZE).
. "$(dirname "$0")/lib.sh"
fixtures

cd "$FX"
for f in snap.qcow2 v3.qcow2 v2.qcow2 amend-v2.qcow2 empty.qcow2 el2.qcow2; do
    oracle "snapshot -l $f" snapshot -l "$f"
done
oracle "snapshot -U -l" snapshot -U -l snap.qcow2
oracle "snapshot -q -l" snapshot -q -l snap.qcow2
oracle "snapshot -l of a raw image" snapshot -l holes.raw
qimg snapshot -l snap.qcow2
kimg snapshot --untrusted -l snap.qcow2
is "$RC" 0 "--untrusted -l of an image without backing file: exit 0"
is_file "$T/out" "$T/qout" "--untrusted -l: the same listing"
kimg snapshot --untrusted -l chain2-top.qcow2
err_line "--untrusted -l of an overlay (refused)"

cd "$T"
long=$(printf 'n%.0s' {1..300})
names=(first "with space" "" "ünïcödé" first "$long")
for v in 1.1 0.10; do
    mkdir -p "k$v" "q$v"
    cp "$FX/v3.qcow2" "k$v/img.qcow2"
    qemu-img amend -o compat=$v "k$v/img.qcow2"
    cp "k$v/img.qcow2" "q$v/img.qcow2"
    for n in "${names[@]}"; do
        kimg snapshot -c "$n" "k$v/img.qcow2"
        [ "$RC" = 0 ] || fail "compat $v: kimg snapshot -c '$n'" "exit $RC: $(< "$T/err")"
        qemu-img snapshot -c "$n" "q$v/img.qcow2"
    done
    pass "compat $v: ${#names[@]} snapshots created by kimg"
    cd "k$v"
    oracle "compat $v: snapshot -l of kimg's snapshots" snapshot -l img.qcow2
    like "$(sed -n 8p "$T/out")" "^6 +n{255} " "compat $v: the long name cut at 255 bytes, as qemu-img cuts it"
    oracle "compat $v: info of kimg's snapshots" info img.qcow2
    oracle "compat $v: info --output=json of kimg's snapshots" info --output=json img.qcow2
    cd ..
    # against qemu-img's own snapshots of the same names: only dates differ
    qemu-img info --output=json "k$v/img.qcow2" > k.json
    qemu-img info --output=json "q$v/img.qcow2" > q.json
    sed -i 's/"filename": "[kq]/"filename": "/' k.json q.json
    json_norm_files date-sec,date-nsec,actual-size,image-end-offset k.json q.json
    is_file k.json.norm q.json.norm "compat $v: qemu-img info shows kimg's snapshots as its own (dates aside)"
    ok "compat $v: clean" check_clean "k$v/img.qcow2"
done

# twenty snapshots: IDs of two digits
cp "$FX/v3.qcow2" many.qcow2
for i in $(seq 20); do kimg snapshot -c "s$i" many.qcow2 || break; done
oracle "snapshot -l of twenty snapshots" snapshot -l many.qcow2
like "$(tail -1 "$T/out")" "^20 +s20 " "the twentieth has ID 20"
ok "twenty snapshots: clean" check_clean many.qcow2

# a snapshot with VM state, as savevm leaves it: the state lies in the
# snapshot's L1 table past the disk (here at 4 MiB with 4 KiB clusters),
# the active image no longer maps it
qemu-img create -q -f qcow2 -o cluster_size=4k vm.qcow2 4M
qemu-io -c "write -P 0x11 0 64k" vm.qcow2 > /dev/null
qemu-img resize -q vm.qcow2 6M
qemu-io -c "write -P 0x99 4M 64k" vm.qcow2 > /dev/null
qemu-img snapshot -c vmsnap vm.qcow2
qemu-io -c "discard 4M 64k" vm.qcow2 > /dev/null
so=$(get_be 8 vm.qcow2 64)
put_be 8 vm.qcow2 24 $((4 << 20))            # the disk is 4 MiB
put_be 4 vm.qcow2 $((so + 32)) 65536         # vm_state_size
put_be 8 vm.qcow2 $((so + 40)) 65536         # vm_state_size_large
put_be 8 vm.qcow2 $((so + 48)) $((4 << 20))  # disk_size
ok "VM-state image: clean" check_clean vm.qcow2
oracle "snapshot -l of a VM-state snapshot" snapshot -l vm.qcow2
like "$(tail -1 "$T/out")" "^1 +vmsnap +64 KiB " "VM SIZE shows the state's size"
oracle "info --output=json of a VM-state snapshot" info --output=json vm.qcow2
done_testing
