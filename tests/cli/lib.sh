# lib.sh — TAP helpers for the kimg CLI tests (bash).  Source it first:
#     . "$(dirname "$0")/lib.sh"
# It sets $KIMG (the binary; default $KIMG_BUILD/kimg), $KIMG_SRC,
# $KIMG_BUILD, $T (a per-test temp dir, removed on exit) and cds into $T.
#
# TAP:      plan N | pass NAME | fail NAME [DIAG...] | ok NAME CMD... |
#           is GOT WANT NAME | like GOT REGEX NAME | is_file GOT WANT NAME |
#           skip NAME REASON | skip_all REASON | diag MSG | done_testing
# Running:  run CMD...            → $RC, $T/out, $T/err
#           kimg ARGS...          → run "$KIMG" ARGS...
#           qimg ARGS...          → qemu-img ARGS... into $QRC, $T/qout, $T/qerr
#           oracle NAME ARGS...   → both; is stdout and exit code the same?
#           err_line NAME         → $T/err is one line "kimg: ..." and RC in 1..127
#           problem_lines FILE    → check's per-problem stderr lines, sorted
# Images:   fixtures              → $FX (cached generated fixtures, see
#                                    tests/images/make-fixtures.sh); fixture_names
#           json_norm FILE [KEY...] re-indent JSON (order kept), KEYs dropped
#           json_norm_files KEY,KEY FILE...  the same into FILE.norm, one python
#           qemu_oracle_compare A B  qemu-img compare -q (its exit code)
#           same_bytes A B        cmp -s of big sparse raw files, holes skipped
#           check_clean F          qemu-img check -q F exits 0
#           check_clean_alone F    the same, F's backing file not opened
#           sha FILE | poke FILE OFF HEX | get_be N FILE OFF | put_be N FILE OFF VAL
# Locks:    locked_byte FILE BYTE  QEMU's lock byte BYTE of FILE is held
#           hold_lock FILE         a qemu-io holds FILE's write lock ($holder)
# Create:   create_oracle OPTS SIZE  kimg create -o OPTS vs qemu-img's image
# Tiers:    sampled               true for the cases of a repeated test this
#                                  run takes (KIMG_TEST_PART: quick, the
#                                  default, every third; rest: the others;
#                                  all: every one)
#           slow_part             true in rest and all (a costly one-off check)
# Crashes:  crash_next N         the crash point (KIMG_CRASH_AFTER) a loop
#                                  takes after N: quick, 0-3 and then
#                                  every ninth; rest the others; all
#                                  (or KIMG_CRASH_FULL=1) every one
#           crash_points MAX      the points crash_next visits in 0..MAX
# Check:    $Q2 (tests/cli/qcow2.py: find/patch L2 entries and refcounts)
#           check_oracle NAME IMAGE ARGS...   kimg check vs qemu-img check on twins
#           repair_oracle NAME IMAGE -r MODE  the same for repairs
# A file that runs past KIMG_FILE_TIMEOUT seconds (600) is killed and
# bails out (one watchdog per file); a test that checks for a hang sets
# KIMG_TIMEOUT, and kimg and qimg then run under `timeout $KIMG_TIMEOUT`
# (exit 124: hung).
# Validate a new test against qemu-img itself: KIMG=a wrapper that runs
# qemu-img with "qemu-img: " turned into "kimg: " on stderr; every oracle
# assertion must then pass (only kimg's one-line-error rule may not).
# Once per shell: a helper that sources it again (msg-cases.sh) must not
# start a second watchdog (the first one's pid lost, it would outlive the
# file and signal whatever process reuses that pid) or make a second $T.
[ -z "${_kimg_lib_sourced:-}" ] || return 0
_kimg_lib_sourced=1
set -u
export LC_ALL=C
export KIMG_CHECK_ALIGN=1   # a large transfer from a misaligned buffer aborts (img/file.c)

