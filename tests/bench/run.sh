#!/bin/bash
# run.sh — `make bench`: kimg against qemu-img on the same inputs with the
# same arguments, alternating which goes first, BENCH_RUNS times (default 3).
# Prints per case the median wall times, the ratio kimg/qemu-img (lower is
# better: the median of the runs' paired ratios, each kimg run over the
# qemu-img run next to it, which a machine drifting between fast and slow
# spells disturbs less than a ratio of medians), the median CPU times
# (user+sys: less noisy than wall time on a loaded machine) and their
# paired ratio, kimg's peak RSS, whether the outputs compare identical,
# and for compressed outputs the size ratio.  Not a
# test: numbers, not verdicts.
# Cases whose output holds the data plainly also measure the page-cache
# floor (floor.c: how long the kernel takes to accept that data into a new
# file's page cache, which a buffered file takes from one writer at a
# time), in the same alternation: "floor" is its median, "k/floor" kimg's
# median over it and "best" the median paired ratio floor/qemu-img: the
# lowest ratio a buffered conversion could reach.  No buffered conversion
# of those cases can take much less than the floor; for a decompressing
# case it is only the part that cannot overlap with decompression.
# "k/pipe" is kimg's median over floor.c's second floor (-p, measured in
# the same alternation): one thread reading the source while another
# writes it, the best a two-thread copy that must read its source can do.
#   BENCH_DIR   where inputs live (default /var/tmp/kimg-bench; built once)
#   BENCH_CASES space-separated case names to run (default: all)
#   KIMG        the kimg binary (default build/kimg)
#   FLOOR       the floor binary (default: none, no floor column)
#   CALIB       the calibration binary (calib.c; default: none)
#   BENCH_LOAD  "idle", "busy" or both (default "idle busy"): busy runs
#               the table again with one core kept busy by a CPU hog
#               (started before the first run, stopped after the last), as
#               on a hypervisor whose guests use their cores
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
KIMG=${KIMG:-$here/../../build/kimg}
dir=${BENCH_DIR:-/var/tmp/kimg-bench}
runs=${BENCH_RUNS:-3}
"$here/inputs.sh" "$dir"
cd "$dir"

# name | arguments after the command name | output | compare-with |
# floor source (a raw file holding the same data, or empty: no floor)
cases=(
  "raw-to-qcow2|convert -f raw -O qcow2 disk.raw OUT|out.qcow2|disk.raw|disk.raw"
  "qcow2-to-raw|convert -f qcow2 -O raw disk.qcow2 OUT|out.raw|disk.raw|disk.raw"
  "qcow2-to-raw-direct|convert -t none -f qcow2 -O raw disk.qcow2 OUT|out.raw|disk.raw|"
  "raw-to-raw-sparse|convert -f raw -O raw disk.raw OUT|out.raw|disk.raw|disk.raw"
  "random-to-qcow2|convert -f raw -O qcow2 random.raw OUT|out.qcow2|random.raw|random.raw"
  "compress-zlib|convert -c -f qcow2 -O qcow2 disk.qcow2 OUT|out.qcow2|disk.raw|"
  "compress-zstd|convert -c -o compression_type=zstd -f qcow2 -O qcow2 disk.qcow2 OUT|out.qcow2|disk.raw|"
  "zlib-to-raw|convert -f qcow2 -O raw disk-zlib.qcow2 OUT|out.raw|disk.raw|disk.raw"
  "zstd-to-raw|convert -f qcow2 -O raw disk-zstd.qcow2 OUT|out.raw|disk.raw|disk.raw"
  "hole-to-qcow2|convert -f raw -O qcow2 hole.raw OUT|out.qcow2|hole.raw|"
  "compare|compare -f qcow2 -F raw disk.qcow2 disk.raw|||"
  "vhd-to-raw|convert -f vpc -O raw disk.vhd OUT|out.raw|disk.raw|disk.raw"
  "vdi-to-qcow2|convert -f vdi -O qcow2 disk.vdi OUT|out.qcow2|disk.raw|"
  "vhdx-to-qcow2|convert -f vhdx -O qcow2 disk.vhdx OUT|out.qcow2|disk.raw|"
  "raw-to-vhdx|convert -f raw -O vhdx disk.raw OUT|out.vhdx|disk.raw|"
  "vmdk-stream-to-qcow2|convert -f vmdk -O qcow2 disk-stream.vmdk OUT|out.qcow2|disk.raw|"
  "vmdk-to-raw|convert -f vmdk -O raw disk.vmdk OUT|out.raw|disk.raw|disk.raw"
  "raw-to-vmdk-stream|convert -f raw -O vmdk -o subformat=streamOptimized disk.raw OUT|out.vmdk|disk.raw|"
  "random-to-vmdk-stream|convert -f raw -O vmdk -o subformat=streamOptimized random.raw OUT|out.vmdk|random.raw|"
  "raw-to-vmdk|convert -f raw -O vmdk disk.raw OUT|out.vmdk|disk.raw|"
  "raw-to-vhd-fixed|convert -f raw -O vpc -o subformat=fixed disk.raw OUT|out.vhd|disk.raw|"
  "raw-to-vhd-dynamic|convert -f raw -O vpc disk.raw OUT|out.vhd|disk.raw|"
  "raw-to-vdi|convert -f raw -O vdi disk.raw OUT|out.vdi|disk.raw|"
)

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR) print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# floor SRC: both floors once; append "seconds 0 0" to times.floor and
# times.pipe
floor() {
    local mode
    for mode in floor pipe; do
        rm -f out.qcow2 out.raw out.floor out.vhdx out.vmdk out.vhd out.vdi
        sync
        echo "$("$FLOOR" $([ $mode = pipe ] && echo -p) "$1" out.floor) 0 0" >> "$dir/times.$mode"
    done
}

