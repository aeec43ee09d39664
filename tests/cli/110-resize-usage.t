#!/bin/bash
# resize: the command line as qemu-img 7.2's: the size taken off the end
# (so "-1M" is a size, not an option), [+|-] relative sizes, the refusals
# (shrinking without --shrink, preallocation when not growing, a size that
# is not positive or not a number, a qcow2 size off the 512-byte grid) with
# qemu-img's message (its first line: kimg errors are one line), exit 1,
# stdout "Image resized." (nothing with -q), and an image left untouched
# whenever the command fails.
. "$(dirname "$0")/lib.sh"

qemu-img create -q -f qcow2 base.qcow2 1M
qemu-io -f qcow2 -c "write -P 0x5a 0 1M" base.qcow2 > /dev/null

# case_ NAME ARGS...: on twins q/img.qcow2 and k/img.qcow2 (fresh copies of
# base.qcow2): exit code and stdout as qemu-img's; on failure kimg's one
# line carries qemu-img's first line and the image is unchanged; on success
# the twins have the same virtual size and content, kimg's is clean.
case_() {
    local name=$1; shift
    rm -rf q k; mkdir q k; cp base.qcow2 q/img.qcow2; cp base.qcow2 k/img.qcow2
    QRC=0; (cd q && qemu-img resize "$@") > qout 2> qerr || QRC=$?
    RC=0; (cd k && "$KIMG" resize "$@") > out 2> err || RC=$?
    is "$RC" "$QRC" "$name: exit code $QRC as qemu-img's" || diag "kimg: $(< err)"
    is_file out qout "$name: stdout as qemu-img's"
    if [ "$QRC" -ne 0 ]; then
        err_line "$name"
        is "$(sha k/img.qcow2)" "$(sha base.qcow2)" "$name: image unchanged"
        [ -n "${NOMSG:-}" ] && return
        local want; want=$(grep -v '^Try ' qerr | head -1 | sed 's/^qemu-img: //')
        like "$(< err)" "$(printf '%s' "$want" | sed 's/[][\\.*^$(){}+?|]/\\&/g')" \
            "$name: message as qemu-img's"
    else
        is "$(qemu-img info --output=json k/img.qcow2 | grep '"virtual-size"')" \
           "$(qemu-img info --output=json q/img.qcow2 | grep '"virtual-size"')" "$name: virtual size as qemu-img's"
        ok "$name: kimg's image clean" check_clean k/img.qcow2
        ok "$name: content as qemu-img's" qemu_oracle_compare k/img.qcow2 q/img.qcow2
    fi
}

case_ "shrink without --shrink"  img.qcow2 512K
case_ "relative shrink without --shrink" img.qcow2 -512K
case_ "same size"                img.qcow2 1M
case_ "+0"                       img.qcow2 +0
case_ "grow"                     img.qcow2 2M
case_ "relative grow"            img.qcow2 +1536
case_ "-q grow"                  -q img.qcow2 +64k
case_ "shrink"                   --shrink img.qcow2 -512K
case_ "shrink, options after"    img.qcow2 --shrink 768K
case_ "-- before a negative size" --shrink img.qcow2 -- -1k
case_ "size 0"                   --shrink img.qcow2 0
case_ "shrink to nothing"        --shrink img.qcow2 -1M
case_ "unaligned qcow2 size"     img.qcow2 2000000
case_ "not a number"             img.qcow2 1x
case_ "double sign"              img.qcow2 +-1M
case_ "8E wraps negative"        img.qcow2 8E
case_ "+8E wraps negative"       img.qcow2 +8E
case_ "L1 table too large"       img.qcow2 7E
case_ "bad preallocation"        --preallocation=foo img.qcow2 2M
case_ "preallocation, same size" --preallocation=full img.qcow2 1M
case_ "preallocation, shrink"    --preallocation=full --shrink img.qcow2 512K
case_ "preallocation metadata"   --preallocation=metadata img.qcow2 2M
case_ "-f qcow2"                 -f qcow2 img.qcow2 +1M
case_ "-f raw on a qcow2"        -f raw img.qcow2 +1M
# (the open error and getopt's wording are kimg's own)
NOMSG=1 case_ "missing file"             nosuch.qcow2 +1M
NOMSG=1 case_ "-U (not a resize option)" -U img.qcow2 2M
case_ "extra argument"           img.qcow2 1M extra

# not enough arguments: qemu-img's message, exit 1
kimg resize img.qcow2
is "$RC" 1 "no size: exit 1"; err_line "no size"
like "$(< "$T/err")" "Not enough arguments" "no size: qemu-img's message"
kimg resize
is "$RC" 1 "no arguments: exit 1"; err_line "no arguments"
kimg resize --object foo base.qcow2 1M
is "$RC" 1 "--object refused"; err_line "--object"
kimg resize --image-opts base.qcow2 1M
is "$RC" 1 "--image-opts refused"; err_line "--image-opts"
kimg resize -h
is "$RC" 0 "-h: exit 0"
like "$(< "$T/out")" "resize .*--shrink" "-h: synopsis"
done_testing
