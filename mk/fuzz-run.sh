#!/bin/sh
# mk/fuzz-run.sh DIR SECONDS JOBS TARGET... — `make fuzz`: each libFuzzer
# target in DIR for SECONDS, JOBS of them at a time (one core each), new
# inputs kept in DIR/corpus/TARGET, fuzz/corpus/TARGET read as seeds, a
# crash saved as DIR/TARGET-crash-*.  Each run's output goes to
# DIR/TARGET.log, printed whole when it fails; the exit is non-zero when
# any target found something.
set -u
dir=$1 secs=$2 jobs=$3
shift 3
for t in "$@"; do echo "$t"; done | xargs -P "$jobs" -I{} sh -c '
    dir=$1 secs=$2 t=$3
    mkdir -p "$dir/corpus/$t"
    dict=; [ -f "fuzz/$t.dict" ] && dict=-dict=fuzz/$t.dict
    if "$dir/$t" $dict -max_total_time="$secs" -rss_limit_mb=2048 -max_len=1048576 \
           -timeout=25 -print_final_stats=1 -artifact_prefix="$dir/$t-" \
           "$dir/corpus/$t" "fuzz/corpus/$t" > "$dir/$t.log" 2>&1; then
        echo "== fuzzed $t for ${secs}s: $(grep -m1 "stat::number_of_executed_units" "$dir/$t.log" | sed "s/.*: *//") runs"
    else
        echo "== FAILED: $t (its output follows)"; cat "$dir/$t.log"; exit 255
    fi' sh "$dir" "$secs" {}
