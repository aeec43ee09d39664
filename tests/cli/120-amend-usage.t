#!/bin/bash
# amend: the command line as qemu-img 7.2's: -o help (with -f, or from the
# image's format) byte for byte, options amend does not take (creation-only
# ones named as such), option values of the wrong type, unknown compat
# levels, bad refcount widths, data-file and encryption refusals, -o given
# twice, missing -o or file, -t, raw images; exit code and stdout as
# qemu-img's (with -p: its progress lines, also after a failure), kimg's
# one-line error carrying qemu-img's first line, the image unchanged.
# make check: a third of the case_ lines (lib.sh sampled); check-slow the
# rest.
. "$(dirname "$0")/lib.sh"

qemu-img create -q -f qcow2 base.qcow2 1M
qemu-io -f qcow2 -c "write -P 0x5a 0 64k" base.qcow2 > /dev/null
qemu-img create -q -f raw base.raw 1M

# case_ NAME ARGS...: twins q/img.qcow2 and k/img.qcow2 (and img.raw)
case_() {
    sampled || return 0         # check: a third of the cases; check-slow: the rest
    local name=$1; shift
    rm -rf q k; mkdir q k
    cp base.qcow2 q/img.qcow2; cp base.qcow2 k/img.qcow2; cp base.raw q/img.raw; cp base.raw k/img.raw
    QRC=0; (cd q && qemu-img amend "$@") > qout 2> qerr || QRC=$?
    RC=0; (cd k && "$KIMG" amend "$@") > out 2> err || RC=$?
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
        ok "$name: kimg's image clean" check_clean k/img.qcow2
        (cd q && qemu-img info --output=json img.qcow2) > qi.json
        (cd k && qemu-img info --output=json img.qcow2) > ki.json
        json_norm_files actual-size qi.json ki.json
        is_file ki.json.norm qi.json.norm "$name: qemu-img info as for qemu-img's amend"
    fi
}

case_ "help from the image"          -o help img.qcow2
case_ "help with -f"                 -f qcow2 -o help
case_ "? with -f"                    -f qcow2 -o '?'
case_ "help among options"           -o compat=1.1,help img.qcow2
case_ "help, -p"                     -p -f qcow2 -o help
case_ "help without file or -f"      -o help
case_ "help for raw"                 -f raw -o help
case_ "help for an unknown format"   -f foo -o help
case_ "no -o"                        img.qcow2
case_ "empty -o"                     -o "" img.qcow2
case_ "two files"                    -o compat=1.1 img.qcow2 img.raw
case_ "bad cache mode"               -t foo -o compat=1.1 img.qcow2
case_ "raw image"                    -f raw -o compat=1.1 img.raw
case_ "qcow2 opened as raw"          -f raw -o compat=1.1 img.qcow2
case_ "cluster_size (creation only)" -o cluster_size=4k img.qcow2
case_ "compression_type"             -o compression_type=zstd img.qcow2
case_ "extended_l2"                  -o extended_l2=on img.qcow2
case_ "preallocation"                -o preallocation=full img.qcow2
case_ "encryption"                   -o encryption=on img.qcow2
case_ "encrypt.format"               -o encrypt.format=luks img.qcow2
case_ "unknown option"               -o foo=bar img.qcow2
case_ "unknown before creation-only" -o foo=1,cluster_size=4k img.qcow2
case_ "creation-only before unknown" -o cluster_size=4k,foo=1 img.qcow2
case_ "compat=2"                     -o compat=2 img.qcow2
case_ "compat empty"                 -o compat= img.qcow2
case_ "compat with a comma (,,)"     -o compat=1.1,, img.qcow2
case_ "refcount_bits=3"              -o refcount_bits=3 img.qcow2
case_ "refcount_bits=128"            -o refcount_bits=128 img.qcow2
case_ "refcount_bits=abc"            -o refcount_bits=abc img.qcow2
case_ "refcount_bits=16k"            -o refcount_bits=16k img.qcow2
case_ "refcount_bits=0x10"           -o refcount_bits=0x10 img.qcow2
case_ "lazy_refcounts=maybe"         -o lazy_refcounts=maybe img.qcow2
case_ "bare lazy_refcounts"          -o lazy_refcounts img.qcow2
case_ "size=1x"                      -o size=1x img.qcow2
case_ "size off the 512 grid"        -o size=1000 img.qcow2
case_ "data_file without one"        -o data_file=x img.qcow2
case_ "data_file_raw=on"             -o data_file_raw=on img.qcow2
case_ "data_file_raw=off"            -o data_file_raw=off img.qcow2
case_ "encrypt.state"                -o encrypt.state=active img.qcow2
case_ "encryption checked first"     -o encrypt.state=x,compat=2 img.qcow2
case_ "compat checked before width"  -o refcount_bits=3,compat=2 img.qcow2
case_ "type errors first"            -o compat=2,refcount_bits=abc img.qcow2
case_ "data_file before width"       -o data_file=x,refcount_bits=3 img.qcow2
case_ "lazy refcounts on v2"         -o compat=0.10,lazy_refcounts=on img.qcow2
case_ "width on v2"                  -o compat=0.10,refcount_bits=8 img.qcow2
case_ "backing file change refused"  -o backing_file=x img.qcow2
case_ "-o twice, last wins"          -o lazy_refcounts=on -o lazy_refcounts=off img.qcow2
case_ "-p, no change"                -p -o compat=1.1 img.qcow2
case_ "-p, lazy refcounts"           -p -o lazy_refcounts=on img.qcow2
case_ "-p, refused"                  -p -o compat=2 img.qcow2
case_ "-p, unknown option"           -p -o foo=1 img.qcow2
case_ "-p -q"                        -p -q -o lazy_refcounts=on img.qcow2
case_ "--force"                      --force -o lazy_refcounts=on img.qcow2
NOMSG=1 case_ "missing file"         -o compat=1.1 nosuch.qcow2
NOMSG=1 case_ "-U (not an amend option)" -U -o compat=1.1 img.qcow2

kimg amend --object foo -o compat=1.1 base.qcow2
is "$RC" 1 "--object refused"; err_line "--object"
kimg amend -h
is "$RC" 0 "-h: exit 0"
like "$(< "$T/out")" "amend .*-o options" "-h: synopsis"
done_testing