KIMG_SRC=${KIMG_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
KIMG_BUILD=${KIMG_BUILD:-$KIMG_SRC/build}
KIMG=${KIMG:-$KIMG_BUILD/kimg}
export KIMG KIMG_SRC KIMG_BUILD

T=$(mktemp -d "${TMPDIR:-/tmp}/kimg-t.XXXXXX")
_tap_cleanup() {
    # Background helpers (e.g. a qemu-io holding a lock) registered by tests.
    local p
    trap '' TERM   # the file's result is out: a late watchdog changes nothing
    for p in ${_tap_bg_pids:-}; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    [ -z "${_tap_watchdog:-}" ] || { pkill -P "$_tap_watchdog" sleep; kill "$_tap_watchdog"; } 2>/dev/null
    cd / && rm -rf "$T"
}
trap _tap_cleanup EXIT
# The watchdog: one per file, where a `timeout` per command cost a fork
# and an exec each (thousands per run).  When it fires it kills every
# process the file started, then the file itself, which fails.  It is
# not the file's child (started from a subshell that exits at once), so a
# test's own bare `wait` does not wait for it.
_tap_kill_tree() {
    local c
    for c in $(pgrep -P "$1"); do _tap_kill_tree "$c"; done
    [ "$1" = "$$" ] || kill -KILL "$1" 2> /dev/null
}
trap 'fail "the file ran past KIMG_FILE_TIMEOUT=${KIMG_FILE_TIMEOUT:-600} s"; exit 1' TERM
_tap_watchdog=$(
    ( exec > /dev/null 2>&1 < /dev/null
      # (a sleep killed by _tap_cleanup ends the watchdog here: without
      # the check, a watchdog that woke before its own kill arrived went
      # on to fail a file that had passed)
      sleep "${KIMG_FILE_TIMEOUT:-600}" & wait $! || exit 0
      _tap_kill_tree "$$"
      kill -TERM "$$" ) &
    echo $!)
cd "$T" || exit 1
# loop_attach FILE SIZE: a new FILE of SIZE behind a loop device, detached
# at exit; LOOPDEV gets its name, or is empty (not root, or no losetup).
loop_attach() {
    LOOPDEV=
    [ "$(id -u)" = 0 ] && command -v losetup > /dev/null || return 0
    truncate -s "$2" "$1" && LOOPDEV=$(losetup -f --show "$1" 2> /dev/null) || LOOPDEV=
    [ -n "$LOOPDEV" ] && trap 'losetup -d "$LOOPDEV"; _tap_cleanup' EXIT
    return 0
}
ulimit -c 0

_tap_n=0
_tap_failed=0
_tap_planned=

plan()  { _tap_planned=$1; echo "1..$1"; }
diag()  { local l; while IFS= read -r l; do echo "# $l"; done <<< "$*"; }
pass()  { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n - $1"; return 0; }
fail()  {
    _tap_n=$((_tap_n + 1)); _tap_failed=$((_tap_failed + 1))
    echo "not ok $_tap_n - $1"; shift
    [ $# -gt 0 ] && diag "$*"
    return 1
}
skip()  { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n - $1 # SKIP ${2:-}"; }
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
done_testing() {
    [ -z "$_tap_planned" ] && echo "1..$_tap_n"
    if [ -n "$_tap_planned" ] && [ "$_tap_planned" != "$_tap_n" ]; then
        diag "planned $_tap_planned tests but ran $_tap_n"; exit 1
    fi
    [ "$_tap_failed" -eq 0 ] || { diag "failed $_tap_failed of $_tap_n"; exit 1; }
    exit 0
}

# ok NAME CMD...: passes if CMD exits 0.
ok() { local name=$1; shift; if "$@"; then pass "$name"; else fail "$name" "command failed ($?): $*"; fi; }
is() {
    if [ "$1" = "$2" ]; then pass "$3"; else
        fail "$3" "     got: '$1'
expected: '$2'"; fi
}
isnt() { if [ "$1" != "$2" ]; then pass "$3"; else fail "$3" "got '$1', expected anything else"; fi; }
like() {
    if [[ $1 =~ $2 ]]; then pass "$3"; else
        fail "$3" "     got: '$1'
expected to match: /$2/"; fi
}
# is_file GOT WANT NAME: byte-identical files; the diff (want → got) as diagnostics.
is_file() {
    if cmp -s "$1" "$2"; then pass "$3"; else
        fail "$3" "diff -u expected(qemu-img) got(kimg):
$(diff -u "$2" "$1" | head -60)"; fi
}

require() { local c; for c; do command -v "$c" > /dev/null || skip_all "$c not installed"; done; }
require qemu-img qemu-io python3
# qemu-img through tests/cli/shim/qemu-img: its LUKS benchmark's flake
# ("Unable to get accurate CPU usage") is retried there, for every caller
# (KIMG_REAL_QEMU_IMG: the first qemu-img on PATH outside any shim folder,
# so a PATH that already holds one cannot make the shim exec itself)
case ${KIMG_REAL_QEMU_IMG:-} in
'' | */tests/cli/shim/*)
    KIMG_REAL_QEMU_IMG=$(IFS=:; for d in $PATH; do
        case $d in */tests/cli/shim) continue ;; esac
        [ -x "$d/qemu-img" ] && { echo "$d/qemu-img"; break; }; done)
    export KIMG_REAL_QEMU_IMG ;;
esac
case :$PATH: in *":$KIMG_SRC/tests/cli/shim:"*) ;; *) export PATH="$KIMG_SRC/tests/cli/shim:$PATH" ;; esac
# ... except that a test's own calls of a command the shim would only
# exec skip the shim's shell (about 4 ms a call; the suite makes tens of
# thousands): the same test of the arguments as the shim's, in bash.
qemu-img() {
    case "$*" in
    *luks* | *encrypt* | *key-secret*) command qemu-img "$@" ;;
    *) "$KIMG_REAL_QEMU_IMG" "$@" ;;
    esac
}
# The distribution's python starts in ~20 ms; a pyenv shim takes ~150 ms.
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3

