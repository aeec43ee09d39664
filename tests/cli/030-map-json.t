#!/bin/bash
# map --output=json of every generated fixture equals qemu-img's byte for
# byte (one object per line, "present"/"zero"/"data"/"offset", depth
# through backing chains, extended-L2 subclusters, compressed clusters).
. "$(dirname "$0")/lib.sh"
fixtures
cd "$FX"
for f in $(fixture_names); do
    oracle "map --output=json $f" map --output=json "$f"
done
done_testing