# timed TOOL ARGS...: run once; append "seconds maxrss_kib cpu_seconds"
# to times.TOOL
timed() {
    local tool=$1; shift
    rm -f out.qcow2 out.raw out.floor out.vhdx out.vmdk out.vhd out.vdi
    sync
    /usr/bin/time -f "%e %M %U %S" -o "$dir/time.$tool" "$@" > /dev/null 2> "$dir/err.$tool" ||
        { echo "bench: $tool failed: $*" >&2; cat "$dir/err.$tool" >&2; return 1; }
    awk '{ printf "%s %s %.2f\n", $1, $2, $3 + $4 }' "$dir/time.$tool" >> "$dir/times.$tool"
}

# The machine, so a table can be read against another host's.
echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; kernel $(uname -r)"
[ -z "${CALIB:-}" ] || echo "# calibration: $("$CALIB" "$dir/calib.tmp")"

hog_pid=
stop_hog() { [ -z "$hog_pid" ] || { kill "$hog_pid" 2>/dev/null; wait "$hog_pid" 2>/dev/null || true; }; hog_pid=; }
trap stop_hog EXIT

# table: every case, once
table() {
    printf '%-22s %9s %9s %7s %9s %9s %7s %8s %7s %5s %6s %9s %8s %s\n' case qemu-img kimg ratio \
        "q-cpu" "k-cpu" "cpu-r" floor k/floor best k/pipe "kimg-RSS" output size
    for c in "${cases[@]}"; do
        IFS='|' read -r name args out ref fsrc <<< "$c"
        [ -n "${FLOOR:-}" ] || fsrc=
        if [ -n "${BENCH_CASES:-}" ] && ! [[ " $BENCH_CASES " == *" $name "* ]]; then continue; fi
        read -r -a argv <<< "${args//OUT/$out}"
        rm -f times.qemu times.kimg times.floor times.pipe
        # warm the page cache with one untimed run of each
        qemu-img "${argv[@]}" > /dev/null 2>&1 || true
        "$KIMG" "${argv[@]}" > /dev/null 2>&1 || true
        [ -z "$fsrc" ] || "$FLOOR" "$fsrc" out.floor > /dev/null || true
        verdict=- sizes=-
        qsize=0
        for i in $(seq "$runs"); do
            if [ $((i % 2)) = 1 ]; then
                timed qemu qemu-img "${argv[@]}"
                [ -z "$out" ] || qsize=$(stat -c %s "$out")
                timed kimg "$KIMG" "${argv[@]}"
                [ -z "$fsrc" ] || floor "$fsrc"
            else
                [ -z "$fsrc" ] || floor "$fsrc"
                timed kimg "$KIMG" "${argv[@]}"
                timed qemu qemu-img "${argv[@]}"
                [ -z "$out" ] || qsize=$(stat -c %s "$out")
            fi
        done
        # one more kimg run, untimed, whose output is checked
        [ -z "$out" ] || { rm -f "$out"; "$KIMG" "${argv[@]}" > /dev/null; }
        if [ -n "$out" ]; then
            # (a fixed VHD probes as raw in qemu-img 7.2: name its format)
            if qemu-img compare -q $([[ $out == *.vhd ]] && echo "-F vpc") "$ref" "$out" > /dev/null 2>&1; then verdict=identical; else verdict=DIFFERENT; fi
            if [[ $name == compress-* || $name == *-vmdk-stream ]]; then
                sizes=$(awk -v k="$(stat -c %s "$out")" -v q="$qsize" 'BEGIN { printf "%.3f", k / q }')
            fi
        fi
        tq=$(cut -d' ' -f1 times.qemu | median)
        tk=$(cut -d' ' -f1 times.kimg | median)
        cq=$(cut -d' ' -f3 times.qemu | median)
        ck=$(cut -d' ' -f3 times.kimg | median)
        rss=$(cut -d' ' -f2 times.kimg | sort -n | tail -1)
        tf=- fratio=- best=- pratio=-
        if [ -n "$fsrc" ]; then
            tf=$(cut -d' ' -f1 times.floor | median)
            fratio=$(awk -v a="$tk" -v b="$tf" 'BEGIN { printf (b > 0 ? "%.2f" : "-"), a / b }')
            best=$(paste -d' ' times.floor times.qemu | awk '$4 > 0 { print $1 / $4 }' | median)
            best=$(awk -v r="$best" 'BEGIN { printf (r != "" ? "%.2f" : "-"), r }')
            tf=$(printf '%.2fs' "$tf")
            tp=$(cut -d' ' -f1 times.pipe | median)
            pratio=$(awk -v a="$tk" -v b="$tp" 'BEGIN { printf (b > 0 ? "%.2f" : "-"), a / b }')
        fi
        # medians of the paired ratios (line I of each file: run I)
        ratio=$(paste -d' ' times.kimg times.qemu | awk '$4 > 0 { print $1 / $4 }' | median)
        cratio=$(paste -d' ' times.kimg times.qemu | awk '$6 > 0 { print $3 / $6 }' | median)
        ratio=$(awk -v r="$ratio" 'BEGIN { printf (r != "" ? "%.2f" : "-"), r }')
        cratio=$(awk -v r="$cratio" 'BEGIN { printf (r != "" ? "%.2f" : "-"), r }')
        printf '%-22s %8.2fs %8.2fs %7s %8.2fs %8.2fs %7s %8s %7s %5s %6s %6dMiB %9s %s\n' "$name" "$tq" \
            "$tk" "$ratio" "$cq" "$ck" "$cratio" "$tf" "$fratio" "$best" "$pratio" $((rss / 1024)) \
            "$verdict" "$sizes"
        rm -f out.qcow2 out.raw out.floor out.vhdx out.vmdk out.vhd out.vdi
    done
}

