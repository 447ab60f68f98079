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
	gcc make pkg-config iproute2 python3

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

test: build
	$(CARGO) test --release --workspace
	scripts/run-c-tests.sh
	scripts/fuzz-smoke.sh

demo: build
	scripts/demo.sh

clean:
	$(CARGO) clean
