#!/bin/bash
# check of every generated fixture: exit code, human output and JSON output
# (qemu-img's key set and order) equal qemu-img's; the dirty lazy-refcount
# fixture reports its errors (exit 2) without being repaired, as qemu-img
# check without -r does; raw fixtures are covered in 053-check-raw.t.
# make check: a third of the fixtures (lib.sh sampled); check-slow the
# rest; both run lazy-dirty.qcow2 (the one with errors).
. "$(dirname "$0")/lib.sh"
fixtures
cd "$FX"
for f in $(fixture_names qcow2); do
    sampled || [ "$f" = lazy-dirty.qcow2 ] || continue
    before=$(sha "$f")
    oracle "check $f" check "$f"
    oracle "check --output=json $f" check --output=json "$f"
    is "$(sha "$f")" "$before" "$f unchanged by kimg check"
done
oracle "check -q v3.qcow2" check -q v3.qcow2
oracle "check -f qcow2 --output=json cs512.qcow2" check -f qcow2 --output=json cs512.qcow2
done_testing