# run CMD...: output in $T/out and $T/err, exit code in $RC (never exits).
run() { RC=0; "$@" > "$T/out" 2> "$T/err" < /dev/null || RC=$?; return 0; }
# kimg ARGS: run kimg (under `timeout $KIMG_TIMEOUT` when a test sets it:
# exit 124 = hung; otherwise the file's watchdog stops a hang).
kimg() {
    if [ -n "${KIMG_TIMEOUT:-}" ]; then run timeout -k 5 "$KIMG_TIMEOUT" "$KIMG" "$@"
    else run "$KIMG" "$@"; fi
}
qimg() {
    QRC=0
    if [ -n "${KIMG_TIMEOUT:-}" ]; then
        timeout -k 5 "$KIMG_TIMEOUT" qemu-img "$@" > "$T/qout" 2> "$T/qerr" < /dev/null || QRC=$?
    else
        qemu-img "$@" > "$T/qout" 2> "$T/qerr" < /dev/null || QRC=$?
    fi
    return 0
}
# oracle NAME ARGS...: run qemu-img ARGS and kimg ARGS; one test for the
# exit code, one for stdout (byte-exact).  Returns 1 if either differed.
oracle() {
    local name=$1 r=0; shift
    qimg "$@"; kimg "$@"
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || { r=1; diag "kimg stderr: $(head -3 "$T/err")"; }
    is_file "$T/out" "$T/qout" "$name: stdout as qemu-img's" || r=1
    return $r
}
# err_line NAME: kimg failed cleanly: exit 1..127 (not 124, a timeout),
# stderr exactly one line starting "kimg: ".
# (read by bash itself: three processes fewer per call)
err_line() {
    local lines n; mapfile -t lines < "$T/err"; n=${#lines[@]}
    if [ "$RC" -ge 1 ] && [ "$RC" -lt 128 ] && [ "$RC" -ne 124 ] && [ "$n" -eq 1 ] && [[ ${lines[0]} == "kimg: "* ]]; then
        pass "$1: one-line kimg: error, exit $RC"
    else
        fail "$1: one-line kimg: error, exit 1..127" "exit $RC, stderr ($n lines):
$(head -5 "$T/err")"
    fi
}

# ---- fixtures -------------------------------------------------------------
# fixtures: set $FX to the generated fixtures, cached in $KIMG_BUILD/fixtures
# and regenerated (under a lock) when make-fixtures.sh or qemu-img changes.
fixtures() {
    local gen=$KIMG_SRC/tests/images/make-fixtures.sh
    local dir=$KIMG_BUILD/fixtures stamp
    stamp=$( (cat "$gen"; qemu-img --version) | sha256sum | cut -c1-16)
    mkdir -p "$KIMG_BUILD"
    (
        flock 9
        if [ "$(cat "$dir/STAMP" 2>/dev/null)" != "$stamp" ]; then
            rm -rf "$dir.new" "$dir"
            "$gen" "$dir.new" >&2 || exit 1
            echo "$stamp" > "$dir.new/STAMP"
            # written back before any test reads them: 031's map of
            # el2-2M.qcow2 differed from qemu-img's twice, each time on
            # just-made fixtures under load (suspected: block status of
            # files still being written back; not proven)
            sync -f "$dir.new/STAMP" 2> /dev/null || sync
            mv "$dir.new" "$dir"
        fi
    ) 9> "$KIMG_BUILD/fixtures.lock" || { echo "Bail out! make-fixtures.sh failed"; exit 1; }
    FX=$dir
}
# fixture_names [FORMAT]: names from $FX/LIST (all, or only FORMAT).
fixture_names() { awk -v f="${1:-}" 'f == "" || $2 == f { print $1 }' "$FX/LIST"; }

# ---- JSON and images ------------------------------------------------------
# json_norm FILE [KEY...]: parse FILE (one JSON value, or one per line as
# `map --output=json` in qemu-img < 7 did), drop KEY at every depth, print
# with 4-space indent keeping key order.  Dropping "offset" also merges map
# extents that then differ in nothing.  Use only where a field cannot be
# the same (say why at the call); compare raw output first.
json_norm() { local f=$1; shift; _json_norm "$(IFS=,; echo "$*")" - "$f"; }
# json_norm_files KEY,KEY... FILE...: json_norm each FILE into FILE.norm,
# in one python start (tests that normalise many files stay fast).
json_norm_files() { _json_norm "$@"; }
_json_norm() {
    $PY - "$@" <<'EOF'
import json, sys
drop = set(k for k in sys.argv[1].split(",") if k)
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in drop}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
def norm(path):
    text = open(path).read()
    try:
        vals = [json.loads(text)]
    except ValueError:
        vals = [json.loads(l) for l in text.splitlines() if l.strip()]
    vals = [merge(strip(v)) for v in vals]
    return "".join(json.dumps(v, indent=4) + "\n" for v in vals)
# Without "offset", map extents that differ only in host offset merge.
def merge(v):
    if "offset" not in drop or not isinstance(v, list):
        return v
    out = []
    for e in v:
        if (out and isinstance(e, dict) and "start" in e and
                {k: x for k, x in out[-1].items() if k not in ("start", "length")} ==
                {k: x for k, x in e.items() if k not in ("start", "length")} and
                out[-1]["start"] + out[-1]["length"] == e["start"]):
            out[-1]["length"] += e["length"]
        else:
            out.append(dict(e) if isinstance(e, dict) else e)
    return out
if sys.argv[2] == "-":
    sys.stdout.write(norm(sys.argv[3]))
else:
    for path in sys.argv[2:]:
        try:
            out = norm(path)
        except ValueError as e:
            out = "INVALID JSON: %s\n" % e
        open(path + ".norm", "w").write(out)
EOF
}
# ---- tiers ---------------------------------------------------------------
# make check runs every file, each repeated case (a matrix of options or
# fixtures, message cases, crash points) in a sample: KIMG_TEST_PART=quick
# (the default).  make check-slow runs the files that sample with
# KIMG_TEST_PART=rest, the cases check left out, so CI runs every case
# once; KIMG_TEST_PART=all (or KIMG_CRASH_FULL=1) runs them all at once.
# What is not a repeated case (setup, single assertions) runs in each part.
test_part() {
    if [ "${KIMG_CRASH_FULL:-0}" = 1 ]; then echo all; else echo "${KIMG_TEST_PART:-quick}"; fi
}
export KIMG_TEST_PART; KIMG_TEST_PART=$(test_part)
case $KIMG_TEST_PART in quick|rest|all) ;; *) echo "Bail out! KIMG_TEST_PART=$KIMG_TEST_PART: quick, rest or all"; exit 1 ;; esac
# sampled [K]: call once per case of a loop, in the loop's own shell (a
# count kept across the file): quick takes the 1st, (K+1)th, (2K+1)th...
# call of the file (K is 3 unless given; a loop whose cases are not
# ordered in threes may take 4 or 5), rest the others.
# `for c in ...; do sampled || continue; ...; done`
_sampled_n=0
sampled() {
    local k=${1:-3}
    _sampled_n=$((_sampled_n + 1))
    case $KIMG_TEST_PART in
        all) return 0 ;;
        quick) [ $(( (_sampled_n - 1) % k )) -eq 0 ] ;;
        rest) [ $(( (_sampled_n - 1) % k )) -ne 0 ] ;;
    esac
}
# slow_part: true in check-slow's part (rest) and in all: for a costly
# one-off check that is not a repeated case (say why at the call), e.g.
# qemu-img's own check of an image with 65535 snapshots.
slow_part() { [ "$KIMG_TEST_PART" != quick ]; }
# crash_next N: the next crash point of a loop over KIMG_CRASH_AFTER=N.
# quick: points 0 to 3 (a command's opening moves), then 12 and doubling
# (24, 48, 96...): a few points in each stretch of the run however long
# it is, the long loops belong to check-slow; rest: the points quick skips
# (4-11, 13-23, 25-47...); all: every point.  A loop's own first point
# runs in both parts.
crash_next() {
    local n=$(($1 + 1)) m
    case $KIMG_TEST_PART in
        quick) [ "$1" -lt 3 ] || n=$(( $1 == 3 ? 12 : $1 * 2 )) ;;
        rest) while m=$((n / 12)); [ "$n" -le 3 ] || { [ $((n % 12)) -eq 0 ] && [ $((m & (m - 1))) -eq 0 ]; }; do
                  n=$((n + 1))
              done ;;
    esac
    echo "$n"
}
crash_points() {
    local n=0
    while [ "$n" -le "$1" ]; do echo "$n"; n=$(crash_next "$n"); done
}
# locked_byte FILE BYTE: some process holds an OFD lock covering BYTE of
# FILE (read from /proc/locks, so polling takes no lock itself: a polling
# qemu-img would make qemu-io's own open fail on a lock conflict).
locked_byte() {
    local ino; ino=$(stat -c %i "$1")
    awk -v ino=":$ino" -v b="$2" '$2 == "OFDLCK" && substr($6, length($6) - length(ino) + 1) == ino &&
        $7 <= b && ($8 == "EOF" || $8 >= b) { found = 1 } END { exit !found }' /proc/locks
}
# nap SECONDS: wait without starting a process (read's timeout on a FIFO
# nobody writes, opened read-write so the open never blocks): polling
# loops call it every 10 ms where `sleep 0.1` cost a fork and exec and up
# to 100 ms per server start or stop.
nap() {
    [ -p "$T/.nap" ] || mkfifo "$T/.nap"
    read -r -t "$1" _ <> "$T/.nap" || true
}
# hold_lock FILE: a qemu-io holds FILE open read-write (its write lock,
# byte 101) until killed; returns once the lock is there (up to 20 s).
# The holder's pid is $holder, killed at exit if still running.
hold_lock() {
    ( exec qemu-io -c "sleep 600000" "$1" > /dev/null 2>&1 ) &
    holder=$!; _tap_bg_pids="${_tap_bg_pids:-} $holder"
    local i
    for i in $(seq 1000); do
        locked_byte "$1" 101 && return 0
        kill -0 "$holder" 2> /dev/null || break
        nap 0.02
    done
    diag "qemu-io never took its lock on $1"; return 1
}
qemu_oracle_compare() { qemu-img compare -q "$@" > /dev/null 2>&1; }
# same_bytes A B: cmp -s for big sparse files: the same length and the same
# bytes, holes skipped (qemu-img compare of two raw files; cmp read 5 GiB
# of holes in 20 s here)
same_bytes() {
    [ "$(stat -c %s "$1")" = "$(stat -c %s "$2")" ] && qemu-img compare -q -f raw -F raw "$1" "$2" > /dev/null 2>&1
}
check_clean() { qemu-img check -q "$@" > /dev/null 2>&1; }
# check_clean_alone F: qemu-img check of a qcow2 F without opening its
# backing file (which may be missing on purpose).
check_clean_alone() {
    qemu-img check -q "json:{\"driver\":\"qcow2\",\"backing\":null,\"file\":{\"driver\":\"file\",\"filename\":\"$1\"}}" > /dev/null 2>&1
}
sha() { sha256sum < "$1" | cut -d' ' -f1; }
# poke FILE OFFSET HEXBYTES: overwrite bytes in place ("e2792aca").
poke() {
    local f=$1 off=$2 hex=$3 esc=
    while [ -n "$hex" ]; do esc+="\\x${hex:0:2}"; hex=${hex:2}; done
    printf "$esc" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
}
# get_be NBYTES FILE OFFSET: unsigned big-endian integer (NBYTES <= 8).
get_be() {
    local hex
    hex=$(od -An -tx1 -v -j "$3" -N "$1" "$2" | tr -d ' \n')
    printf '%u\n' "0x${hex:-0}"
}
# put_be NBYTES FILE OFFSET VALUE
put_be() { poke "$2" "$3" "$(printf "%0$(($1 * 2))x" "$4")"; }

