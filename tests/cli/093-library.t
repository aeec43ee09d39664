#!/bin/bash
# The installable library (Makefile "install", mk/, examples/): `make
# install` into a DESTDIR puts the command, libkimg.a, libkimg.so with its
# soname links, kimg.pc and the public headers where PREFIX, BINDIR,
# LIBDIR, INCLUDEDIR say; libkimg.so exports exactly the kimg_* functions
# the installed headers declare; examples/convert-and-checksum.c builds
# against the installed tree alone through pkg-config, linked shared and
# static, and its copy and checksum agree with qemu-img compare and `kimg
# checksum`; `make uninstall` removes every file install put there.
# Where nbdkit's plugin header is, nbdkit-kimg-plugin.so goes into
# nbdkit's plugin folder (pkg-config's plugindir) under DESTDIR, exports
# nbdkit's entry point alone, and its source builds against the installed
# tree as well, calling nothing libkimg.so does not export.
. "$(dirname "$0")/lib.sh"
require pkg-config nm readelf
CC=${KIMG_CC:-cc}
SANFLAGS=${KIMG_SANFLAGS:-}
san=; [ -n "$SANFLAGS" ] && san=SANITIZE=1
# a make of its own (not the jobserver of the make running the tests) that
# installs what is built and builds nothing (-o all), whatever its flags
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$KIMG_SRC" -o all $san "$@" > "$T/make.log" 2>&1; }

D=$T/root
touch "$T/before-install"
if mk install DESTDIR="$D" PREFIX=/usr/local; then pass "make install DESTDIR=... PREFIX=/usr/local"
else fail "make install" "$(tail -20 "$T/make.log")"; done_testing; fi
# install writes into DESTDIR alone: tests 093, 096 and 097 install at
# once under make check, each with its own PREFIX, and a kimg.pc
# regenerated in the build tree raced ("mv: cannot stat") and crossed
# prefixes (lib.sh's fixtures cache is the one thing other files write)
is "$(find "$KIMG_BUILD" -path "$KIMG_BUILD/fixtures*" -prune -o -newer "$T/before-install" -print)" "" \
   "  it writes nothing into the build tree"
L=$D/usr/local/lib
missing=
for f in bin/kimg lib/libkimg.a lib/libkimg.so lib/libkimg.so.0 lib/pkgconfig/kimg.pc \
         include/kimg.h include/kimg/convert.h include/kimg/checksum.h include/kimg/opts.h; do
    [ -e "$D/usr/local/$f" ] || missing="$missing $f"
done
is "$missing" "" "every file in its place under PREFIX"
P=
if echo '#include <nbdkit-plugin.h>' | $CC -E -x c - > /dev/null 2>&1; then
    PD=$(pkg-config --variable=plugindir nbdkit)
    P=$D$PD/nbdkit-kimg-plugin.so
    ok "nbdkit-kimg-plugin.so in nbdkit's plugin folder ($PD)" test -x "$P"
    is "$(nm -D --defined-only "$P" | awk '{ print $NF }')" "plugin_init" "  it exports plugin_init alone"
else
    skip "nbdkit-kimg-plugin.so installed" "no <nbdkit-plugin.h>"
fi
real=$(readlink -f "$L/libkimg.so")
like "$real" '/libkimg\.so\.0\.[0-9]+\.[0-9]+$' "libkimg.so -> libkimg.so.0 -> the real name ($(basename "$real"))"
is "$(readelf -d "$real" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')" "libkimg.so.0" "soname libkimg.so.0"

# exports: the declarations of the installed headers, nothing else
nm -D --defined-only "$real" | awk '{ print $NF }' | sed 's/@.*//' | LC_ALL=C sort -u > exported
grep -v '^kimg_' exported > other || true
is "$(< other)" "" "libkimg.so exports no symbol outside kimg_*"
CC=$CC "$KIMG_SRC/mk/public-symbols.sh" list "$D"/usr/local/include/kimg.h "$D"/usr/local/include/kimg/*.h > declared
is "$(diff declared exported)" "" "it exports exactly the functions the installed headers declare ($(wc -l < declared))"

# pkg-config against the staged tree only (no other .pc files)
pc() { PKG_CONFIG_SYSROOT_DIR=$D PKG_CONFIG_LIBDIR=$L/pkgconfig pkg-config "$@"; }
is "$(pc --modversion kimg)" "$("$KIMG" --version | sed 's/.* //')" "kimg.pc: Version is kimg's"
like "$(pc --cflags --libs kimg)" "^-I$D/usr/local/include +-L$L +-lkimg *$" "Cflags and Libs point into the tree"
libs_static=$(pc --static --libs kimg)
like "$libs_static" "-lkimg .*-lzstd .*-ldl" "Libs.private names the dependencies"
is "$(echo "$libs_static" | tr " " "\n" | grep -E -- "^-l(nbd|xml2|crypto|nettle)$")" "" \
    "... not libnbd, libxml2, libcrypto or nettle (lazylib/ loads them: dlopen)"
if [ -n "${P:-}" ]; then
    # the plugin's source against the installed tree alone
    if $CC $SANFLAGS -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Werror -shared -fPIC -o plugin-alone.so \
           "$KIMG_SRC/plugins/nbdkit/kimg.c" $(pc --cflags --libs kimg) 2> "$T/cc.log"; then
        nm -u plugin-alone.so | awk '$NF ~ /^kimg_/ { print $NF }' | sed 's/@.*//' | sort -u > used
        is "$(comm -23 used exported)" "" "  its source builds against the installed headers and calls only exports ($(wc -l < used))"
    else fail "  its source builds against the installed headers" "$(< "$T/cc.log")"; fi