for load in ${BENCH_LOAD:-idle busy}; do
    case $load in
    idle) ;;
    busy) sh -c 'while :; do :; done' & hog_pid=$! ;;
    *) echo "bench: unknown BENCH_LOAD '$load'" >&2; exit 2 ;;
    esac
    echo
    echo "# $load machine$([ "$load" = busy ] && echo ": one core kept busy by a CPU hog"); load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
    table
    stop_hog
done
echo

# convert on a file system with reflinks (its own script: it needs root
# and an XFS loop image)
if [ -z "${BENCH_CASES:-}" ] || [[ " $BENCH_CASES " == *" reflink "* ]]; then
    echo
    KIMG=$KIMG PAIRS=${BENCH_RUNS:-3} "$here/reflink.sh" "$dir"
fi

# fleet clones: one batch against separate kimg clone runs and qemu-img
# copies (its own script: its outputs live in $dir/clone/)
if [ -z "${BENCH_CASES:-}" ] || [[ " $BENCH_CASES " == *" clone "* ]]; then
    echo
    KIMG=$KIMG PAIRS=${BENCH_RUNS:-3} "$here/clone.sh" "$dir"
fi

# kimg checksum against qemu-nbd + nbdcopy + sha256sum (its own script:
# it builds its inputs once in $dir/checksum/)
if [ -z "${BENCH_CASES:-}" ] || [[ " $BENCH_CASES " == *" checksum "* ]]; then
    echo
    KIMG=$KIMG PAIRS=${BENCH_RUNS:-3} "$here/checksum.sh" "$dir"
fi

# an OVA read in place against qemu-img on the extracted disk (its own
# script: it builds the archives once in $dir/ova/)
if [ -z "${BENCH_CASES:-}" ] || [[ " $BENCH_CASES " == *" ova "* ]]; then
    echo
    KIMG=$KIMG PAIRS=${BENCH_RUNS:-3} "$here/ova.sh" "$dir"
fi

# serving the qcow2 over NBD: nbdkit with kimg's plugin against qemu-nbd,
# nbdcopy as the client (its own script; needs the plugin built)
if [ -z "${BENCH_CASES:-}" ] || [[ " $BENCH_CASES " == *" nbd-serve "* ]]; then
    echo
    PAIRS=${BENCH_RUNS:-3} "$here/nbd-serve.sh" "$dir"
fi

# encrypted qcow2 (LUKS) against qemu-img, same PBKDF2 time on both
# sides (its own script: it makes its encrypted input once in $dir/luks/)
if [ -z "${BENCH_CASES:-}" ] || [[ " $BENCH_CASES " == *" luks "* ]]; then
    echo
    KIMG=$KIMG PAIRS=${BENCH_RUNS:-3} "$here/luks.sh" "$dir"
fi

# NBD exports against qemu-img and nbdcopy, one nbdkit server on a unix
# socket (its own script: its scratch export lives in $dir/nbd/)
if [ -z "${BENCH_CASES:-}" ] || [[ " $BENCH_CASES " == *" nbd "* ]]; then
    echo
    KIMG=$KIMG PAIRS=${BENCH_RUNS:-3} "$here/nbd.sh" "$dir"
fi
