# msg-cases.sh — failing command lines for comparing kimg's messages with
# qemu-img's (sourced by 091-messages.t and survey-messages.sh; sources
# lib.sh).  msg_template DIR makes the files the cases name; msg_run_case
# ARGS runs ARGS through both tools on fresh twin copies of DIR and sets
# MSG_QRC/MSG_QERR/MSG_QOUT (qemu-img's, "qemu-img:" turned into "kimg:";
# MSG_QERR1 its first line, what kimg prints where qemu-img prints more)
# and MSG_KRC/MSG_KERR/MSG_KOUT (kimg's).  ARGS may start with
# "lock:FILE " (a qemu-io holds FILE's write lock while the tool runs) or
# "nobody: " (the tool runs as user nobody, so file modes apply to root).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

msg_template() {
    local d=$1
    mkdir -p "$d" && (
        cd "$d" || exit 1
        q() { qemu-img create -q "$@"; }
        q -f qcow2 a.qcow2 1M
        q -f qcow2 b.qcow2 2M
        q -f raw r.raw 1M
        q -f qcow2 -b a.qcow2 -F qcow2 ov.qcow2
        q -f qcow2 -u -b nobase.qcow2 -F qcow2 ov-nobase.qcow2 1M
        q -f qcow2 -u -b nobase.raw -F raw ov-nobase-raw.qcow2 1M
        q -f qcow2 -u -b nobase.qcow2 -F qcow2 ov-nobase-nofmt.qcow2 1M
        poke ov-nobase-nofmt.qcow2 "$(grep -obUaP '\xe2\x79\x2a\xca' ov-nobase-nofmt.qcow2 | cut -d: -f1)" 00000000
        q -f qcow2 -u -b ov-loop.qcow2 -F qcow2 ov-loop2.qcow2 1M; mv ov-loop2.qcow2 ov-loop.qcow2
        q -f qcow2 -o compat=0.10 v2.qcow2 1M
        q -f qcow2 -o data_file=nodata.raw dfile.qcow2 1M; rm -f nodata.raw
        qemu-img snapshot -c snap1 a.qcow2
        q -f qcow2 -o compat=0.10 v2s.qcow2 1M; qemu-img snapshot -c s v2s.qcow2
        mkdir dir
        : > empty.raw
        printf 'QFI\xfb\0\0\0\3' > small.qcow2
        cp a.qcow2 magic.qcow2;     poke magic.qcow2 0 51464900
        cp a.qcow2 ver4.qcow2;      put_be 4 ver4.qcow2 4 4
        cp a.qcow2 ver1.qcow2;      put_be 4 ver1.qcow2 4 1
        cp a.qcow2 cb8.qcow2;       put_be 4 cb8.qcow2 20 8
        cp a.qcow2 cb22.qcow2;      put_be 4 cb22.qcow2 20 22
        cp a.qcow2 incompat.qcow2;  put_be 8 incompat.qcow2 72 32
        cp a.qcow2 incompat63.qcow2; put_be 8 incompat63.qcow2 72 9223372036854775808
        cp a.qcow2 corrupt.qcow2;   put_be 8 corrupt.qcow2 72 2
        cp a.qcow2 trunc.qcow2;     truncate -s 71 trunc.qcow2
        cp a.qcow2 l1big.qcow2;     put_be 4 l1big.qcow2 36 33554432
        cp a.qcow2 l1unal.qcow2;    put_be 8 l1unal.qcow2 40 196609
        cp a.qcow2 rtunal.qcow2;    put_be 8 rtunal.qcow2 48 65537
        cp a.qcow2 rorder.qcow2;    put_be 4 rorder.qcow2 96 7
        cp a.qcow2 hlen.qcow2;      put_be 4 hlen.qcow2 100 50
        cp a.qcow2 size62.qcow2;    put_be 8 size62.qcow2 24 4611686018427387904
        cp a.qcow2 nsnap.qcow2;     put_be 4 nsnap.qcow2 60 65536
        cp a.qcow2 boff.qcow2;      put_be 8 boff.qcow2 8 1099511627776; put_be 4 boff.qcow2 16 10
        cp a.qcow2 crypt99.qcow2;   put_be 4 crypt99.qcow2 32 99
        cp a.qcow2 secret.qcow2;    chmod 600 secret.qcow2
        cp a.qcow2 ro.qcow2;        chmod 644 ro.qcow2
        mkdir rodir; chmod 555 rodir
        chmod 755 .
    )
}

