# luks.sh — helpers for the encrypted-image tests (183-185); source after
# lib.sh.  Two keys as secrets sec0/sec1 ($sec), qcow2 and luks open
# strings, the plaintext marker and the checks that it never reaches a file
# and that no passphrase reaches an output.
#   kopen FILE [ID]    driver=qcow2,encrypt.key-secret=ID,file.filename=FILE
#   lopen FILE [ID]    driver=luks,key-secret=ID,file.filename=FILE
#   qread OPTS PAT OFF LEN   qemu-io reads pattern PAT there
#   mark OPTS OFF LEN  qemu-io writes the marker text there
#   twin SRC DST OLD NEW  copy an image, its backing name OLD made NEW
#   noplain FILE NAME | nosecret NAME   (tests)
printf 'kimg-luks-passphrase' > key
printf 'another-passphrase' > key2
sec=(--object secret,id=sec0,file=key --object secret,id=sec1,file=key2)
E0=encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10
E1=encrypt.format=luks,encrypt.key-secret=sec1,encrypt.iter-time=10
MARK=KIMG-PLAINTEXT-MARKER-0123456789

# qemu-img: lib.sh sends every LUKS command through the shim
# (tests/cli/shim/qemu-img: fastclock.so, and a retry of the PBKDF2
# benchmark's flake), a sh, mktemp, two cats and an rm a call.  Only
# create, amend, convert and measure run that benchmark (they make key
# slots or measure them); the others unlock with the iteration count the
# header holds, so they run the real qemu-img at once.
qemu-img() {
    case $1 in
    create | amend | convert | measure) command qemu-img "$@" ;;
    *) "$KIMG_REAL_QEMU_IMG" "$@" ;;
    esac
}
# twin SRC DST OLD NEW: DST a copy of SRC whose backing file name OLD
# (the same length) is NEW: a second image as qemu-img creates it, without
# a second create and its benchmark (the same salts and keys as SRC)
twin() {
    [ ${#3} = ${#4} ] || { echo "twin: $3 and $4 differ in length" >&2; return 1; }
    sed "s|${3//./\\.}|$4|" "$1" > "$2"
}
kopen() { echo "driver=qcow2,encrypt.key-secret=${2:-sec0},file.filename=$1"; }
lopen() { echo "driver=luks,key-secret=${2:-sec0},file.filename=$1"; }
qread() {
    local o; o=$(qemu-io "${sec[@]}" --image-opts "$1" -c "read -P $2 $3 $4" 2>&1)
    [[ $o == *"read "* && $o != *"verification failed"* ]]
}
# (the marker text of each length made once: m.LEN)
mark() {
    [ -f "m.$3" ] || yes "$MARK" | head -c "$3" > "m.$3"
    qemu-io "${sec[@]}" --image-opts "$1" -c "write -s m.$3 $2 $3" > /dev/null
}
noplain() {
    if grep -q "$MARK" "$1"; then fail "$2: no plaintext in $1" "$MARK found"; else pass "$2: no plaintext in $1"; fi
}
# (the four outputs read by bash itself, no grep a call)
nosecret() {
    local f l found=
    for f in "$T/out" "$T/err" "$T/qout" "$T/qerr"; do
        [ -f "$f" ] || continue
        while IFS= read -r l || [ -n "$l" ]; do
            [[ $l == *kimg-luks-passphrase* || $l == *another-passphrase* ]] && { found=$f; break 2; }
        done < "$f"
    done
    if [ -n "$found" ]; then fail "$1: no passphrase in the output" "found in $found"
    else pass "$1: no passphrase in the output"; fi
}
