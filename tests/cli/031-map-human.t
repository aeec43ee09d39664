#!/bin/bash
# map (human output) of every generated fixture equals qemu-img's, including
# its refusal (exit 1 after the header line) on compressed clusters.
. "$(dirname "$0")/lib.sh"
fixtures
cd "$FX"
for f in $(fixture_names); do
    oracle "map $f" map "$f"
done
done_testing
