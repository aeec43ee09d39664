#!/bin/bash
# 409-clone-nvram.t — UEFI nvram: copied to <dir>/<newname>_VARS.fd or
# --nvram, in both XML forms (<nvram>path</nvram> and <source file>); an
# nvram that does not exist yet is only re-pointed; --nvram without one is
# a warning.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture web01
clone_fixture db01
clone_fixture tiny
mkdir -p vars
kimg clone --original-xml vm/web01.xml -n w2 --auto-clone --nvram vars/w2.fd -q
is "$RC" 0 "--nvram PATH"
is "$(xml_get out os/nvram)" "$T/vars/w2.fd" "the XML points at it (absolute)"
ok "copied" cmp -s vm/nvram/web01_VARS.fd vars/w2.fd
is "$(xml_get out os/nvram/@template)" "/usr/share/OVMF/OVMF_VARS_4M.fd" "its template= kept"

kimg clone --original-xml vm/db01.xml -n db02 --auto-clone --skip-copy vdb --skip-copy vdc -q
is "$RC" 0 "new-style <nvram type='file'><source file=...>"
is "$(xml_get out os/nvram/source/@file)" "$T/vm/nvram/db02_VARS.fd" "source file re-pointed"
ok "copied" cmp -s vm/nvram/db01_VARS.fd vm/nvram/db02_VARS.fd
cp out db02.xml
validate db02.xml "valid"

rm vm/nvram/web01_VARS.fd
kimg clone --original-xml vm/web01.xml -n w3 --auto-clone -q
is "$RC" 0 "an nvram never created"
is "$(xml_get out os/nvram)" "$T/vm/nvram/w3_VARS.fd" "re-pointed (libvirt makes it from the template)"
ok "nothing created for it" test ! -e vm/nvram/w3_VARS.fd

kimg clone --original-xml vm/tiny.xml -n t2 --auto-clone --nvram vars/x.fd
is "$RC" 0 "--nvram for a domain without nvram"
like "$(< err)" "warning: --nvram ignored" "a warning"
ok "no nvram file" test ! -e vars/x.fd
done_testing
