#!/bin/bash
# Tunables (img/tunables.c, README "Tunables and test hooks"): the library
# reads the environment in one module only, the README table names exactly
# the variables that module reads, and the engine switches no test uses
# otherwise still give the same images (the switches change the path, never
# the result).
. "$(dirname "$0")/lib.sh"
S=$KIMG_SRC

# getenv( in code: only img/tunables.c
got=$(cd "$S" && grep -rln --include='*.c' --include='*.h' 'getenv *(' img formats cmd clone | sort)
is "$got" "img/tunables.c" "getenv is called in img/tunables.c alone"

in_code=$(grep -o '"KIMG_[A-Z0-9_]*"' "$S/img/tunables.c" | tr -d '"' | sort -u)
in_readme=$(sed -n '/^## Tunables and test hooks/,/^## /p' "$S/README.md" |
            grep -o '^| `KIMG_[A-Z0-9_]*`' | grep -o 'KIMG_[A-Z0-9_]*' | sort -u)
is "$in_readme" "$in_code" "the README table lists every variable tunables.c reads, and no other"

# the same output through the other paths
qemu-img create -q -f qcow2 -o cluster_size=65536 src.qcow2 64M
qemu-io -f qcow2 -c 'write -P 0x11 0 3M' -c 'write -P 0x22 9M 1M' -c 'write -z 20M 2M' \
        -c 'write -P 0x33 40M 5M' src.qcow2 > /dev/null
qemu-img convert -f qcow2 -O raw src.qcow2 src.raw
"$KIMG" convert -f raw -O qcow2 src.raw ref.qcow2
for v in KIMG_CONVERT_NO_MAP KIMG_CONVERT_PARALLEL_WRITES KIMG_CONVERT_SERIAL; do
    for f in raw qcow2; do
        rm -f out.$f
        env $v=1 "$KIMG" convert -f qcow2 -O $f src.qcow2 out.$f
        ok "$v=1 convert to $f: same content" qemu_oracle_compare src.qcow2 out.$f
        [ $f = qcow2 ] && ok "$v=1 convert to qcow2: qemu-img check is clean" check_clean out.$f
    done
    env $v=1 "$KIMG" convert -f raw -O qcow2 src.raw out2.qcow2
    ok "$v=1 raw to qcow2: same file as without" cmp ref.qcow2 out2.qcow2
done
for v in "" KIMG_COMMIT_SERIAL=1; do
    rm -f base.qcow2 top.qcow2
    qemu-img create -q -f qcow2 base.qcow2 64M
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
    qemu-io -f qcow2 -c 'write -P 0x44 1M 3M' -c 'write -P 0x55 30M 1M' top.qcow2 > /dev/null
    qemu-img convert -f qcow2 -O raw top.qcow2 want.raw
    env $v "$KIMG" commit -q top.qcow2
    ok "commit ${v:-(default)}: the base holds the top's content" qemu_oracle_compare want.raw base.qcow2
    if [ -z "$v" ]; then cp base.qcow2 base-default.qcow2
    else ok "commit $v: the same base file as the default" cmp base-default.qcow2 base.qcow2; fi
done
done_testing
