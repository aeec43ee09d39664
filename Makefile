# kimg — plain GNU make.
#   make            build the kimg command, libkimg.a, libkimg.so and kimg.pc (in $(B)/)
#   make check      build and run every test through prove (TAP)
#   make SANITIZE=1 check   the same under ASan+UBSan (objects in build-san/)
#   make fuzz       run each libFuzzer target for FUZZ_SECONDS (clang)
#   make bench      kimg against qemu-img on realistic inputs (not a test)
#   make deps       install the Debian packages a fresh machine lacks
#   make man        the manual page, $(B)/man/kimg.1 from man/kimg.pod (also in `make`)
#   make install    PREFIX=/usr/local DESTDIR= (also BINDIR LIBDIR INCLUDEDIR MANDIR
#                   BASHCOMPDIR)
#   make uninstall  the same variables: removes what install put there
#                   (the nbdkit plugin goes to NBDKIT_PLUGINDIR, nbdkit's own)

PREFIX  ?= /usr/local
CC      ?= cc
SANITIZE ?=
WERROR  ?=
FUZZ_SECONDS ?= 60
# Test files run at once by check and check-slow: one more than the 2
# cores of the machines CI runs on, so a file waiting on a server, a
# sleep or an fsync leaves no core idle (measured: 3 beat 2 by 2-4%).
CHECK_JOBS ?= 3

# One list of Debian packages, used by `make deps`, the README and .ci/run.
DEB_PACKAGES = build-essential pkg-config clang llvm libclang-rt-14-dev \
               zlib1g-dev libzstd-dev libaio-dev libssl-dev libxml2-dev uuid-dev \
               qemu-utils libvirt-clients virtinst xfsprogs btrfs-progs perl python3 util-linux e2fsprogs \
               time libnbd-bin libdeflate-dev libvhdi-utils libvmdk-utils libisal-dev \
               cryptsetup-bin libjansson-dev libnbd-dev nbdkit nbdkit-plugin-dev nettle-dev \
               groff-base man-db bash-completion procps strace

ifeq ($(SANITIZE),1)
B        := build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
B        := build
SANFLAGS :=
endif

WARN    := -Wall -Wextra -Wshadow -Wformat=2 -Wvla -Wno-unused-parameter \
           -Wmissing-prototypes -Wstrict-prototypes
ifeq ($(WERROR),1)
WARN    += -Werror
endif
OPT     ?= -O2 -g
# Every object is position-independent, so one set serves libkimg.a, the
# kimg command and libkimg.so (-fno-semantic-interposition: calls inside
# the library may still be inlined; no slower than the default PIE, see
# README "Using libkimg").
PICFLAGS := -fPIC -fno-semantic-interposition
XML_CFLAGS := $(shell pkg-config --cflags libxml-2.0 2>/dev/null || echo -I/usr/include/libxml2)
# Who sees which headers (DESIGN.md "Layout"): cmd/ and clone/ the public
# API alone (include/kimg.h and what it includes; clone/ also lazylib/'s
# libxml2 table); img/ and formats/ also
# the implementor API (include/kimg/driver.h, which needs KIMG_DRIVER_API)
# and img/'s internal headers; tests and fuzz targets everything, from the
# top (e.g. "formats/qcow2/qcow2.h").
INC_PUBLIC := -Iinclude
INC_LIB    := -Iinclude -Iimg -Ilazylib -DKIMG_DRIVER_API
INC_TEST   := -I. $(INC_LIB)
INC        = $(INC_TEST)
CFLAGS  += -std=gnu11 $(OPT) $(PICFLAGS) $(WARN) $(SANFLAGS) -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 \
           $(INC) $(XML_CFLAGS) -MMD -MP
# libnbd, libxml2, libcrypto and nettle are not linked: lazylib/ loads them
# on first use (dlopen, in libc since glibc 2.34; -ldl for older ones is
# harmless).  Their headers are still needed to build (libssl-dev,
# nettle-dev: lazylib/crypto_api.h and nettle_api.h type the tables).
LDLIBS  += -lzstd -ldeflate -lz -laio -luuid -lisal -ljansson -lpthread -ldl
LDFLAGS += $(SANFLAGS)

