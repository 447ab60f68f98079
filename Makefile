# xcmig: build, test and demo entry points.
#
#   make test   installs what a fresh Debian 12 machine lacks (as root), builds
#               everything and runs every test.
#   make demo   live-migrates a simulated HVM guest between two simulated hosts.

SHELL := /bin/bash
CARGO ?= cargo
PREFIX ?= /usr/local
# Debian packages the build and the tests need; installed only when missing.
DEB_PACKAGES := libxen-dev libclang-dev xen-utils-4.17 libxenmisc4.17 xen-doc \
	libzstd-dev gcc make pkg-config iproute2 python3 python3-matplotlib time valgrind xz-utils \
	debhelper dpkg-dev lintian abigail-tools man-db groff-base bash-completion zsh \
	lz4 zstd

.PHONY: all deps build lib shim test test-rust test-c lint fuzz-smoke demo install install-strip uninstall clean

all: build

deps:
	@scripts/install-deps.sh $(DEB_PACKAGES)

build: deps
	$(CARGO) build --release --workspace --all-targets
	scripts/link-lib.sh
	scripts/link-shims.sh
	$(MAKE) -C capi-tests OUT=$(abspath $(or $(CARGO_TARGET_DIR),target))/capi-tests

# Only what `make install` ships: the library (staticlib linked into
# libxcmig.so with its version nodes), the xcmig and xensim commands and the
# shim libraries. No tests, no apt: for package builds and users who have
# the build dependencies already.
lib:
	$(CARGO) build --release -p xcmig -p xcmig-cli -p xensim -p xensim-shim $(CARGO_BUILD_FLAGS)
	scripts/link-lib.sh
	scripts/link-shims.sh

# The exported interface against the previous release's (abi/libxcmig.so.0.abi;
# also in `make test`); `make abi-baseline` rewrites it at a release.
.PHONY: abi-check abi-baseline
abi-check: lib
	scripts/abi-check.sh --self-test
abi-baseline: lib
	scripts/abi-check.sh --update

# Copies every crate the workspace needs into vendor/ (with a stamp), so
# that cargo with --offline and vendor/ as the crates.io source
# (debian/rules) builds without the network. The one step that needs it.
.PHONY: vendor deb
vendor:
	$(CARGO) vendor --locked --versioned-dirs vendor >/dev/null
	$(CARGO) --version > vendor/.stamp

# The Debian packages into ../ (see debian/README.source).
deb: vendor
	dpkg-buildpackage -us -uc -b

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Formatting and clippy are part of the tests: CI fails on either.
test: build lint
	$(CARGO) test --release --workspace
	scripts/run-c-tests.sh
	scripts/abi-check.sh --self-test
	scripts/header-check.sh
	scripts/package-test.sh
	scripts/fuzz-smoke.sh
	$(BENCH_PYTHON) bench/test_bench.py

# make fuzz [FUZZ_SECONDS=3600 FUZZ_JOBS=2 FUZZ_TARGETS="..."]: every
# cargo-fuzz target in fuzz/Cargo.toml for FUZZ_SECONDS each, FUZZ_JOBS at
# a time; minimises each corpus back into fuzz/corpus/TARGET and appends the
# run to fuzz/results.md (see fuzz/README.md). Fails on any crash or timeout.
.PHONY: fuzz fuzz-seeds
fuzz: build
	FUZZ_SECONDS=$(or $(FUZZ_SECONDS),3600) FUZZ_JOBS=$(or $(FUZZ_JOBS),2) scripts/fuzz-campaign.sh

# Rewrites the seed-* streams of the whole-restore targets
# (fuzz/corpus/restore_*) from saves by both engines on xensim.
fuzz-seeds: build
	$(CARGO) test --release -p xcmig --test fuzz_seeds -- --ignored --nocapture

# The full fault sweep (tests/capi_fault_sweep.rs): every (fault point, call
# index) pair of a non-live, live and Remus save and a restore of each guest
# type failed in turn; writes bench/results/fault-sweep.md. `make test` runs
# the short form (each point at its first, second and last index).
.PHONY: fault-sweep
fault-sweep: build
	XCMIG_FAULT_SWEEP=full XCMIG_FAULT_SWEEP_RESULTS=$(abspath bench/results/fault-sweep.md) \
		nice -n 10 $(CARGO) test --release -p xcmig --test capi_fault_sweep -- --nocapture --test-threads 2

# make demo DEMO_ARGS="--memory 4G --dirty-rate 200" passes options on.
demo: build
	scripts/demo.sh $(DEMO_ARGS)

# make bench [BENCH_ARGS="--runs 5 | --quick | --scenario NAME ..."]: xcmig
# (preloaded) and Debian's libxenguest side by side on xensim; writes
# bench/results/results.md, results.json and plot.png (see bench/README.md).
# Then the link scenarios (bench-link).
.PHONY: bench bench-smoke bench-link
# Debian's interpreter: python3-matplotlib is installed for it.
BENCH_PYTHON ?= /usr/bin/python3
bench: build
	$(BENCH_PYTHON) bench/xcmig_bench.py $(BENCH_ARGS)
	$(BENCH_PYTHON) bench/link.py $(LINK_ARGS)