fi

# the example: a qcow2 source with data, zeros and holes
qemu-img create -q -f qcow2 src.qcow2 20M
qemu-io -f qcow2 -c 'write -P 0x5a 0 1M' -c 'write -z 2M 1M' -c 'write -P 0xa5 7M 64k' \
        -c 'write -P 0x01 19M 1M' src.qcow2 > /dev/null
ex=$KIMG_SRC/examples/convert-and-checksum.c
build() { local out=$1; shift; $CC $SANFLAGS -std=gnu11 -Wall -Wextra -Werror -o "$out" "$ex" "$@" 2> "$T/cc.log"; }
try() {   # try NAME BINARY: run it, check the copy and the printed line
    local name=$1 bin=$2; rm -f out.qcow2
    RC=0; LD_LIBRARY_PATH=$L "./$bin" src.qcow2 out.qcow2 > "$bin.out" 2> "$bin.err" || RC=$?
    is "$RC" 0 "$name: runs"
    ok "$name: the copy reads as the source (qemu-img compare)" qemu_oracle_compare src.qcow2 out.qcow2
    ok "$name: qemu-img check of the copy is clean" check_clean out.qcow2
    kimg checksum out.qcow2
    is "$(cat "$bin.out")" "$(< "$T/out")" "$name: prints what kimg checksum prints"
}
if build ex-shared $(pc --cflags --libs kimg); then
    pass "the example builds with pkg-config --cflags --libs kimg"
    like "$(LD_LIBRARY_PATH=$L ldd ./ex-shared | grep libkimg)" "libkimg\.so\.0 => $L/libkimg\.so\.0 " "it loads the installed libkimg.so.0"
    try shared ex-shared
else fail "the example builds (shared)" "$(< "$T/cc.log")"; fi
if build ex-static $(pc --cflags kimg) $(pc --static --libs kimg | sed 's/-lkimg /-l:libkimg.a /'); then
    pass "the example builds against libkimg.a (pkg-config --static)"
    is "$(ldd ./ex-static | grep -c libkimg)" 0 "it needs no libkimg.so"
    try static ex-static
else fail "the example builds (static)" "$(< "$T/cc.log")"; fi

# every directory variable, then uninstall
D2=$T/root2
dirs=(PREFIX=/opt/k BINDIR=/opt/k/sbin LIBDIR=/opt/k/lib64 INCLUDEDIR=/opt/k/inc MANDIR=/opt/k/man)
ok "make install with BINDIR, LIBDIR, INCLUDEDIR, MANDIR" mk install DESTDIR="$D2" "${dirs[@]}"
ok "  the command in BINDIR" test -x "$D2/opt/k/sbin/kimg"
ok "  the libraries in LIBDIR" test -e "$D2/opt/k/lib64/libkimg.so.0" -a -e "$D2/opt/k/lib64/libkimg.a"
ok "  the headers in INCLUDEDIR" test -e "$D2/opt/k/inc/kimg.h" -a -e "$D2/opt/k/inc/kimg/convert.h"
pc2() { PKG_CONFIG_SYSROOT_DIR=$D2 PKG_CONFIG_LIBDIR=$D2/opt/k/lib64/pkgconfig pkg-config "$@"; }
is "$(pc2 --cflags --libs kimg | sed "s/ *$//")" "-I$D2/opt/k/inc -L$D2/opt/k/lib64 -lkimg" "  kimg.pc names them"
if build ex-moved $(pc2 --cflags --libs kimg); then pass "  the example builds there"
else fail "  the example builds there" "$(< "$T/cc.log")"; fi
ok "make uninstall with the same variables" mk uninstall DESTDIR="$D2" "${dirs[@]}"
is "$(cd "$D2" && find . ! -type d | sort | tr '\n' ' ')" "" "  it leaves no file behind"
mk uninstall DESTDIR="$D" PREFIX=/usr/local
is "$(cd "$D" && find . ! -type d | sort | tr '\n' ' ')" "" "make uninstall of the first tree leaves no file behind"
done_testing