# ---- the installable library: names, public headers, directories ----
# VERSION is the command's (cmd/main.c).  The soname's major number
# (SO_MAJOR) changes when a change to the public headers breaks programs
# built against an older libkimg.so.
VERSION  := $(shell sed -n 's/^.define KIMG_VERSION "\(.*\)"$$/\1/p' cmd/main.c)
SO_MAJOR := 0
SO_NAME  := libkimg.so.$(SO_MAJOR)
SO_REAL  := libkimg.so.$(VERSION)
# What a library user includes; installed as $(INCLUDEDIR)/kimg.h and
# $(INCLUDEDIR)/kimg/NAME.h (so "kimg.h" and "kimg/NAME.h" resolve), and
# the declarations libkimg.so exports (mk/public-symbols.sh).  The
# implementor API (include/kimg/driver.h, file.h) is not installed: drivers
# are built into libkimg, so nothing outside it could use it.
PUBLIC_HEADERS := include/kimg.h $(addprefix include/kimg/,opts.h json.h output.h \
                  convert.h compare.h checksum.h)
header_dest = $(patsubst include/%,%,$(1))

BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# The manual: one page, kimg(1), with a section per command, written in
# POD (man/kimg.pod) and made by pod2man (Debian's perl); tests/cli/096
# checks it against every `kimg CMD --help` and renders it for warnings.
MAN_PAGES  := $(B)/man/kimg.1
# bash completion (completion/kimg.bash): where bash-completion looks for
# it, else under PREFIX (no pkg-config or no bash-completion installed)
BASHCOMPDIR ?= $(or $(shell pkg-config --variable=completionsdir bash-completion 2>/dev/null),$(PREFIX)/share/bash-completion/completions)

