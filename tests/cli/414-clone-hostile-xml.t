#!/bin/bash
# 414-clone-hostile-xml.t — domain XML is untrusted: DTDs and entities
# (billion laughs, external entities), deep nesting, oversized files, too
# many disks, malformed or non-domain documents are refused with one line,
# quickly, reading no other file and creating none.
. "$(dirname "$0")/lib.sh"
KIMG_TIMEOUT=30     # hostile input: each command under timeout, a hang fails on its own
. "$KIMG_SRC/tests/images/domains/setup.sh"

C=$KIMG_SRC/fuzz/corpus/fuzz_domxml
mkdir -p d
for f in billion-laughs xxe-passwd xxe-parameter deep-nesting too-many-disks not-a-domain \
         two-names malformed namespaced-root; do
    start=$(date +%s%N)
    kimg clone --original-xml "$C/$f.xml" -n x --auto-clone -f d/x
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    err_line "$f"
    ok "$f: quick (${ms} ms)" test "$ms" -lt 2000
    ok "$f: no /etc/passwd content in the message" bash -c "! grep -q 'root:' '$T/err'"
done
like "$(kimg clone --original-xml "$C/billion-laughs.xml" -n x --auto-clone; cat err)" "DOCTYPE" "DTDs refused by name"
head -c $((10 * 1024 * 1024 + 1)) /dev/zero | tr '\0' ' ' > big.xml
kimg clone --original-xml big.xml -n x --auto-clone
err_line "a file over 10 MiB"
kimg clone --original-xml /dev/null -n x --auto-clone
err_line "not a regular file"
printf '' > empty.xml
kimg clone --original-xml empty.xml -n x --auto-clone
err_line "an empty file"
printf '<domain><name>a\001b</name></domain>' > ctl.xml
kimg clone --original-xml ctl.xml -n x --auto-clone
err_line "a control character"
is "$(files_in d)" "" "no file created"
done_testing
