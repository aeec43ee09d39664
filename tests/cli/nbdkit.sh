# nbdkit.sh — helpers for the nbdkit plugin tests (820-829), sourced after
# lib.sh.  Every server listens on a private socket in $T and is killed by
# its pid when the test ends.
#   $PLUGIN                  the plugin built in $KIMG_BUILD (missing: bail out)
#   nbd_start SOCK ARGS...   nbdkit -f serving the plugin with ARGS on SOCK
#                            (stderr in SOCK.log); $NBD_PID; 1 if it never
#                            listened
#   qnbd_start SOCK ARGS...  qemu-nbd -t -k SOCK ARGS... the same way ($QNBD_PID)
#   srv_stop PID             stop it (SIGTERM; SIGKILL after 20 s) and wait
#   uri SOCK                 nbd+unix:///?socket=SOCK
#   nbd_run ARGS... -- CMD   nbdkit -U - --run CMD with the plugin and ARGS
#                            ($uri in CMD), output in $T/out $T/err, $RC
#   map_json URI             qemu-img map --output=json of the export
#   $NBDKIT_ENV $NBDKIT_UNENV  how nbdkit runs (below), what --run CMDs start with
# A sanitizer build's plugin needs its runtime loaded first: nbdkit then
# runs with libasan preloaded (leak reports off: nbdkit's own are not ours).
require nbdkit qemu-nbd nbdcopy nbdinfo
PLUGIN=$KIMG_BUILD/plugins/nbdkit-kimg-plugin.so
[ -e "$PLUGIN" ] || { echo "Bail out! $PLUGIN was not built (nbdkit-plugin-dev missing?)"; exit 1; }
# NBDKIT_UNENV: what a --run command starts with, so that its clients
# (qemu-io, nbdcopy) do not run with the preloaded runtime.
NBDKIT_ENV=() NBDKIT_UNENV=
if nm -u "$PLUGIN" 2> /dev/null | grep -q __asan_init; then
    NBDKIT_ENV=(env "LD_PRELOAD=$(${KIMG_CC:-cc} -print-file-name=libasan.so)"
                "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1")
    NBDKIT_UNENV='unset LD_PRELOAD ASAN_OPTIONS; '
fi

uri() { echo "nbd+unix:///?socket=$1"; }

_wait_sock() {   # _wait_sock SOCK PID: the socket appears, or the server died
    local i
    for i in $(seq 1000); do
        [ -S "$1" ] && return 0
        kill -0 "$2" 2> /dev/null || return 1
        nap 0.01
    done
    return 1
}

nbd_start() {
    local s=$1; shift
    rm -f "$s"
    "${NBDKIT_ENV[@]}" nbdkit -f -U "$s" "$PLUGIN" "$@" 2> "$s.log" < /dev/null &
    NBD_PID=$!
    _tap_bg_pids="${_tap_bg_pids:-} $NBD_PID"
    _wait_sock "$s" "$NBD_PID"
}

qnbd_start() {
    local s=$1; shift
    rm -f "$s"
    qemu-nbd -t -k "$s" "$@" > /dev/null 2> "$s.log" < /dev/null &
    QNBD_PID=$!
    _tap_bg_pids="${_tap_bg_pids:-} $QNBD_PID"
    _wait_sock "$s" "$QNBD_PID"
}

# (a server that has not exited 20 s after SIGTERM is killed, and said:
# under SANITIZE=1 nbdkit's exit was seen to hang in libc's exit
# handlers, p11-kit's freeing its locale, after a failed read)
srv_stop() {
    local i
    kill "$1" 2> /dev/null
    for i in $(seq 2000); do kill -0 "$1" 2> /dev/null || break; nap 0.01; done
    if kill -0 "$1" 2> /dev/null; then
        diag "server $1 still running 20 s after SIGTERM: killed"
        kill -9 "$1" 2> /dev/null
    fi
    wait "$1" 2> /dev/null
    return 0
}

nbd_run() {
    local args=()
    while [ "$1" != -- ]; do args+=("$1"); shift; done
    shift
    RC=0
    timeout -k 5 120 "${NBDKIT_ENV[@]}" nbdkit -U - "$PLUGIN" "${args[@]}" --run "$NBDKIT_UNENV$*" \
        > "$T/out" 2> "$T/err" < /dev/null || RC=$?
    return 0
}

map_json() { qemu-img map --output=json -f raw "$1"; }
