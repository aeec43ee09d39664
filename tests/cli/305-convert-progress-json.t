#!/bin/bash
# convert --progress=json: one JSON object per line on stdout ({"done": N,
# "total": N, "elapsed": S}), starting at 0, never going back, ending at
# the total; -p keeps qemu-img's format; a bad value is refused.
. "$(dirname "$0")/lib.sh"
qemu-img create -q -f raw src.raw 12M
qemu-io -f raw -c 'write -P 0x5a 1M 3M' -c 'write -P 0x11 9M 64k' src.raw > /dev/null
for fmt in raw qcow2; do
    kimg convert --progress=json -f raw -O $fmt src.raw out.$fmt
    is "$RC" 0 "--progress=json -O $fmt: exit 0" || diag "$(< "$T/err")"
    is "$(wc -c < "$T/err")" 0 "-O $fmt: nothing on stderr"
    ok "-O $fmt: output identical" qemu_oracle_compare src.raw out.$fmt
    $PY - "$T/out" $((12 * 1024 * 1024)) > check.txt 2>&1 <<'PYEOF'
import json, sys
lines = open(sys.argv[1]).read().split("\n")
total = int(sys.argv[2])
assert lines[-1] == "", "output ends with a newline"
objs = [json.loads(l) for l in lines[:-1]]
assert len(objs) >= 2, "at least a first and a last line"
for o in objs:
    assert sorted(o) == ["done", "elapsed", "total"], o
    assert o["total"] == total, o
    assert isinstance(o["done"], int) and 0 <= o["done"] <= total, o
    assert isinstance(o["elapsed"], float) and o["elapsed"] >= 0, o
assert objs[0]["done"] == 0, objs[0]
assert objs[-1]["done"] == total, objs[-1]
for a, b in zip(objs, objs[1:]):
    assert b["done"] >= a["done"] and b["elapsed"] >= a["elapsed"], (a, b)
print("fine")
PYEOF
    is "$(< check.txt)" fine "-O $fmt: every line is a progress object, 0 to total, monotonic"
done
kimg convert --progress=human -f raw -O raw src.raw h.raw
like "$(tr '\r' '\n' < "$T/out" | grep -v '^$' | tail -1)" '^    \(100\.00/100%\)$' "--progress=human is -p"
kimg convert -q --progress=json -f raw -O raw src.raw q.raw
like "$(tail -1 "$T/out")" '^\{"done": 12582912, "total": 12582912, "elapsed": [0-9.]+\}$' \
    "-q does not silence the JSON progress asked for"
kimg convert --progress=xml -f raw -O raw src.raw x.raw
err_line "unknown --progress format"
ok "no output after the refusal" test ! -e x.raw
done_testing