# hold_lock_wait FILE: wait (up to 20 s) until FILE's write lock is held.
hold_lock_wait() {
    local i
    for i in $(seq 1000); do locked_byte "$1" 101 && return 0; nap 0.02; done
    return 1
}

msg_run_case() {
    local args=$1 lock= as=() tool
    case $args in
        lock:*) lock=${args%% *}; lock=${lock#lock:}; args=${args#* } ;;
        nobody:*) as=(setpriv --reuid=nobody --regid=nogroup --clear-groups); args=${args#* } ;;
    esac
    # fresh twins after a case that may have written (the others only read)
    if [ "${MSG_DIRTY:-1}" = 1 ]; then
        for tool in q k; do
            rm -rf "$T/$tool"; cp -a "$T/tpl" "$T/$tool"
        done
        chmod 755 "$T"
    fi
    case ${args%% *} in
        info|check|map|compare|measure|'') MSG_DIRTY=0 ;;
        *) MSG_DIRTY=1 ;;
    esac
    local holders=
    if [ -n "$lock" ]; then
        # both twins' holders start at once (qemu-io is slow to start)
        ( exec qemu-io -c "sleep 600000" "$T/q/$lock" > /dev/null 2>&1 ) &
        holders="$!"
        hold_lock "$T/k/$lock" > /dev/null; holders="$holders $holder"
        hold_lock_wait "$T/q/$lock"
    fi
    for tool in q k; do
        (
            cd "$T/$tool" || exit 1
            eval "set -- $args"
            rc=0
            if [ $tool = q ]; then
                timeout -k 5 60 "${as[@]}" qemu-img "$@" > "$T/$tool.out" 2> "$T/$tool.err" < /dev/null || rc=$?
                sed -i 's/^qemu-img:/kimg:/' "$T/$tool.err"
            else
                timeout -k 5 60 "${as[@]}" "$KIMG" "$@" > "$T/$tool.out" 2> "$T/$tool.err" < /dev/null || rc=$?
            fi
            echo "$rc" > "$T/$tool.rc"
            exit 0
        )
    done
    local p
    for p in $holders; do kill "$p" 2> /dev/null; wait "$p" 2> /dev/null; done
    MSG_QRC=$(< "$T/q.rc"); MSG_QERR=$(< "$T/q.err"); MSG_QOUT=$(< "$T/q.out")
    MSG_QERR1=$(head -1 "$T/q.err")
    MSG_KRC=$(< "$T/k.rc"); MSG_KERR=$(< "$T/k.err"); MSG_KOUT=$(< "$T/k.out")
}

