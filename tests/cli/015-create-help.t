#!/bin/bash
# kimg create -f FMT -o help (and -o ?) lists the creation options as
# qemu-img does: "Supported FMT options:" then "  name=<type> ..." lines with
# qemu-img's names and types, exit 0, and creates no file; byte for byte
# with and without a file name (with one, the file protocol's options).
. "$(dirname "$0")/lib.sh"
for fmt in qcow2 raw; do
    qemu-img create -f $fmt -o help > q.help
    for h in help '?'; do
        kimg create -f $fmt -o "$h"
        is "$RC" 0 "create -f $fmt -o '$h': exit 0"
        is "$(head -1 "$T/out")" "Supported $fmt options:" "create -f $fmt -o '$h': first line"
    done
    # qemu-img's option lines, minus encryption (kimg has no encryption).
    while read -r want; do
        name=${want%%=*}
        got=$(grep -o "^  $name=<[^>]*>" "$T/out" | sed 's/^  //')
        is "$got" "$want" "create -f $fmt -o help lists $want"
    done < <(grep '^  [a-z_]*=' q.help | grep -v '^  encrypt' | sed 's/ *- .*//')
done
# byte for byte: without a file name the format's own options, with one
# the file protocol's merged in (extent_size_hint, nocow, raw's
# preallocation); convert -o help the same
for fmt in qcow2 raw; do
    oracle "create -f $fmt -o help" create -f $fmt -o help
    oracle "create -f $fmt -o help x.img" create -f $fmt -o help x.img
    oracle "convert -O $fmt -o help" convert -O $fmt -o help
    oracle "convert -O $fmt -o help a.img b.img" convert -O $fmt -o help a.img b.img
done
kimg create -f qcow2 -o help x.qcow2 1M
is "$RC" 0 "-o help with a file name: exit 0"
ok "-o help creates nothing" test ! -e x.qcow2
# help mixed with other options still prints help
kimg create -f qcow2 -o cluster_size=4k,help
is "$RC" 0 "-o cluster_size=4k,help: exit 0"
like "$(head -1 "$T/out")" "^Supported qcow2 options:" "-o cluster_size=4k,help: prints the list"
done_testing
