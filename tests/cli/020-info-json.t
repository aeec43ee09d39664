#!/bin/bash
# info --output=json of every generated fixture equals qemu-img's, byte for
# byte (keys, order, 4-space indent, actual-size included); the fixture is
# not modified by reading it.
# make check: a third of the fixtures (lib.sh sampled), and the -f cases;
# check-slow: the other fixtures.
. "$(dirname "$0")/lib.sh"
fixtures
cd "$FX"
for f in $(fixture_names); do
    sampled || continue     # check: a third of the fixtures; check-slow: the rest
    before=$(sha "$f")
    oracle "info --output=json $f" info --output=json "$f"
    is "$(sha "$f")" "$before" "$f unchanged by kimg info"
done
# -f given explicitly
oracle "info -f qcow2 v3.qcow2" info -f qcow2 --output=json v3.qcow2
oracle "info -f raw holes.raw" info -f raw --output=json holes.raw
# a qcow2 read as raw (-f raw): qemu-img reports it as a raw image
oracle "info -f raw v3.qcow2" info -f raw --output=json v3.qcow2
done_testing
