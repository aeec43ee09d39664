# nbd.sh — NBD servers for the NBD client tests (800-814), sourced after
# lib.sh: each server listens on a private unix socket in $T and is killed
# by its pid when the test ends (lib.sh's _tap_bg_pids).  Skips the test
# when qemu-nbd or nbdkit is missing (CI has both).
#   qnbd SOCK FMT FILE [ARGS...]    qemu-nbd -t serving FILE (FMT: raw, qcow2)
#   kitnbd SOCK ARGS...             nbdkit serving ARGS (plugin, filters)
#   nbd_stop SOCK                   kill that server now
#   nbd_crash SOCK                  the same with SIGKILL: its sockets close at
#                                   once (a server stopped with TERM may wait
#                                   for requests it will never answer)
#   nuri SOCK [EXPORT]              nbd+unix:///EXPORT?socket=$T/SOCK
#   (tcpnbd, below: the same on TCP, for names that images may hold)
require qemu-nbd nbdkit qemu-img
declare -A _nbd_pid

_nbd_wait() {
    local i
    for i in $(seq 500); do [ -S "$T/$1" ] && return 0; nap 0.01; done
    diag "server on $1 did not start"; return 1
}
qnbd() {
    local sock=$1 fmt=$2 file=$3; shift 3
    rm -f "$T/$sock"
    qemu-nbd -t -k "$T/$sock" -f "$fmt" "$@" "$file" > /dev/null 2>&1 &
    _nbd_pid[$sock]=$!; _tap_bg_pids="${_tap_bg_pids:-} $!"
    _nbd_wait "$sock"
}
kitnbd() {
    local sock=$1; shift
    rm -f "$T/$sock"
    nbdkit -f -U "$T/$sock" --exit-with-parent "$@" > /dev/null 2>&1 &
    _nbd_pid[$sock]=$!; _tap_bg_pids="${_tap_bg_pids:-} $!"
    _nbd_wait "$sock"
}
nbd_stop() { kill "${_nbd_pid[$1]}" 2>/dev/null; wait "${_nbd_pid[$1]}" 2>/dev/null; rm -f "$T/$1"; }
nbd_crash() { kill -KILL "${_nbd_pid[$1]}" 2>/dev/null; wait "${_nbd_pid[$1]}" 2>/dev/null; rm -f "$T/$1"; }
nuri() { echo "nbd+unix:///${2:-}?socket=$T/$1"; }
#   tcpnbd NAME ARGS...             nbdkit on 127.0.0.1 at a free port: $NBD_PORT
tcpnbd() {
    local name=$1 try i; shift
    for try in 1 2 3 4 5; do
        NBD_PORT=$((20000 + RANDOM % 40000))
        nbdkit -f -i 127.0.0.1 -p "$NBD_PORT" --exit-with-parent "$@" > /dev/null 2>&1 &
        _nbd_pid[$name]=$!; _tap_bg_pids="${_tap_bg_pids:-} $!"
        for i in $(seq 100); do
            nbdinfo --size "nbd://127.0.0.1:$NBD_PORT/" > /dev/null 2>&1 && return 0
            kill -0 "${_nbd_pid[$name]}" 2> /dev/null || break
            nap 0.05
        done
        kill "${_nbd_pid[$name]}" 2> /dev/null
    done
    diag "no TCP server started"; return 1
}