# ---- check helpers ----------------------------------------------------------
Q2="$PY $KIMG_SRC/tests/cli/qcow2.py"     # find/patch qcow2 metadata
# problem_lines FILE: qemu-img check's per-problem lines (ERROR/Leaked/
# Repairing/Rebuilding/Warning), sorted, so their order does not matter.
problem_lines() { grep -E '^(ERROR|Leaked|Repairing|Rebuilding|Warning)' "$1" | sort; }
# check_oracle NAME IMAGE [CHECK-ARGS...]: on twin copies cq/IMAGE (for
# qemu-img) and ck/IMAGE (for kimg), IMAGE a name in $T, run `check ARGS`
# from inside each folder; same exit code, same stdout, same per-problem
# lines on stderr.  Repairs (-r) act on the twins, which the caller may
# then compare.
check_oracle() {
    local name=$1 img=$2; shift 2
    mkdir -p "$T/cq" "$T/ck"
    cp "$T/$img" "$T/cq/$img"; cp "$T/$img" "$T/ck/$img"
    QRC=0; (cd "$T/cq" && qemu-img check "$@" "$img") > "$T/qout" 2> "$T/qerr" || QRC=$?
    RC=0; (cd "$T/ck" && "$KIMG" check "$@" "$img") > "$T/out" 2> "$T/err" || RC=$?
    is "$RC" "$QRC" "$name: exit code $QRC as qemu-img's" || diag "kimg stderr: $(head -3 "$T/err")"
    is_file "$T/out" "$T/qout" "$name: stdout as qemu-img's"
    problem_lines "$T/qerr" > "$T/qerr.p"; problem_lines "$T/err" > "$T/err.p"
    is_file "$T/err.p" "$T/qerr.p" "$name: per-problem lines on stderr as qemu-img's"
}

