# luks.sh — helpers for the encrypted-image tests (183-185); source after
# lib.sh.  Two keys as secrets sec0/sec1 ($sec), qcow2 and luks open
# strings, the plaintext marker and the checks that it never reaches a file
# and that no passphrase reaches an output.
#   kopen FILE [ID]    driver=qcow2,encrypt.key-secret=ID,file.filename=FILE
#   lopen FILE [ID]    driver=luks,key-secret=ID,file.filename=FILE
#   qread OPTS PAT OFF LEN   qemu-io reads pattern PAT there
#   mark OPTS OFF LEN  qemu-io writes the marker text there
#   noplain FILE NAME | nosecret NAME   (tests)
printf 'kimg-luks-passphrase' > key
printf 'another-passphrase' > key2
sec=(--object secret,id=sec0,file=key --object secret,id=sec1,file=key2)
E0=encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10
E1=encrypt.format=luks,encrypt.key-secret=sec1,encrypt.iter-time=10
MARK=KIMG-PLAINTEXT-MARKER-0123456789

kopen() { echo "driver=qcow2,encrypt.key-secret=${2:-sec0},file.filename=$1"; }
lopen() { echo "driver=luks,key-secret=${2:-sec0},file.filename=$1"; }
qread() {
    local o; o=$(qemu-io "${sec[@]}" --image-opts "$1" -c "read -P $2 $3 $4" 2>&1)
    [[ $o == *"read "* && $o != *"verification failed"* ]]
}
mark() { yes "$MARK" | head -c "$3" > m.bin; qemu-io "${sec[@]}" --image-opts "$1" -c "write -s m.bin $2 $3" > /dev/null; }
noplain() {
    if grep -q "$MARK" "$1"; then fail "$2: no plaintext in $1" "$MARK found"; else pass "$2: no plaintext in $1"; fi
}
nosecret() {
    if grep -q -e kimg-luks-passphrase -e another-passphrase "$T/out" "$T/err" "$T/qout" "$T/qerr" 2> /dev/null; then
        fail "$1: no passphrase in the output"; else pass "$1: no passphrase in the output"; fi
}
