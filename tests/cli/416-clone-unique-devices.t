#!/bin/bash
# 416-clone-unique-devices.t — what must not be shared by two running
# guests becomes automatic: fixed VNC/SPICE ports (port, tlsPort), the
# guest agent socket path, a fixed vsock cid, a set <genid>; warnings say
# so (and that an emulated TPM's state is not copied), -q silences them.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture web01
clone_fixture db01
kimg clone --original-xml vm/web01.xml -n w2 --auto-clone
is "$RC" 0 "exit 0"
cp out w2.xml
is "$(xml_get w2.xml "devices/graphics[@type='vnc']/@port")|$(xml_get w2.xml "devices/graphics[@type='vnc']/@autoport")" \
   "-1|" "vnc: port -1 (automatic), autoport dropped (as virt-clone)"
is "$(xml_get w2.xml "devices/graphics[@type='spice']/@port") $(xml_get w2.xml "devices/graphics[@type='spice']/@tlsPort")" \
   "-1 -1" "spice: port and tlsPort automatic"
is "$(xml_get w2.xml "devices/graphics[@type='vnc']/@listen")" "127.0.0.1" "the listen address kept"
is "$(xml_get w2.xml "devices/channel[@type='unix']/source/@path")" "" "guest agent socket path dropped"
is "$(xml_get w2.xml "devices/channel[@type='unix']/source/@mode")" "bind" "...its mode kept"
like "$(< err)" "graphics ports" "a warning about the ports"
like "$(< err)" "TPM" "a warning about the TPM state"
like "$(< err)" "Clone 'w2' created successfully" "and the success line on stderr"
kimg clone --original-xml vm/web01.xml -n w3 --auto-clone -q
is "$(< err)" "" "-q: silent"
kimg clone --original-xml vm/db01.xml -n db2 --auto-clone --skip-copy vdb --skip-copy vdc --print-xml
cp out db2.xml
is "$(xml_get db2.xml devices/vsock/cid/@auto)|$(xml_get db2.xml devices/vsock/cid/@address)" "yes|" \
   "a fixed vsock cid becomes automatic"
g=$(xml_get db2.xml genid)
like "$g" '^[0-9a-f-]{36}$' "a new <genid>"
isnt "$g" "43dc0cf8-809b-4adb-9bea-a9abb5f3d90e" "...not the original's"
validate db2.xml "valid"
done_testing
