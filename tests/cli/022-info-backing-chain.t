#!/bin/bash
# info --backing-chain (JSON array and human, blank line between images)
# equals qemu-img's for every fixture, chains included; a missing backing
# file: plain info still succeeds and reports the name, --backing-chain fails.
. "$(dirname "$0")/lib.sh"
fixtures
cd "$FX"
for f in $(fixture_names); do
    oracle "info --backing-chain --output=json $f" info --backing-chain --output=json "$f"
done
for f in chain-top.qcow2 chain-mid.qcow2 chain2-top.qcow2 short-top.qcow2 noformat-top.qcow2 v3.qcow2 holes.raw; do
    oracle "info --backing-chain $f" info --backing-chain "$f"
done
cd "$T"
qemu-img create -q -f qcow2 -u -b nosuch.qcow2 -F qcow2 o.qcow2 1M
oracle "info, missing backing file" info --output=json o.qcow2
oracle "info --backing-chain, missing backing file" info --backing-chain --output=json o.qcow2
err_line "info --backing-chain, missing backing file"
done_testing
