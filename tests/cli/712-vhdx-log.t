#!/bin/bash
# A dirty VHDX log (left by a hard Hyper-V stop or an unclean WSL shutdown)
# is replayed in memory: kimg reads the disk as it is after the replay and
# never writes to the source.  qemu-img 7.2 refuses such an image
# read-only and asks for `qemu-img check -r all`, which replays the log
# into the source: on a copy, that gives the bytes kimg read.  The
# generator's log (make-vhdx.py --dirty-log) holds the BAT sectors, a data
# sector written twice (the later entry wins), zeroed bytes and a block
# past the stored end of the file, then a torn and a stale entry.
# Damaged logs are refused in one line (qemu-img's repair replays some of
# them anyway, e.g. one whose descriptor writes over a header).
. "$(dirname "$0")/lib.sh"
MK="$PY $KIMG_SRC/tests/images/make-vhdx.py"
MiB=$((1024 * 1024))
D="--size $((6 * MiB)) --data 0:100000 --data 1100000:100000 --data 3000000:200000"

for l in 512 4096; do
    n="dirty log, $l-byte sectors"
    $MK dl.vhdx --dirty-log --logical $l $D --raw dl.raw
    sum=$(md5sum < dl.vhdx)
    kimg convert -O raw dl.vhdx out.raw
    is "$RC" 0 "$n: convert exit 0"
    ok "$n: the content the log says" cmp -s out.raw dl.raw
    kimg check -r all dl.vhdx
    err_line "$n: check -r all refuses to repair (kimg writes no VHDX)"
    is "$(md5sum < dl.vhdx)" "$sum" "$n: check -r left the file as it was"
    kimg checksum dl.vhdx; a=$(cut -d' ' -f1 "$T/out")
    kimg checksum -f raw dl.raw
    is "$a" "$(cut -d' ' -f1 "$T/out")" "$n: checksum as the replayed content's"
    kimg compare -F raw dl.vhdx dl.raw
    is "$RC" 0 "$n: compare with the replayed content"
    kimg convert -O qcow2 dl.vhdx out.qcow2
    ok "$n: convert -O qcow2 holds it" qemu_oracle_compare out.qcow2 dl.raw
    kimg info dl.vhdx
    like "$(< "$T/out")" "cleanly shut down: no" "$n: info says the image was not closed cleanly"
    kimg info --output=json dl.vhdx
    like "$(< "$T/out")" '"dirty-flag": true' "$n: info json: dirty-flag true"
    kimg check dl.vhdx
    is "$RC" 0 "$n: check exit 0 (the replayed image is consistent)"
    like "$(< "$T/err")" "replayed in memory" "$n: check says the log was replayed in memory"
    is "$(md5sum < dl.vhdx)" "$sum" "$n: the source is unchanged"
    if [ $l = 512 ]; then
        qimg info dl.vhdx
        isnt "$QRC" 0 "$n: qemu-img 7.2 refuses it read-only"
        like "$(< "$T/qerr")" "contains a log that needs to be replayed" "$n: qemu-img's reason"
        cp dl.vhdx rep.vhdx
        qemu-img check -q -r all rep.vhdx > /dev/null 2>&1
        qemu-img convert -f vhdx -O raw rep.vhdx rep.raw
        ok "$n: qemu-img after its repair reads the bytes kimg read without it" \
            cmp -s rep.raw out.raw
        oracle "$n: after qemu-img's repair, info json as qemu-img" info --output=json rep.vhdx
    fi
done

# an empty log (GUID zero) is not replayed even when it holds entries:
# the file reads as the state before the replay, as in qemu-img
$MK dl-copy.vhdx --dirty-log $D --damage log-guid-zero
oracle "log GUID zero: info json" info --output=json dl-copy.vhdx
oracle "log GUID zero: map json" map --output=json dl-copy.vhdx
qemu-img convert -f vhdx -O raw dl-copy.vhdx q.raw
kimg convert -O raw dl-copy.vhdx out.raw
ok "log GUID zero: the log is not replayed (qemu-img's bytes)" cmp -s out.raw q.raw

# ---- damaged logs: refused, nothing written ---------------------------------------
cases=(
    "every entry's checksum bad|log-crc|bad checksum"
    "descriptor sequence number|log-desc-seq|bad descriptor"
    "data sector signature|log-data-sig|bad data sector"
    "a descriptor writes over a header|log-writes-header|writes to the headers"
    "tail names a stale entry|log-tail-stale|invalid VHDX log"
    "tail outside the log|log-tail-outside|tail lies outside"
    "file shorter than the log says|log-truncated|truncated"
    "log version 1|log-version|log version"
)
for c in "${cases[@]}"; do
    IFS='|' read -r name dmg want <<< "$c"
    $MK h.vhdx --dirty-log $D --damage "$dmg"
    sum=$(md5sum < h.vhdx)
    for cmd in "info" "map --output=json" "compare" "checksum" "convert" "check"; do
        rm -f out.raw
        case $cmd in
        compare) kimg compare h.vhdx h.vhdx ;;
        convert) kimg convert -O raw h.vhdx out.raw ;;
        *) kimg $cmd h.vhdx ;;
        esac
        err_line "$name: $cmd"
    done
    ok "$name: no output file" test ! -e out.raw
    like "$(< "$T/err")" "$want" "$name: the reason"
    is "$(md5sum < h.vhdx)" "$sum" "$name: the source is unchanged"
done
# qemu-img's repair writes a damaged log's descriptor over a header (the
# 4 KiB at 64 KiB: its reserved bytes keep the log's 0x5a after qemu-img
# rewrites the header fields), which kimg refuses to replay
$MK h.vhdx --dirty-log $D --damage log-writes-header
qemu-img check -q -r all h.vhdx > /dev/null 2>&1
ok "log over a header: qemu-img's repair wrote the log's bytes into header 1" \
    $PY -c 'import sys; d=open("h.vhdx","rb").read(); sys.exit(d[65736:65740] != b"ZZZZ")'
done_testing