# name|arguments (after the tool's name; evaluated by the shell)
MSG_CASES=(
    # --- opening: the file itself --------------------------------------------
    "info-missing|info nofile"
    "info-dir|info dir"
    "info-empty-name|info ''"
    "info-perm|nobody: info secret.qcow2"
    "info-f-qcow2-raw|info -f qcow2 r.raw"
    "info-f-unknown|info -f foo a.qcow2"
    "info-small|info small.qcow2"
    "info-small-f|info -f qcow2 small.qcow2"
    "info-empty-f|info -f qcow2 empty.raw"
    "info-magic-f|info -f qcow2 magic.qcow2"
    "info-ver4|info ver4.qcow2"
    "info-ver1|info ver1.qcow2"
    "info-cb8|info cb8.qcow2"
    "info-cb22|info cb22.qcow2"
    "info-incompat|info incompat.qcow2"
    "info-incompat63|info incompat63.qcow2"
    "info-trunc|info trunc.qcow2"
    "info-l1big|info l1big.qcow2"
    "info-l1unal|info l1unal.qcow2"
    "info-rtunal|info rtunal.qcow2"
    "info-rorder|info rorder.qcow2"
    "info-hlen|info hlen.qcow2"
    "info-size62|info size62.qcow2"
    "info-boff|info boff.qcow2"
    "info-crypt99|info crypt99.qcow2"
    "info-json-missing|info --output=json nofile"
    "info-output-bad|info --output=xml a.qcow2"
    # --- backing and data files ------------------------------------------------
    "info-nobase|info ov-nobase.qcow2"
    "info-nobase-chain|info --backing-chain ov-nobase.qcow2"
    "info-nobase-raw|info --backing-chain ov-nobase-raw.qcow2"
    "info-nobase-nofmt|info --backing-chain ov-nobase-nofmt.qcow2"
    "info-loop|info --backing-chain ov-loop.qcow2"
    "map-nobase|map ov-nobase.qcow2"
    "check-nobase|check ov-nobase.qcow2"
    "compare-nobase|compare ov-nobase.qcow2 a.qcow2"
    "convert-nobase|convert -O raw ov-nobase.qcow2 out.raw"
    "commit-nobase|commit ov-nobase.qcow2"
    "rebase-nobase|rebase -b a.qcow2 -F qcow2 ov-nobase.qcow2"
    "resize-nobase|resize ov-nobase.qcow2 2M"
    "map-dfile|map dfile.qcow2"
    "info-dfile|info dfile.qcow2"
    # --- the corrupt flag --------------------------------------------------------
    "info-corrupt|info corrupt.qcow2"
    "check-corrupt|check corrupt.qcow2"
    "resize-corrupt|resize corrupt.qcow2 2M"
    "amend-corrupt|amend -o lazy_refcounts=on corrupt.qcow2"
    "snapshot-c-corrupt|snapshot -c s corrupt.qcow2"
    "commit-corrupt|commit corrupt.qcow2"
    "rebase-corrupt|rebase -u -b a.qcow2 -F qcow2 corrupt.qcow2"
    "convert-n-corrupt|convert -n -O qcow2 a.qcow2 corrupt.qcow2"
    # --- locks ---------------------------------------------------------------------
    "info-locked|lock:a.qcow2 info a.qcow2"
    "convert-locked|lock:a.qcow2 convert -O raw a.qcow2 out.raw"
    "convert-dst-locked|lock:b.qcow2 convert -n -O qcow2 a.qcow2 b.qcow2"
    "snapshot-c-locked|lock:a.qcow2 snapshot -c s a.qcow2"
    "resize-locked|lock:a.qcow2 resize a.qcow2 2M"
    "commit-locked|lock:ov.qcow2 commit ov.qcow2"
    "commit-base-locked|lock:a.qcow2 commit ov.qcow2"
    "create-locked|lock:a.qcow2 create -f qcow2 a.qcow2 1M"
    # --- permissions -----------------------------------------------------------------
    "check-perm|nobody: check secret.qcow2"
    "resize-ro|nobody: resize ro.qcow2 2M"
    "amend-ro|nobody: amend -o lazy_refcounts=on ro.qcow2"
    "snapshot-c-ro|nobody: snapshot -c s ro.qcow2"
    "commit-ro|nobody: commit ro.qcow2"
    "create-rodir|nobody: create -f qcow2 rodir/x.qcow2 1M"
    "create-raw-rodir|nobody: create -f raw rodir/x.raw 1M"
    "convert-rodir|nobody: convert -O qcow2 a.qcow2 rodir/x.qcow2"
    # --- every command on a missing file, a directory, a bad -f -------------------------
    "check-missing|check nofile"
    "map-missing|map nofile"
    "compare-missing1|compare nofile a.qcow2"
    "compare-missing2|compare a.qcow2 nofile"
    "convert-missing|convert -O raw nofile out.raw"
    "snapshot-l-missing|snapshot -l nofile"
    "snapshot-c-missing|snapshot -c s nofile"
    "resize-missing|resize nofile 1G"
    "amend-missing|amend -o lazy_refcounts=on nofile"
    "commit-missing|commit nofile"
    "rebase-missing|rebase -u -b a.qcow2 nofile"
    "measure-missing|measure -O qcow2 nofile"
    "check-dir|check dir"
    "map-dir|map dir"
    "resize-dir|resize dir 1G"
    "convert-dir|convert -O raw dir out.raw"
    "check-f|check -f qcow2 r.raw"
    "map-f|map -f qcow2 r.raw"
    "compare-f|compare -f qcow2 r.raw a.qcow2"
    "convert-f|convert -f qcow2 -O raw r.raw out.raw"
    "resize-f|resize -f qcow2 r.raw 2M"
    "amend-f|amend -f qcow2 -o lazy_refcounts=on r.raw"
    "commit-f|commit -f qcow2 r.raw"
    "rebase-f|rebase -u -f qcow2 -b a.qcow2 r.raw"
    "measure-f|measure -f qcow2 -O qcow2 r.raw"
    "check-ver4|check ver4.qcow2"
    "map-cb8|map cb8.qcow2"
    "compare-incompat|compare a.qcow2 incompat.qcow2"
    "convert-ver4|convert -O raw ver4.qcow2 out.raw"
    "snapshot-ver4|snapshot -l ver4.qcow2"
    "resize-incompat|resize incompat.qcow2 2M"
    "amend-ver4|amend -o lazy_refcounts=on ver4.qcow2"
    "commit-ver4|commit ver4.qcow2"
    "measure-ver4|measure -O qcow2 ver4.qcow2"
    # --- command lines -------------------------------------------------------------------
    "no-command|"
    "bad-command|frobnicate"
    "info-no-file|info"
    "info-two-files|info a.qcow2 b.qcow2"
    "info-bad-opt|info -Z a.qcow2"
    "info-bad-long|info --bogus a.qcow2"
    "map-bad-opt|map -z a.qcow2"
    "check-no-file|check"
    "check-r-bad|check -r foo a.qcow2"
    "check-r-U|check -r all -U a.qcow2"
    "check-r-missing-arg|check a.qcow2 -r"
    "compare-one|compare a.qcow2"
    "convert-one|convert a.qcow2"
    "convert-O-bad|convert -O foo a.qcow2 out"
    "convert-c-raw|convert -c -O raw a.qcow2 out"
    "convert-S-bad|convert -S foo -O raw a.qcow2 out"
    "convert-S-odd|convert -S 513 -O raw a.qcow2 out"
    "convert-o-compat|convert -O qcow2 -o compat=2 a.qcow2 out"
    "convert-o-size-bad|convert -O qcow2 -o cluster_size=foo a.qcow2 out"
    "convert-o-list-bad|convert -O qcow2 -o , a.qcow2 out"
    "measure-o-list-bad|measure -O qcow2 -o , --size 1M"
    "convert-m-bad|convert -m 0 -O raw a.qcow2 out"
    "convert-tiz|convert --target-is-zero -O raw a.qcow2 out"
    "convert-t-bad|convert -t foo -O raw a.qcow2 out"
    "convert-T-bad|convert -T foo -O raw a.qcow2 out"
    "convert-o-bad|convert -O qcow2 -o foo=1 a.qcow2 out"
    "convert-o-cluster|convert -O qcow2 -o cluster_size=3 a.qcow2 out"
    "convert-l-bad|convert -l foo=bar -O raw a.qcow2 out"
    "convert-snap-missing|convert -l snapshot.name=nosnap -O raw a.qcow2 out"
    "snapshot-no-file|snapshot -l"
    "snapshot-mix|snapshot -l -c x a.qcow2"
    "snapshot-a-missing|snapshot -a nosnap a.qcow2"
    "snapshot-d-missing|snapshot -d nosnap a.qcow2"
    "snapshot-c-exists|snapshot -c snap1 a.qcow2"
    "snapshot-U-c|snapshot -U -c x a.qcow2"
    "snapshot-raw|snapshot -c x r.raw"
    "snapshot-l-raw|snapshot -l r.raw"
    "resize-no-args|resize"
    "resize-one|resize a.qcow2"
    "resize-bad-size|resize a.qcow2 foo"
    "resize-neg|resize a.qcow2 -- -1G"
    "resize-shrink-raw|resize -f raw r.raw 512K"
    "resize-shrink-qcow2|resize a.qcow2 512K"
    "resize-prealloc-bad|resize --preallocation=foo a.qcow2 2M"
    "resize-zero|resize a.qcow2 0"
    "resize-v2-snap|resize --shrink v2s.qcow2 512K"
    "resize-huge|resize a.qcow2 9E"
    "amend-no-o|amend a.qcow2"
    "amend-no-file|amend -o lazy_refcounts=on"
    "amend-bad-opt|amend -o foo=1 a.qcow2"
    "amend-bad-compat|amend -o compat=2 a.qcow2"
    "amend-raw|amend -o size=1M r.raw"
    "amend-cluster|amend -o cluster_size=4k a.qcow2"
    "amend-bad-list|amend -o , a.qcow2"
    "amend-help-f|amend -f foo -o help a.qcow2"
    "amend-v2-lazy|amend -o lazy_refcounts=on v2.qcow2"
    "amend-size-shrink|amend -o size=512K a.qcow2"
    "commit-no-file|commit"
    "commit-no-backing|commit a.qcow2"
    "commit-s-bad|commit -s foo ov.qcow2"
    "commit-b-bad|commit -b nofile ov.qcow2"
    "commit-t-bad|commit -t foo ov.qcow2"
    "rebase-no-b|rebase ov.qcow2"
    "rebase-no-file|rebase -b a.qcow2"
    "rebase-F-bad|rebase -u -F foo -b a.qcow2 ov.qcow2"
    "rebase-b-missing|rebase -b nofile -F qcow2 ov.qcow2"
    "rebase-b-missing-nofmt|rebase -b nofile ov.qcow2"
    "rebase-t-bad|rebase -t foo -b a.qcow2 ov.qcow2"
    "measure-none|measure"
    "measure-both|measure --size 1G a.qcow2"
    "measure-size-bad|measure --size foo -O qcow2"
    "measure-O-bad|measure --size 1G -O foo"
    "measure-o-bad|measure --size 1G -O qcow2 -o foo=1"
    "measure-two|measure a.qcow2 b.qcow2"
    "measure-f-only|measure -f qcow2 --size 1G"
    # --- create ---------------------------------------------------------------------------------
    "create-no-file|create"
    "create-no-size|create -f qcow2 x.qcow2"
    "create-raw-no-size|create -f raw x.raw"
    "create-f-bad|create -f foo x 1M"
    "create-size-bad|create -f qcow2 x.qcow2 foo"
    "create-size-neg|create -f qcow2 x.qcow2 -- -1"
    "create-size-huge|create -f qcow2 x.qcow2 9E"
    "create-size-suffix|create -f qcow2 x.qcow2 1Z"
    "create-size-frac|create -f raw x.raw 1.5"
    "create-size-big-qcow2|create -f qcow2 x.qcow2 8E"
    "create-extra-arg|create -f qcow2 x.qcow2 1M extra"
    "create-cluster3|create -f qcow2 x.qcow2 1M -o cluster_size=3"
    "create-cluster-big|create -f qcow2 x.qcow2 1M -o cluster_size=4M"
    "create-cluster-bad|create -f qcow2 x.qcow2 1M -o cluster_size=foo"
    "create-compat-bad|create -f qcow2 x.qcow2 1M -o compat=2"
    "create-unknown-opt|create -f qcow2 x.qcow2 1M -o foo=1"
    "create-raw-unknown-opt|create -f raw x.raw 1M -o cluster_size=4k"
    "create-refbits-bad|create -f qcow2 x.qcow2 1M -o refcount_bits=3"
    "create-refbits-v2|create -f qcow2 x.qcow2 1M -o refcount_bits=8,compat=0.10"
    "create-lazy-v2|create -f qcow2 x.qcow2 1M -o lazy_refcounts=on,compat=0.10"
    "create-lazy-bad|create -f qcow2 x.qcow2 1M -o lazy_refcounts=maybe"
    "create-prealloc-bad|create -f qcow2 x.qcow2 1M -o preallocation=foo"
    "create-raw-prealloc-bad|create -f raw x.raw 1M -o preallocation=foo"
    "create-bfmt-nob|create -f qcow2 x.qcow2 1M -o backing_fmt=qcow2"
    "create-b-missing|create -f qcow2 -b nofile -F qcow2 x.qcow2"
    "create-b-missing-size|create -f qcow2 -b nofile -F qcow2 x.qcow2 1M"
    "create-b-nofmt|create -f qcow2 -b a.qcow2 x.qcow2"
    "create-b-badfmt|create -f qcow2 -b a.qcow2 -F foo x.qcow2"
    "create-b-raw|create -f raw -b a.qcow2 -F qcow2 x.raw"
    "create-b-dir|create -f qcow2 -b dir -F raw x.qcow2"
    "create-b-self|create -f qcow2 -b x.qcow2 -F qcow2 x.qcow2 1M"
    "create-size-opt|create -f qcow2 -o size=foo x.qcow2"
    "create-o-list-bad|create -f qcow2 -o , x.qcow2 1M"
    "create-extl2-v2|create -f qcow2 -o extended_l2=on,compat=0.10 x.qcow2 1M"
    "create-extl2-small|create -f qcow2 -o extended_l2=on,cluster_size=4k x.qcow2 1M"
    "create-dfile-v2|create -f qcow2 -o data_file=d.raw,compat=0.10 x.qcow2 1M"
    "create-dfile-raw-nodfile|create -f qcow2 -o data_file_raw=on x.qcow2 1M"
    "create-ctype-bad|create -f qcow2 -o compression_type=foo x.qcow2 1M"
    "create-ctype-v2|create -f qcow2 -o compression_type=zstd,compat=0.10 x.qcow2 1M"
    "create-encrypt|create -f qcow2 -o encryption=on x.qcow2 1M"
    "create-in-dir|create -f qcow2 dir 1M"
    "create-missing-dir|create -f qcow2 nodir/x.qcow2 1M"
    "create-raw-missing-dir|create -f raw nodir/x.raw 1M"
    "create-raw-round|create -f raw -o preallocation=foo x.raw 1234"
    "create-qcow2-round|create -f qcow2 -o cluster_size=3 x.qcow2 1234"
    "create-huge-l1|create -f qcow2 -o cluster_size=512 x.qcow2 1P"
)