# ---- create helper ------------------------------------------------------------
# create_oracle OPTS SIZE: `create -f qcow2 -o OPTS img.qcow2 SIZE` by
# qemu-img in $T/q and kimg in $T/k; kimg's image must pass qemu-img check,
# show the same qemu-img info (actual-size aside: host allocation depends on
# the metadata layout) and map (host offsets aside), compare equal, and stay
# clean after qemu-io writes to it.
create_oracle() {
    local o=$1 size=$2 opt=() name
    [ -n "$o" ] && opt=(-o "$o")
    name="create -o '$o' $size"
    mkdir -p "$T/q" "$T/k"
    rm -f "$T/q/img.qcow2" "$T/k/img.qcow2"
    (cd "$T/q" && qemu-img create -q -f qcow2 "${opt[@]}" img.qcow2 "$size") ||
        { fail "$name: qemu-img itself refused"; return 1; }
    RC=0; (cd "$T/k" && "$KIMG" create -q -f qcow2 "${opt[@]}" img.qcow2 "$size") > "$T/out" 2> "$T/err" || RC=$?
    if [ "$RC" -ne 0 ]; then fail "$name: exit 0" "exit $RC: $(head -2 "$T/err")"; return 1; fi
    pass "$name: exit 0"
    ok "$name: qemu-img check clean" check_clean "$T/k/img.qcow2"
    (cd "$T/q" && qemu-img info --output=json img.qcow2 > ../qi.json)
    (cd "$T/k" && qemu-img info --output=json img.qcow2 > ../ki.json)
    qemu-img map --output=json "$T/q/img.qcow2" > "$T/qm.json"
    qemu-img map --output=json "$T/k/img.qcow2" > "$T/km.json"
    json_norm_files actual-size,offset "$T/qi.json" "$T/ki.json" "$T/qm.json" "$T/km.json"
    is_file "$T/ki.json.norm" "$T/qi.json.norm" "$name: qemu-img info as for qemu-img's image"
    is_file "$T/km.json.norm" "$T/qm.json.norm" "$name: qemu-img map as for qemu-img's image (offsets aside)"
    ok "$name: content equals qemu-img's image" qemu_oracle_compare "$T/k/img.qcow2" "$T/q/img.qcow2"
    qemu-io -f qcow2 -c "write -P 0x5a 0 64k" -c "write -P 0xa5 1M 1k" -c "write -z 512k 128k" \
        "$T/k/img.qcow2" > /dev/null 2>&1
    ok "$name: clean after qemu-io writes" check_clean "$T/k/img.qcow2"
}
# repair_oracle NAME IMAGE -r MODE [ARGS...]: `check -r MODE` by both tools
# on twins (as check_oracle).  If kimg repairs the image fully (exit 0 and
# qemu-img check then clean) where qemu-img's own repair fails, that is
# accepted (and noted): the brief is a clean image.  Otherwise exit code,
# stdout and per-problem lines must be qemu-img's, and qemu-img check of
# the two repaired twins must exit alike.  "Image end offset" (text and
# JSON) is left out: where a repair puts rebuilt refcount structures is the
# implementation's choice.
repair_oracle() {
    local name=$1 img=$2; shift 2
    mkdir -p "$T/cq" "$T/ck"
    cp "$T/$img" "$T/cq/$img"; cp "$T/$img" "$T/ck/$img"
    QRC=0; (cd "$T/cq" && qemu-img check "$@" "$img") > "$T/qout" 2> "$T/qerr" || QRC=$?
    RC=0; (cd "$T/ck" && "$KIMG" check "$@" "$img") > "$T/out" 2> "$T/err" || RC=$?
    local qpost=0 kpost=0
    qemu-img check "$T/cq/$img" > /dev/null 2>&1 || qpost=$?
    qemu-img check "$T/ck/$img" > /dev/null 2>&1 || kpost=$?
    if [ "$RC" -eq 0 ] && [ "$kpost" -eq 0 ] && [ "$QRC" -ne 0 ]; then
        pass "$name: kimg repaired it (qemu-img's repair exits $QRC, leaves check exit $qpost)"
        return 0
    fi
    is "$RC" "$QRC" "$name: exit code $QRC as qemu-img's" || diag "kimg stderr: $(head -3 "$T/err")"
    sed -i -e '/^Image end offset: /d' -e '/"image-end-offset": /d' "$T/out" "$T/qout"
    is_file "$T/out" "$T/qout" "$name: stdout as qemu-img's (image end offset aside)"
    problem_lines "$T/qerr" > "$T/qerr.p"; problem_lines "$T/err" > "$T/err.p"
    is_file "$T/err.p" "$T/qerr.p" "$name: per-problem lines on stderr as qemu-img's"
    is "$kpost" "$qpost" "$name: then qemu-img check exits $qpost as for qemu-img's repair"
}
