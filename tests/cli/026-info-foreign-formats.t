#!/bin/bash
# Images in formats kimg does not implement (vmdk, vdi, vhdx, qed, vpc,
# qcow v1, parallels, luks), made by qemu-img: kimg must not take them for
# raw (qemu-img probes them as what they are; calling a vmdk "raw" makes a
# script copy the container bytes as disk content).  Each command either
# does what qemu-img does (same output) or refuses with one "kimg: " line:
# info exit 1, compare exit 2, map exit 1.
. "$(dirname "$0")/lib.sh"
qemu-img create -q -f raw flat.raw 1M
for fmt in vmdk vdi vhdx qed vpc qcow parallels luks; do
    f=img.$fmt
    if [ $fmt = luks ]; then
        qemu-img create -q --object secret,id=s0,data=x -f luks -o key-secret=s0,iter-time=10 $f 1M 2> /dev/null
    else
        qemu-img create -q -f $fmt $f 1M 2> /dev/null
    fi || { skip "$fmt" "qemu-img cannot create $fmt here"; continue; }
    for cmd in "info --output=json" "info" "map --output=json"; do
        qimg $cmd $f; kimg $cmd $f
        if [ "$RC" -eq 0 ]; then
            is_file "$T/out" "$T/qout" "$fmt: kimg $cmd succeeds, so with qemu-img's output"
        else
            err_line "$fmt: kimg $cmd refuses it"
        fi
        ok "$fmt: kimg $cmd does not call it raw" eval '! grep -q "\"format\": \"raw\"\|^file format: raw" "$T/out"'
    done
    kimg compare $f flat.raw
    case $RC in
    0) qrc=0; qemu-img compare -q $f flat.raw 2> /dev/null || qrc=$?
       is "$RC" "$qrc" "$fmt: compare with an empty raw: as qemu-img" ;;
    *) is "$RC" 2 "$fmt: compare refuses to open it (exit 2)" ;;
    esac
    if [ $fmt = qcow ]; then
        kimg info $f
        like "$(< "$T/err")" "in qcow format, which kimg does not support" \
            "qcow: info names the format it refuses (version 1, not an unsupported qcow2)"
    fi
    # -f raw is an explicit request and stays allowed
    kimg info -f raw --output=json $f
    is "$RC" 0 "$fmt: info -f raw is allowed"
done
done_testing
