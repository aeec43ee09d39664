#!/bin/bash
# Images named "json:{...}" on the command line, as vdsm (measure, on
# every call; with a backing image when it measures a sub-chain for a
# merge) and virt-v2v (a disk inside an OVA, by offset and size, and its
# probe for that) pass them, their exact strings: the same exit code and
# output as qemu-img 7.2 for info, measure, map, check, compare, checksum
# and convert as a source, with "driver", "file" (nested or dotted, driver
# "file" or "host_device" with "filename"), "backing": null or vdsm's
# backing image, a byte range of a file (qemu's raw driver with
# offset/size) as the image or under a format, and -f overriding
# "driver".  Refusals with one line (issue 16: "refuse any other key with
# a clear message"): every other key, named (escaped) in the message,
# though qemu-img takes it (a protocol option, "cache", a format's open
# options, "encrypt.key-secret"); parse errors, a non-object, a backing
# other than null or an image; a "file" that is not a local file or
# device (an NBD export by driver or by name); under --untrusted; a json:
# name stored in an image as its backing file is never followed.
. "$(dirname "$0")/lib.sh"

qemu-img create -q -f qcow2 base.qcow2 4M
qemu-io -f qcow2 -c "write -P 1 0 1M" base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -f qcow2 -c "write -P 2 1M 64k" top.qcow2 > /dev/null
# an OVA-like tar holding a VMDK (virt-v2v reads it by offset and size)
qemu-img convert -q -O vmdk -o subformat=streamOptimized base.qcow2 disk.vmdk 2> /dev/null ||
    qemu-img convert -q -O vmdk base.qcow2 disk.vmdk
tar -cf pack.ova disk.vmdk
OFF=$(( $(tar -tvf pack.ova --block-number | awk '/disk.vmdk/ { print $2 }' | tr -d ':') * 512 + 512 ))
SIZE=$(stat -c %s disk.vmdk)

VDSM='json:{"file":{"driver":"file","filename":"top.qcow2"},"driver":"qcow2","backing":null}'
oracle "vdsm's measure line" measure --output json -O qcow2 "$VDSM"
oracle "vdsm's measure line, --force-share" measure --output json --force-share -O qcow2 "$VDSM"
oracle "measure -O raw" measure --output json -O raw "$VDSM"
# vdsm's measure() (lib/vdsm/storage/qemuimg.py) as json.dumps spells it:
# one volume (backing null), no format (file only), a raw volume, and a
# sub-chain top <- base for a merge (backing: the base image, its own
# backing null when it is qcow2)
for J in 'json:{"file": {"driver": "file", "filename": "top.qcow2"}, "driver": "qcow2", "backing": null}' \
         'json:{"file": {"driver": "file", "filename": "top.qcow2"}}' \
         'json:{"file": {"driver": "file", "filename": "base.qcow2"}, "driver": "raw"}' \
         'json:{"file": {"driver": "file", "filename": "top.qcow2"}, "driver": "qcow2", "backing": {"driver": "qcow2", "file": {"driver": "file", "filename": "base.qcow2"}, "backing": null}}' \
         'json:{"file": {"driver": "file", "filename": "top.qcow2"}, "driver": "qcow2", "backing": {"driver": "raw", "file": {"driver": "file", "filename": "base.qcow2"}}}'; do
    for O in qcow2 raw; do
        oracle "vdsm: measure -O $O $J" measure --output json -O "$O" "$J"
    done
    oracle "vdsm: measure --force-share $J" measure --output json --force-share -O qcow2 "$J"
done
SUB='json:{"file": {"driver": "file", "filename": "top.qcow2"}, "driver": "qcow2", "backing": {"driver": "qcow2", "file": {"driver": "file", "filename": "base.qcow2"}, "backing": null}}'
oracle "vdsm's sub-chain: map" map --output=json "$SUB"
oracle "vdsm's sub-chain: compare with the chain" compare "$SUB" top.qcow2
oracle "vdsm's sub-chain: info (refused, as qemu-img: info names the backing file)" info "$SUB"
# on a block device (host_device), as vdsm measures a volume on block storage
loop_attach lv.img 16M
if [ -n "$LOOPDEV" ]; then
    qemu-img create -q -f qcow2 "$LOOPDEV" 4M
    qemu-io -f qcow2 -c "write -P 3 0 256k" "$LOOPDEV" > /dev/null
    oracle "vdsm's measure line, host_device" measure --output json -O qcow2 \
        "json:{\"file\": {\"driver\": \"host_device\", \"filename\": \"$LOOPDEV\"}, \"driver\": \"qcow2\", \"backing\": null}"
else
    skip "vdsm's measure line, host_device" "not root or no losetup"