# make bench-link [LINK_ARGS="--runs 3 | --quick | --scenario link-1g ..."]
# (root): migrations of a realistic 2 GiB guest over a TCP link between two
# network namespaces shaped by tc to 1 and 10 Gbit/s, for libxenguest,
# xcmig and xcmig with XCMIG_COMPRESS=lz4/zstd/auto, and the same guest
# saved to a file; writes bench/results/link.md, link.json and link.png.
bench-link: build
	$(BENCH_PYTHON) bench/link.py $(LINK_ARGS)

# The benchmark's own tests, including a --quick run into a temporary
# directory (about 30 s; also part of `make test`).
bench-smoke: build
	$(BENCH_PYTHON) bench/test_bench.py

# The network-failure cases (root): link cut, receiver killed, sender
# killed, xcmig and libxenguest; the test writes
# bench/results/network-failures.md (also part of `make test`, which writes
# only target/network-failures.md).
.PHONY: network-failures
network-failures: build
	XCMIG_UPDATE_RESULTS=1 $(CARGO) test --release -p xcmig --test capi_network -- --nocapture

# make soak [SOAK_HOPS=1000 SOAK_CYCLES=500 SOAK_MEMORY=128M ...]: 1000 live
# migrations of one guest between two xensim hosts through every saver x
# restorer pair of xcmig and libxenguest, and 500 save/restore cycles in one
# process with its descriptors and RSS sampled; writes bench/results/soak.md
# and its CSV series (tests/capi_soak.rs; its short form is in `make test`).
.PHONY: soak
soak: build
	$(CARGO) test --release -p xcmig --test capi_soak -- --ignored --nocapture full_soak

# make install [PREFIX=/usr/local] [DESTDIR=...] [LIBDIR=...]: what
# `make lib` (or `make build`) built; see README.md "Install".
#   LIBDIR      $(PREFIX)/lib/<multiarch> on Debian and derivatives (from
#               dpkg-architecture, else gcc -print-multiarch), else $(PREFIX)/lib
#   libxcmig.so.VERSION with its soname and dev links, libxcmig.a,
#   xcmig.h, xcmig.pc (pinned to the Xen release the library was linked
#   for), the xcmig and xensim commands, xensim's shim libraries in the
#   private $(LIBDIR)/xcmig/xensim (never on the default library path), man
#   pages and bash/zsh completions.
# make install-strip: the same without debug information.
# make uninstall: removes exactly what install put there.
TARGET_DIR := $(abspath $(or $(CARGO_TARGET_DIR),target))
XCMIG_SO ?= $(TARGET_DIR)/release/libxcmig.so
XCMIG_A ?= $(TARGET_DIR)/release/libxcmig.a
XCMIG_BIN ?= $(TARGET_DIR)/release/xcmig
XENSIM_BIN ?= $(TARGET_DIR)/release/xensim
SHIM_DIR ?= $(TARGET_DIR)/xensim/lib
XCMIG_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MULTIARCH := $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || $(or $(CC),cc) -print-multiarch 2>/dev/null)
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib$(if $(MULTIARCH),/$(MULTIARCH))
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/vendor-completions
XENSIM_LIBDIR ?= $(LIBDIR)/xcmig/xensim
# REALNAME:SONAME, as scripts/link-shims.sh links them.
SHIM_LINKS := libxencall.so.1.3:libxencall.so.1 libxenforeignmemory.so.1.4:libxenforeignmemory.so.1 \
	libxenevtchn.so.1.2:libxenevtchn.so.1 libxenctrl.so.4.17.0:libxenctrl.so.4.17
SHIMS := $(foreach l,$(SHIM_LINKS),$(firstword $(subst :, ,$(l))))
MANPAGES := docs/man/xcmig.1 docs/man/xensim.1 docs/man/libxcmig.7
INSTALL ?= install
INSTALL_STRIP ?=
STRIP ?= strip

