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
	gcc make pkg-config iproute2 python3 python3-matplotlib time valgrind xz-utils

.PHONY: all deps build shim test test-rust test-c lint fuzz-smoke demo install clean

all: build

deps:
	@scripts/install-deps.sh $(DEB_PACKAGES)

build: deps
	$(CARGO) build --release --workspace --all-targets
	scripts/link-shims.sh
	$(MAKE) -C capi-tests OUT=$(abspath $(or $(CARGO_TARGET_DIR),target))/capi-tests

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Formatting and clippy are part of the tests: CI fails on either.
test: build lint
	$(CARGO) test --release --workspace
	scripts/run-c-tests.sh
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
.PHONY: bench bench-smoke
# Debian's interpreter: python3-matplotlib is installed for it.
BENCH_PYTHON ?= /usr/bin/python3
bench: build
	$(BENCH_PYTHON) bench/xcmig_bench.py $(BENCH_ARGS)

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

# make install PREFIX=... [DESTDIR=...]: libxcmig (with its soname links),
# include/xcmig.h and xcmig.pc, from the library `make build` produced.
XCMIG_SO ?= $(abspath $(or $(CARGO_TARGET_DIR),target))/release/libxcmig.so
XCMIG_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include

install:
	@test -f "$(XCMIG_SO)" || { echo "install: $(XCMIG_SO) not found; run make build first" >&2; exit 1; }
	install -d "$(DESTDIR)$(LIBDIR)/pkgconfig" "$(DESTDIR)$(INCLUDEDIR)"
	install -m 0755 "$(XCMIG_SO)" "$(DESTDIR)$(LIBDIR)/libxcmig.so.$(XCMIG_VERSION)"
	ln -sfn "libxcmig.so.$(XCMIG_VERSION)" "$(DESTDIR)$(LIBDIR)/libxcmig.so.0"
	ln -sfn libxcmig.so.0 "$(DESTDIR)$(LIBDIR)/libxcmig.so"
	install -m 0644 include/xcmig.h "$(DESTDIR)$(INCLUDEDIR)/xcmig.h"
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(XCMIG_VERSION)|g' \
	    pkgconfig/xcmig.pc.in > "$(DESTDIR)$(LIBDIR)/pkgconfig/xcmig.pc"

clean:
	$(CARGO) clean