fi
# virt-v2v's probe (lib/utils.ml qemu_img_supports_offset_and_size): a
# 1024-byte file, offset 512, size 512, the inner file without a driver
truncate -s 1024 "$PWD/v2vprobe.img"
V2VPROBE="json:{\"file\":{\"driver\":\"raw\",\"offset\":512,\"size\":512,\"file\":{\"filename\":\"$PWD/v2vprobe.img\"}}}"
qimg info "$V2VPROBE"; kimg info "$V2VPROBE"
is "$RC" 0 "virt-v2v's probe: exit 0"
is "$(grep -v '^disk size' "$T/out")" "$(grep -v '^disk size' "$T/qout")" "virt-v2v's probe: as qemu-img's"
for J in "$VDSM" \
         'json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"}}' \
         'json:{"driver":"qcow2","file.driver":"file","file.filename":"top.qcow2"}' \
         'json:{"file":{"driver":"file","filename":"top.qcow2"}}' \
         'json:{"driver":"raw","offset":512,"size":1024,"file":{"driver":"file","filename":"base.qcow2"}}' \
         'json:{"driver":"raw","offset":"512","file":{"driver":"file","filename":"base.qcow2"}}' \
         "json:{\"driver\":\"vmdk\",\"file\":{\"driver\":\"raw\",\"offset\":$OFF,\"size\":$SIZE,\"file\":{\"driver\":\"file\",\"filename\":\"pack.ova\"}}}" \
         "json:{\"file\":{\"driver\":\"raw\",\"offset\":$OFF,\"size\":$SIZE,\"file\":{\"driver\":\"file\",\"filename\":\"pack.ova\"}}}" \
         "json:{\"file\":{\"driver\":\"raw\",\"offset\":$OFF,\"size\":$SIZE,\"file\":{\"driver\":\"file\",\"filename\":\"$PWD/pack.ova\"}}}"; do
    qimg info --output=json "$J"; kimg info --output=json "$J"
    is "$RC" "$QRC" "info $J: exit code as qemu-img's"
    # (a byte range: qemu-img reports the containing file's actual size
    # and host offsets in it; kimg the range's, as for a disk in an OVA)
    is "$(grep -v actual-size "$T/out")" "$(grep -v actual-size "$T/qout")" "info $J: JSON as qemu-img's"
    qimg info "$J"; kimg info "$J"
    is "$(grep -v '^disk size' "$T/out")" "$(grep -v '^disk size' "$T/qout")" "info (human) $J: as qemu-img's"
    qimg map --output=json "$J"; kimg map --output=json "$J"
    is "$RC" "$QRC" "map $J: exit code as qemu-img's"
    is "$(sed 's/"offset": [0-9]*//' "$T/out")" "$(sed 's/"offset": [0-9]*//' "$T/qout")" "map $J: as qemu-img's"
done
oracle "virt-v2v's OVA probe: check" check "json:{\"driver\":\"vmdk\",\"file\":{\"driver\":\"raw\",\"offset\":$OFF,\"size\":$SIZE,\"file\":{\"driver\":\"file\",\"filename\":\"pack.ova\"}}}"
kimg convert -O raw "json:{\"file\":{\"driver\":\"raw\",\"offset\":$OFF,\"size\":$SIZE,\"file\":{\"driver\":\"file\",\"filename\":\"pack.ova\"}}}" ova.raw
is "$RC" 0 "convert from a disk inside an OVA named by offset and size"
ok "... the disk's content" qemu_oracle_compare -F qcow2 ova.raw base.qcow2
oracle "compare json: with a file" compare "$VDSM" top.qcow2
kimg checksum 'json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"}}'; a=$(cut -d' ' -f1 "$T/out")
kimg checksum top.qcow2; b=$(cut -d' ' -f1 "$T/out")
is "$a" "$b" "checksum through a json: name: as the file's"
oracle "-f raw overrides driver" info -f raw 'json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"}}'
kimg compare "$VDSM" top.qcow2
is "$RC" 1 "backing: null: the backing file's data is not read (differs from the full chain)"

# refusals
for J in 'json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"}' 'json:[1]' \
         'json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"},"bogus":1}' \
         'json:{"driver":"qcow2","file":"top.qcow2"}' 'json:{"driver":"nope","file":{"filename":"x"}}'; do
    oracle "refused: $J" info "$J"
    err_line "refused: $J"
done
for J in 'json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"},"backing":"base"}' \
         'json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"},"backing":{"driver":"qcow2","file":{"driver":"file","filename":"base.qcow2"},"backing":{"driver":"qcow2"}}}' \
         'json:{"file":{"driver":"raw","offset":0,"file":{"driver":"file","filename":"base.qcow2"}},"backing":{"driver":"raw","file":{"filename":"base.qcow2"}}}'; do
    kimg measure -O qcow2 "$J"
    err_line "a backing other than null or a backing image: $J"
