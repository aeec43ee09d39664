#!/bin/bash
# info (human output) of every generated fixture equals qemu-img's,
# byte for byte, including the "disk size" and snapshot table.
. "$(dirname "$0")/lib.sh"
fixtures
cd "$FX"
for f in $(fixture_names); do
    oracle "info $f" info "$f"
done
oracle "info --output=human v3.qcow2" info --output=human v3.qcow2
done_testing
