#!/bin/bash
# 405-clone-mac-uuid.t — every interface gets a new unique unicast MAC
# (52:54:00:...), also those that had none, or the --mac values in order
# (validated, RANDOM allowed); <target dev> dropped; --uuid validated and
# written canonically, the sysinfo uuid following it.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture web01
macs() { xml_get out devices/interface/mac/@address | tr '\n' ' '; }
kimg clone --original-xml vm/web01.xml -n w2 --auto-clone --print-xml
m=($(macs))
is "${#m[@]}" 3 "three interfaces, three MACs (one had none)"
for x in "${m[@]}"; do like "$x" '^52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$' "random MAC $x: KVM prefix, lowercase"; done
is "$(printf '%s\n' "${m[@]}" vm 52:54:00:4a:1b:2c 52:54:00:4a:1b:2d | sort | uniq -d)" "" \
   "all different, and different from the original's"
is "$(xml_get out devices/interface/target/@dev)" "" "<target dev> dropped"
is "$(xml_get out "devices/interface[@type='bridge']/mac/@address")" "${m[1]}" "the bridge interface got a <mac>"

kimg clone --original-xml vm/web01.xml -n w2 --auto-clone --print-xml -m 52:54:00:AA:00:01 -m RANDOM -m 02:00:00:00:00:03
m=($(macs))
is "${m[0]}|${m[2]}" "52:54:00:aa:00:01|02:00:00:00:00:03" "--mac values in interface order, lowercased"
like "${m[1]}" '^52:54:00:' "RANDOM: a random one"
kimg clone --original-xml vm/web01.xml -n w2 --auto-clone --print-xml -m 52:54:00:aa:00:01
m=($(macs))
is "${m[0]}" "52:54:00:aa:00:01" "fewer --mac than interfaces: the first given..."
like "${m[1]}${m[2]}" '^52:54:00:.*52:54:00:' "...the others random"

for bad in 01:00:5e:00:00:01 ff:ff:ff:ff:ff:ff 00:00:00:00:00:00 52:54:00:1:2:3 52-54-00-11-22-33 \
           52:54:00:11:22:33:44 zz:54:00:11:22:33 ''; do
    kimg clone --original-xml vm/web01.xml -n w2 --auto-clone --print-xml -m "$bad"
    err_line "--mac '$bad' refused"
done
kimg clone --original-xml vm/web01.xml -n w2 --auto-clone --print-xml -m 52:54:00:00:00:01 -m 52:54:00:00:00:01
err_line "the same --mac twice"
kimg clone --original-xml vm/web01.xml -n w2 --auto-clone --print-xml -m 52:54:00:00:00:01 \
     -m 52:54:00:00:00:02 -m 52:54:00:00:00:03 -m 52:54:00:00:00:04
err_line "more --mac than interfaces"

kimg clone --original-xml vm/web01.xml -n w2 --auto-clone --print-xml --uuid 0123456789ABCDEF0123456789abcdef
is "$(xml_get out uuid)" "01234567-89ab-cdef-0123-456789abcdef" "--uuid without dashes: canonical form"
is "$(xml_get out "sysinfo/system/entry[@name='uuid']")" "01234567-89ab-cdef-0123-456789abcdef" "the sysinfo uuid follows --uuid"
for bad in 0123 01234567-89ab-cdef-0123-456789abcdeg 0123456789-ab-cdef-0123-456789abcdef \
           00000000-0000-0000-0000-000000000000 4dea22b3-1d52-d8f3-2516-782e98ab3fa0; do
    kimg clone --original-xml vm/web01.xml -n w2 --auto-clone --print-xml --uuid "$bad"
    err_line "--uuid $bad refused"
done
kimg clone --original-xml vm/web01.xml -n w2 --auto-clone --print-xml
u1=$(xml_get out uuid)
kimg clone --original-xml vm/web01.xml -n w2 --auto-clone --print-xml
isnt "$(xml_get out uuid)" "$u1" "two runs, two UUIDs"
done_testing