done
# every key outside issue 16's set is refused, named, though qemu-img
# takes each of these (--image-opts takes them)
B='"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"}'
for KJ in 'file.locking|json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2","locking":"off"}}' \
          'file.locking|json:{"driver":"qcow2","file.driver":"file","file.filename":"top.qcow2","file.locking":"off"}' \
          'file.aio|json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2","aio":"threads"}}' \
          "cache|json:{$B,\"cache\":{\"direct\":false,\"no-flush\":true}}" \
          "cache.direct|json:{$B,\"cache.direct\":false}" \
          "lazy-refcounts|json:{$B,\"lazy-refcounts\":true}" \
          "encrypt.key-secret|json:{$B,\"encrypt.key-secret\":\"sec0\"}" \
          "read-only|json:{$B,\"read-only\":true}" \
          "discard|json:{$B,\"discard\":\"unmap\"}" \
          "node-name|json:{$B,\"node-name\":\"n0\"}" \
          'backing.file.locking|json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"},"backing":{"driver":"qcow2","file":{"driver":"file","filename":"base.qcow2","locking":"off"}}}' \
          'backing.cache|json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"},"backing":{"driver":"qcow2","file":{"driver":"file","filename":"base.qcow2"},"cache":{"direct":false}}}' \
          'read-only|json:{"driver":"raw","offset":0,"file":{"driver":"file","filename":"base.qcow2"},"read-only":true}' \
          'file.file.locking|json:{"driver":"vmdk","file":{"driver":"raw","offset":0,"file":{"driver":"file","filename":"pack.ova","locking":"off"}}}' \
          'offset|json:{"driver":"qcow2","offset":0,"file":{"driver":"file","filename":"top.qcow2"}}'; do
    K=${KJ%%|*} J=${KJ#*|}
    kimg measure --output json -O qcow2 "$J"
    err_line "refused key $K"
    is "$(< "$T/out")" "" "refused key $K: no output"
    like "$(< "$T/err")" "a json: name takes no option '$K' \\(only \"driver\"" "refused key $K: named"
done
# the key comes from the command line: escaped in the message
kimg info $'json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"},"a\\u001b[31mb\\nc":1}'
err_line "a key with an ESC and a newline"
like "$(< "$T/err")" "no option 'a\\\\x1b\\[31mb\\\\x0ac'" "... escaped in the message"
# a "file" other than a local file or device (issue 16: "file" or
# "host_device" with "filename"), though --image-opts takes NBD exports:
# refused before anything is opened or connected to
for J in 'json:{"driver":"raw","file":{"driver":"nbd","path":"nbd.sock"}}' \
         'json:{"driver":"raw","file.driver":"nbd","file.path":"nbd.sock"}' \
         'json:{"driver":"raw","file":{"driver":"nbd","host":"127.0.0.1","port":"1"}}' \
         'json:{"driver":"raw","file":{"driver":"ssh","filename":"x"}}' \
         'json:{"driver":"raw","file":{"filename":"nbd+unix:///?socket=nbd.sock"}}' \
         'json:{"driver":"raw","file":{"driver":"file","filename":"nbd://127.0.0.1:1/x"}}' \
         'json:{"driver":"raw","offset":0,"size":512,"file":{"driver":"file","filename":"nbd+unix:///?socket=nbd.sock"}}'; do
    kimg info "$J"
    err_line "not a local file: $J"
    like "$(< "$T/err")" "json: name( opens local files only|'s \"file\" must have the driver)" \
        "not a local file: $J: says why"
done
kimg info --untrusted "$VDSM"
err_line "--untrusted"
like "$(< "$T/err")" "under --untrusted" "--untrusted: said so"
kimg convert -O qcow2 'json:{"driver":"raw","offset":0,"file":{"driver":"file","filename":"base.qcow2"}}' x.qcow2
is "$RC" 0 "a byte range reads as a source"
kimg bitmap --add 'json:{"driver":"raw","offset":0,"file":{"driver":"file","filename":"base.qcow2"}}' b
err_line "a byte range is not opened for writing"
# a json: name stored in an image is not followed
qemu-img create -q -f qcow2 -u -b 'json:{"driver":"qcow2","file":{"driver":"file","filename":"base.qcow2"}}' \
    -F qcow2 stored.qcow2 4M
kimg convert -O raw stored.qcow2 s.raw
err_line "a json: backing name stored in an image: refused"
ok "... no output" test ! -e s.raw
done_testing