install:
	@for f in "$(XCMIG_SO)" "$(XCMIG_A)" "$(XCMIG_BIN)" "$(XENSIM_BIN)" "$(SHIM_DIR)/libxenctrl.so.4.17.0"; do \
	    test -f "$$f" || { echo "install: $$f not found; run make lib (or make build) first" >&2; exit 1; }; done
	@test -f "$(XCMIG_SO:.so=.xen-version)" || { echo "install: $(XCMIG_SO:.so=.xen-version) not found; run scripts/link-lib.sh" >&2; exit 1; }
	$(INSTALL) -d "$(DESTDIR)$(LIBDIR)/pkgconfig" "$(DESTDIR)$(INCLUDEDIR)" "$(DESTDIR)$(BINDIR)" \
	    "$(DESTDIR)$(XENSIM_LIBDIR)" "$(DESTDIR)$(MANDIR)/man1" "$(DESTDIR)$(MANDIR)/man7" \
	    "$(DESTDIR)$(BASHCOMPDIR)" "$(DESTDIR)$(ZSHCOMPDIR)"
	$(INSTALL) -m 0644 "$(XCMIG_SO)" "$(DESTDIR)$(LIBDIR)/libxcmig.so.$(XCMIG_VERSION)"
	ln -sfn "libxcmig.so.$(XCMIG_VERSION)" "$(DESTDIR)$(LIBDIR)/libxcmig.so.0"
	ln -sfn libxcmig.so.0 "$(DESTDIR)$(LIBDIR)/libxcmig.so"
	$(INSTALL) -m 0644 "$(XCMIG_A)" "$(DESTDIR)$(LIBDIR)/libxcmig.a"
	$(INSTALL) -m 0644 include/xcmig.h "$(DESTDIR)$(INCLUDEDIR)/xcmig.h"
	xen=$$(cat "$(XCMIG_SO:.so=.xen-version)"); \
	next=$$(echo "$$xen" | awk -F. '{print $$1 "." $$2 + 1}'); \
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(XCMIG_VERSION)|g' \
	    -e "s|@XEN_VERSION@|$$xen|g" -e "s|@XEN_NEXT@|$$next|g" \
	    pkgconfig/xcmig.pc.in > "$(DESTDIR)$(LIBDIR)/pkgconfig/xcmig.pc"
	$(INSTALL) -m 0755 $(INSTALL_STRIP) "$(XCMIG_BIN)" "$(DESTDIR)$(BINDIR)/xcmig"
	$(INSTALL) -m 0755 $(INSTALL_STRIP) "$(XENSIM_BIN)" "$(DESTDIR)$(BINDIR)/xensim"
	for l in $(SHIM_LINKS); do \
	    real=$${l%%:*}; soname=$${l#*:}; \
	    $(INSTALL) -m 0644 "$(SHIM_DIR)/$$real" "$(DESTDIR)$(XENSIM_LIBDIR)/$$real"; \
	    ln -sfn "$$real" "$(DESTDIR)$(XENSIM_LIBDIR)/$$soname"; \
	done
	$(INSTALL) -m 0644 docs/man/xcmig.1 docs/man/xensim.1 "$(DESTDIR)$(MANDIR)/man1/"
	$(INSTALL) -m 0644 docs/man/libxcmig.7 "$(DESTDIR)$(MANDIR)/man7/"
	"$(XCMIG_BIN)" completions bash > "$(DESTDIR)$(BASHCOMPDIR)/xcmig"
	"$(XENSIM_BIN)" completions bash > "$(DESTDIR)$(BASHCOMPDIR)/xensim"
	"$(XCMIG_BIN)" completions zsh > "$(DESTDIR)$(ZSHCOMPDIR)/_xcmig"
	"$(XENSIM_BIN)" completions zsh > "$(DESTDIR)$(ZSHCOMPDIR)/_xensim"
	if [ -n "$(INSTALL_STRIP)" ]; then \
	    $(STRIP) --strip-unneeded "$(DESTDIR)$(LIBDIR)/libxcmig.so.$(XCMIG_VERSION)" $(addprefix "$(DESTDIR)$(XENSIM_LIBDIR)/,$(addsuffix ",$(SHIMS))); \
	    $(STRIP) --strip-debug "$(DESTDIR)$(LIBDIR)/libxcmig.a"; \
	fi

install-strip:
	$(MAKE) install INSTALL_STRIP=-s

uninstall:
	rm -f "$(DESTDIR)$(LIBDIR)/libxcmig.so.$(XCMIG_VERSION)" "$(DESTDIR)$(LIBDIR)/libxcmig.so.0" \
	    "$(DESTDIR)$(LIBDIR)/libxcmig.so" "$(DESTDIR)$(LIBDIR)/libxcmig.a" \
	    "$(DESTDIR)$(LIBDIR)/pkgconfig/xcmig.pc" "$(DESTDIR)$(INCLUDEDIR)/xcmig.h" \
	    "$(DESTDIR)$(BINDIR)/xcmig" "$(DESTDIR)$(BINDIR)/xensim" \
	    "$(DESTDIR)$(MANDIR)/man1/xcmig.1" "$(DESTDIR)$(MANDIR)/man1/xensim.1" \
	    "$(DESTDIR)$(MANDIR)/man7/libxcmig.7" \
	    "$(DESTDIR)$(BASHCOMPDIR)/xcmig" "$(DESTDIR)$(BASHCOMPDIR)/xensim" \
	    "$(DESTDIR)$(ZSHCOMPDIR)/_xcmig" "$(DESTDIR)$(ZSHCOMPDIR)/_xensim"
	for l in $(SHIM_LINKS); do \
	    rm -f "$(DESTDIR)$(XENSIM_LIBDIR)/$${l%%:*}" "$(DESTDIR)$(XENSIM_LIBDIR)/$${l#*:}"; \
	done
	-rmdir "$(DESTDIR)$(XENSIM_LIBDIR)" "$(DESTDIR)$(LIBDIR)/xcmig" 2>/dev/null

clean:
	$(CARGO) clean
