#!/bin/bash
# kimg create with a backing file: -b/-F, -o backing_file/backing_fmt, -u,
# size taken from the backing file, a backing name relative to the
# overlay's folder, an absolute one, a qcow2 backing, and data_file.  Each
# is made by both tools in twin folders q/ and k/ (so names are equal);
# `qemu-img info --output=json` must agree (actual-size aside: host
# allocation depends on layout) and `qemu-img check` be clean.  Errors as
# qemu-img's: missing backing without -u, -u without size, wrong -F.
. "$(dirname "$0")/lib.sh"
mkdir -p q/sub k/sub
for d in q k; do
    qemu-img create -q -f raw $d/b.raw 3M
    qemu-io -f raw -c "write -P 0x42 0 64k" -c "write -P 0x43 3M-512 512" $d/b.raw > /dev/null
    qemu-img create -q -f qcow2 $d/bq.qcow2 2M
done
cases=(
    "-b b.raw -F raw o.qcow2"
    "-b b.raw -F raw o.qcow2 1M"
    "-b b.raw -F raw o.qcow2 5M"
    "-o backing_file=b.raw,backing_fmt=raw o.qcow2"
    "-b b.raw -o backing_fmt=raw o.qcow2"
    "-F raw -o backing_file=b.raw o.qcow2"
    "-b bq.qcow2 -F qcow2 o.qcow2"
    "-b bq.qcow2 -F qcow2 -o compat=0.10 o.qcow2"
    "-b bq.qcow2 -F qcow2 -o cluster_size=4k,extended_l2=off o.qcow2"
    "-b ../b.raw -F raw sub/o.qcow2"
    "-u -b nosuch.qcow2 -F qcow2 o.qcow2 1G"
    "-u -b b.raw -F raw o.qcow2 2M"
    "-b b.raw -F raw -o extended_l2=on,preallocation=metadata o.qcow2"
    "-o data_file=o.data o.qcow2 1M"
    "-o data_file=o.data,data_file_raw=on o.qcow2 1M"
    "-o data_file=o.data,data_file_raw=on,preallocation=full o.qcow2 1M"
)
for c in "${cases[@]}"; do
    name="create $c"
    rm -f q/o.qcow2 k/o.qcow2 q/sub/o.qcow2 k/sub/o.qcow2 q/o.data k/o.data
    (cd q && qemu-img create -q -f qcow2 $c) || { fail "$name: qemu-img itself refused"; continue; }
    cd k; kimg create -q -f qcow2 $c; cd ..
    is "$RC" 0 "$name: exit 0" || { diag "$(< "$T/err")"; continue; }
    img=$(echo "$c" | grep -o '[a-z/]*o\.qcow2')
    (cd q && qemu-img info --output=json "$img" > ../qi.json)
    (cd k && qemu-img info --output=json "$img" > ../ki.json)
    json_norm_files actual-size qi.json ki.json
    is_file ki.json.norm qi.json.norm "$name: qemu-img info as for qemu-img's image"
    (cd k && check_clean_alone "$img") && pass "$name: qemu-img check clean" || fail "$name: qemu-img check clean"
    case $c in *-u*|*data_file*) ;; *)
        ok "$name: content equals qemu-img's image" qemu_oracle_compare "k/$img" "q/$img" ;;
    esac
    case $c in *data_file*)
        ok "$name: data file created" test -e k/o.data
        is "$(stat -c %s k/o.data)" "$(stat -c %s q/o.data)" "$name: data file length as qemu-img's" ;;
    esac
done
# Absolute backing name.
rm -f q/o.qcow2 k/o.qcow2
kimg create -q -f qcow2 -b "$T/k/b.raw" -F raw k/o.qcow2
is "$RC" 0 "absolute backing name: exit 0"
like "$(qemu-img info --output=json k/o.qcow2 | grep '"backing-filename"')" "\"$T/k/b.raw\"" "absolute backing name stored as given"
# Errors (qemu-img: exit 1).
cd k
kimg create -q -f qcow2 -b nosuch.qcow2 -F qcow2 e.qcow2 1M
is "$RC" 1 "missing backing without -u: exit 1"; err_line "missing backing"
ok "missing backing: no file left" test ! -e e.qcow2
kimg create -q -f qcow2 -u -b nosuch.qcow2 -F qcow2 e.qcow2
is "$RC" 1 "-u without a size: exit 1"; err_line "-u without a size"
kimg create -q -f qcow2 -b b.raw -F qcow2 e.qcow2
is "$RC" 1 "-F qcow2 on a raw backing file: exit 1"; err_line "wrong -F"
kimg create -q -f qcow2 -b b.raw -F raw sub/e.qcow2
is "$RC" 1 "backing name resolved against the overlay's folder (sub/b.raw missing): exit 1"
kimg create -q -f qcow2 -b b.raw -F raw -o preallocation=metadata e.qcow2
is "$RC" 1 "backing + preallocation without extended_l2: exit 1"; err_line "backing + preallocation"
done_testing