LIB_SRC  := $(sort $(wildcard img/*.c formats/*/*.c protocols/*/*.c clone/*.c lazylib/*.c))
CMD_SRC  := $(sort $(wildcard cmd/*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/*.c))
FUZZ_TARGETS := $(sort $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c)))

LIB_OBJ  := $(LIB_SRC:%.c=$(B)/%.o)
CMD_OBJ  := $(CMD_SRC:%.c=$(B)/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
REPLAY_BIN := $(FUZZ_TARGETS:%=$(B)/fuzz/replay_%)

# ---- the nbdkit plugin (plugins/nbdkit/), built where <nbdkit-plugin.h>
# is: libkimg.a linked in (one self-contained file in nbdkit's plugin
# folder, whatever LIBDIR is), the public API alone (-Iinclude), and only
# nbdkit's entry point exported (plugins/nbdkit/plugin.map).
HAVE_NBDKIT := $(shell echo '\#include <nbdkit-plugin.h>' | $(CC) -E -x c - > /dev/null 2>&1 && echo 1)
NBDKIT_PLUGINDIR ?= $(or $(shell pkg-config --variable=plugindir nbdkit 2>/dev/null),$(LIBDIR)/nbdkit/plugins)
NBDKIT_PLUGIN := $(if $(HAVE_NBDKIT),$(B)/plugins/nbdkit-kimg-plugin.so)

.PHONY: all man check check-slow check-ciphers fuzz bench deps install uninstall clean FORCE
# keep objects built through pattern chains (tests, fuzz replays)
.SECONDARY:
all: $(B)/kimg $(B)/libkimg.a $(B)/$(SO_REAL) $(B)/kimg.pc $(NBDKIT_PLUGIN) $(MAN_PAGES)

man: $(MAN_PAGES)
# --errors=die: a POD mistake fails the build
$(B)/man/%.1: man/%.pod cmd/main.c
	@mkdir -p $(dir $@)
	pod2man --section=1 --center="kimg manual" --release="kimg $(VERSION)" \
	    --name=$(shell echo $* | tr a-z A-Z) --errors=die $< $@.tmp && mv $@.tmp $@

# The nbdkit plugin (see NBDKIT_PLUGIN above).
$(B)/plugins/%.o: INC = $(INC_PUBLIC)
$(B)/plugins/nbdkit-kimg-plugin.so: $(B)/plugins/nbdkit/kimg.o $(B)/libkimg.a plugins/nbdkit/plugin.map
	$(CC) $(LDFLAGS) -shared -Wl,--version-script,plugins/nbdkit/plugin.map -o $@ \
	    $(B)/plugins/nbdkit/kimg.o $(B)/libkimg.a $(LDLIBS)
$(B)/plugins/nbdkit/kimg.o: CFLAGS += -DKIMG_VERSION='"$(VERSION)"'

# Objects depend on the flags that shape their code: a tree built before
# a change to them (-fPIC for libkimg.so) is rebuilt, not linked stale.
CODEGEN_FLAGS = $(CC) $(OPT) $(PICFLAGS) $(SANFLAGS)
$(B)/codegen.flags: FORCE
	@mkdir -p $(dir $@)
	@echo '$(CODEGEN_FLAGS)' | cmp -s - $@ || echo '$(CODEGEN_FLAGS)' > $@

$(B)/cmd/%.o: INC = $(INC_PUBLIC)
$(B)/clone/%.o: INC = $(INC_PUBLIC) -Ilazylib
$(B)/img/%.o $(B)/formats/%.o $(B)/protocols/%.o $(B)/lazylib/%.o: INC = $(INC_LIB)
$(B)/%.o: %.c $(B)/codegen.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/libkimg.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# ---- the installable library ----
# The version script: only what PUBLIC_HEADERS declare is exported.
$(B)/libkimg.map: $(PUBLIC_HEADERS) mk/public-symbols.sh
	@mkdir -p $(dir $@)
	CC="$(CC)" mk/public-symbols.sh map $(PUBLIC_HEADERS) > $@.tmp && mv $@.tmp $@

$(B)/$(SO_REAL): $(LIB_OBJ) $(B)/libkimg.map
	$(CC) $(LDFLAGS) -shared -Wl,-soname,$(SO_NAME) -Wl,--version-script,$(B)/libkimg.map \
	    -Wl,--no-undefined -o $@ $(LIB_OBJ) $(LDLIBS)
	ln -sf $(SO_REAL) $(B)/$(SO_NAME)
	ln -sf $(SO_NAME) $(B)/libkimg.so

# Written on every run: PREFIX and the directories may differ between
# `make` and `make install`.  ${prefix}-relative where they allow it, so
# pkg-config --define-prefix can relocate an unpacked tree.  `make
# install` writes its own copy straight into DESTDIR and nothing into
# $(B)/: several installs at once (tests 093, 096 and 097 under make
# check's prove -j, each with its own PREFIX) raced on one
# $(B)/kimg.pc.tmp ("mv: cannot stat") and installed each other's prefix.
pc_dir = $(if $(filter $(PREFIX)/%,$(1)),$${prefix}$(patsubst $(PREFIX)%,%,$(1)),$(1))
pc_gen = sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(call pc_dir,$(LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(call pc_dir,$(INCLUDEDIR))|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@LIBS_PRIVATE@|$(strip $(LDLIBS))|' mk/kimg.pc.in
$(B)/kimg.pc: mk/kimg.pc.in FORCE
	@mkdir -p $(dir $@)
	@$(pc_gen) > $@.tmp.$$$$ && mv $@.tmp.$$$$ $@

$(B)/kimg: $(CMD_OBJ) $(B)/libkimg.a
	$(CC) $(LDFLAGS) -o $@ $(CMD_OBJ) $(B)/libkimg.a $(LDLIBS)

$(B)/tests/%: $(B)/tests/unit/%.o $(B)/libkimg.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(B)/libkimg.a $(LDLIBS)

# The tests' qemu-img loads this (tests/cli/shim/): no sanitizer in it.
$(B)/tests/fastclock.so: tests/cli/shim/fastclock.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -Wextra -Werror -fPIC -shared -o $@ $< -ldl

# Fuzz targets built with a replay main (no libFuzzer) so corpora run in check.
$(B)/fuzz/replay_%: $(B)/fuzz/%.o $(B)/fuzz/replay_main.o $(B)/libkimg.a
	$(CC) $(LDFLAGS) -o $@ $< $(B)/fuzz/replay_main.o $(B)/libkimg.a $(LDLIBS)

# The test scripts find the binaries through these variables.
export KIMG := $(abspath $(B)/kimg)
export KIMG_BUILD := $(abspath $(B))
export KIMG_SRC := $(abspath .)
# ... and test 093 builds the example against an installed libkimg with these.
export KIMG_CC := $(CC)
export KIMG_SANFLAGS := $(SANFLAGS)

# Every test, unit tests too, runs qemu-img through tests/cli/shim (its
# LUKS benchmark shortened and its flake retried: tests/cli/README.md).
TEST_ENV = KIMG_REAL_QEMU_IMG="$$(command -v qemu-img)" PATH="$(abspath tests/cli/shim):$$PATH"
check: all $(UNIT_BIN) $(REPLAY_BIN) $(B)/tests/fastclock.so
	@echo "== kimg tests ($(B)) with $$(qemu-img --version | head -1)"
	$(TEST_ENV) prove -j$(CHECK_JOBS) --timer $(UNIT_BIN) tests/cli/*.t fuzz/replay.t

# The rest of the test cases (.ci/run runs them after check).  `make
# check` runs every file, but each file's repeated cases in a sample
# (tests/cli/lib.sh "tiers": a third of each matrix with `sampled`, crash
# points 0-3, 12 and doubling with `crash_next`); here the
# files that sample run the cases check left out (KIMG_TEST_PART=rest),
# so check and check-slow together run every case once.  Then every crash
# test under the power-failure model (tests/cli/190: each simulated crash
# also loses a random subset of the unsynced writes), one seed per part:
# the first seed at check's crash points, the second at the rest.  And
# test 188's other 12 of the 17 cipher combinations check samples (check
# runs 5 that meet every cipher family, key size, mode and IV generator).
TIER_SAMPLED := $(shell grep -l -e sampled -e slow_part -e crash_next -e crash_points -e KIMG_TEST_PART tests/cli/*.t)
SLOW_SEEDS ?= 1 2
check-slow: all $(B)/tests/fastclock.so
	@echo "== the cases check leaves out (KIMG_TEST_PART=rest)"
	KIMG_TEST_PART=rest $(TEST_ENV) prove -j$(CHECK_JOBS) --timer $(TIER_SAMPLED)
	@part=quick; for s in $(SLOW_SEEDS); do \
	    echo "== power-failure crash loops, seed $$s, $$part crash points"; \
	    KIMG_TEST_PART=$$part KIMG_CRASH_SEED=$$s $(TEST_ENV) prove --timer tests/cli/190-crash-power-loss.t || exit 1; \
	    if [ $$part = quick ]; then part=rest; else part=quick; fi; \
	done
	KIMG_TEST_MORE=1 $(TEST_ENV) prove --timer tests/cli/188-luks-ciphers.t

# All 87 LUKS cipher/mode/IV-generator combinations qemu-img 7.2 creates
# (check runs 5 of them, check-slow 12 more; each one costs qemu's PBKDF2 benchmark, so
# this takes about 8 minutes and is not part of .ci/run).
check-ciphers: all $(B)/tests/fastclock.so
	KIMG_LUKS_ALL=1 prove --timer tests/cli/188-luks-ciphers.t

# ---- fuzzing (clang + libFuzzer) ----
FUZZ_CC ?= clang
FUZZ_B  := build-fuzz
# -MMD -MP: rebuild when a header changes (a stale object with an old
# struct layout gave false crashes); no UBSan recovery: UB is a crash.
FUZZ_CFLAGS := -std=gnu11 -O1 -g -fsanitize=fuzzer-no-link,address,undefined \
               -fno-sanitize-recover=undefined \
               -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 $(INC_TEST) $(XML_CFLAGS) -MMD -MP
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_B)/%.o)

$(FUZZ_B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_B)/%: $(FUZZ_B)/fuzz/%.o $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

# FUZZ_JOBS targets at a time, one core each (mk/fuzz-run.sh).
FUZZ_JOBS ?= 2
fuzz: $(FUZZ_TARGETS:%=$(FUZZ_B)/%)
	mk/fuzz-run.sh $(FUZZ_B) $(FUZZ_SECONDS) $(FUZZ_JOBS) $(FUZZ_TARGETS)

bench: all $(B)/bench-floor $(B)/bench-calib
	KIMG=$(abspath $(B)/kimg) FLOOR=$(abspath $(B)/bench-floor) \
	  CALIB=$(abspath $(B)/bench-calib) tests/bench/run.sh

$(B)/bench-floor: tests/bench/floor.c
	$(CC) -O2 -Wall -Wextra -pthread -o $@ $<

$(B)/bench-calib: tests/bench/calib.c
	$(CC) -O2 -Wall -Wextra -o $@ $<

deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_PACKAGES)

install: all
	install -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	    $(DESTDIR)$(INCLUDEDIR)/kimg
	install -m 0755 $(B)/kimg $(DESTDIR)$(BINDIR)/kimg
	install -m 0644 $(B)/libkimg.a $(DESTDIR)$(LIBDIR)/libkimg.a
	install -m 0755 $(B)/$(SO_REAL) $(DESTDIR)$(LIBDIR)/$(SO_REAL)
	ln -sf $(SO_REAL) $(DESTDIR)$(LIBDIR)/$(SO_NAME)
	ln -sf $(SO_NAME) $(DESTDIR)$(LIBDIR)/libkimg.so
	$(pc_gen) > $(DESTDIR)$(PKGCONFIGDIR)/kimg.pc && chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/kimg.pc
	$(foreach h,$(PUBLIC_HEADERS),install -m 0644 $(h) $(DESTDIR)$(INCLUDEDIR)/$(call header_dest,$(h)) &&) true
	install -d -m 0755 $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR)
	install -m 0644 $(MAN_PAGES) $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 completion/kimg.bash $(DESTDIR)$(BASHCOMPDIR)/kimg
	$(if $(NBDKIT_PLUGIN),install -d -m 0755 $(DESTDIR)$(NBDKIT_PLUGINDIR) && \
	    install -m 0755 $(NBDKIT_PLUGIN) $(DESTDIR)$(NBDKIT_PLUGINDIR)/nbdkit-kimg-plugin.so)

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/kimg $(DESTDIR)$(LIBDIR)/libkimg.a $(DESTDIR)$(LIBDIR)/libkimg.so \
	    $(DESTDIR)$(LIBDIR)/$(SO_NAME) $(DESTDIR)$(LIBDIR)/$(SO_REAL) $(DESTDIR)$(PKGCONFIGDIR)/kimg.pc \
	    $(foreach h,$(PUBLIC_HEADERS),$(DESTDIR)$(INCLUDEDIR)/$(call header_dest,$(h))) \
	    $(foreach m,$(MAN_PAGES),$(DESTDIR)$(MANDIR)/man1/$(notdir $(m))) \
	    $(DESTDIR)$(BASHCOMPDIR)/kimg \
	    $(DESTDIR)$(NBDKIT_PLUGINDIR)/nbdkit-kimg-plugin.so
	-rmdir $(DESTDIR)$(INCLUDEDIR)/kimg 2>/dev/null

clean:
	rm -rf build build-san build-fuzz

-include $(shell find build build-san build-fuzz -name '*.d' 2>/dev/null)
