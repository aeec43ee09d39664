#!/bin/bash
# A lazy-refcounts image left dirty (qemu-io aborted after writing): check
# without -r reports the stale refcounts (exit 2) and leaves the file
# alone; check -r all rebuilds the refcounts (qemu-img's output and exit 0,
# then clean, dirty flag cleared, data kept); check -r leaks cannot (exit 1
# "check not completed" as qemu-img); info reports "dirty-flag": true.
. "$(dirname "$0")/lib.sh"
fixtures
cp "$FX/lazy-dirty.qcow2" d.qcow2
before=$(sha d.qcow2)
check_oracle "dirty image: check" d.qcow2
check_oracle "dirty image: check --output=json" d.qcow2 --output=json
is "$(sha ck/d.qcow2)" "$before" "check without -r leaves the dirty image unchanged"
check_oracle "dirty image: check -r all" d.qcow2 -r all
ok "dirty image: clean after kimg check -r all" check_clean ck/d.qcow2
is "$(qemu-img info --output=json ck/d.qcow2 | grep dirty-flag)" '    "dirty-flag": false' "dirty flag cleared"
ok "dirty image: data kept by the repair" qemu_oracle_compare ck/d.qcow2 cq/d.qcow2
qemu-io -f qcow2 -r -c "read -P 0x55 0 64k" -c "read -P 0x66 1M 4k" ck/d.qcow2 > io.out 2>&1
is "$(grep -c '^read' io.out)" 2 "dirty image: the written patterns survive the repair"
check_oracle "dirty image: check -r all --output=json" d.qcow2 -r all --output=json
check_oracle "dirty image: check -r leaks" d.qcow2 -r leaks
cd "$FX"
oracle "info of the dirty image" info --output=json lazy-dirty.qcow2
done_testing
