#!/bin/bash
# resize on raw images, against qemu-img on twins: the file becomes exactly
# the new size (a 1000-byte file is a 1024-byte disk, so "+1" makes it 1025
# bytes, as qemu-img), same bytes, same exit codes and stdout; shrinking
# needs --shrink; preallocation off/falloc/full as qemu-img (the new part
# allocated, metadata refused); a raw file whose format was probed is
# resized with qemu-img's warning on stderr.
# make check: a third of the image x size/option matrix (lib.sh sampled;
# 16 cases an image, so the third rotates); check-slow the rest.
. "$(dirname "$0")/lib.sh"
fixtures

# raw_case IMG SIZE [OPTS...]
raw_case() {
    local img=$1 size=$2; shift 2
    local name="resize $* $img $size"
    rm -rf q k; mkdir q k; cp "$FX/$img" q/; cp "$FX/$img" k/
    QRC=0; (cd q && qemu-img resize "$@" "$img" -- "$size") > qout 2> qerr || QRC=$?
    RC=0; (cd k && "$KIMG" resize "$@" "$img" -- "$size") > out 2> err || RC=$?
    is "$RC" "$QRC" "$name: exit code as qemu-img's" || { diag "kimg: $(< err) qemu-img: $(< qerr)"; return; }
    is_file out qout "$name: stdout as qemu-img's"
    is "$(stat -c %s k/"$img")" "$(stat -c %s q/"$img")" "$name: file size as qemu-img's"
    ok "$name: bytes as qemu-img's" cmp -s k/"$img" q/"$img"
    if [ "$QRC" -ne 0 ]; then
        err_line "$name"
    else
        # a fully preallocated file has every block allocated
        case " $* " in *" --preallocation=f"*)
            local need=$(( ($(stat -c %s k/"$img") - $(stat -c %s "$FX/$img")) / 512 ))
            ok "$name: new part allocated" test $(( $(stat -c %b k/"$img") - $(stat -c %b "$FX/$img") )) -ge $(( need - 8 )) ;;
        esac
    fi
}

for img in holes.raw odd.raw tiny.raw odd100.raw prealloc-full.raw; do
    for c in "+1" "+1M" "8M" "1024" "+0" \
             "-512" "-512 --shrink" "512" "512 --shrink" "1023" "1023 --shrink" \
             "+1M --preallocation=falloc" "+1M --preallocation=full" "+1M --preallocation=metadata" \
             "+1M --preallocation=off" "-1 --shrink --preallocation=full"; do
        sampled || continue     # check: a third of the cases; check-slow: the rest
        set -- $c
        raw_case "$img" "$1" -f raw "${@:2}"
    done
done

# probed raw: qemu-img's warning (stderr), then the resize
cp "$FX/holes.raw" p.raw
kimg resize p.raw +1M
is "$RC" 0 "probed raw: resized"
is "$(< "$T/out")" "Image resized." "probed raw: stdout"
like "$(head -1 "$T/err")" "^WARNING: Image format was not specified for 'p.raw' and probing guessed raw" \
    "probed raw: qemu-img's warning"
is "$(stat -c %s p.raw)" $((5 * 1024 * 1024)) "probed raw: new size"
done_testing
