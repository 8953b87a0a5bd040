# Convenience targets; the real work is in the scripts they call.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: deps build deb image demo demo-stop test

deps: ## Debian packages for build, demo and tests (root)
	.ci/deps

build: ## release binaries: target/release/hostlet and target/release/hostlet-monitor
	cargo build --release

deb: ## the Debian package: target/debian/hostlet_VERSION-1_amd64.deb (packaging/README.md)
	packaging/build-deb.sh

image: ## busybox test image as an OCI layout: target/demo-image/layout
	rootfs/build.sh target/demo-image

demo: deps ## registry on 127.0.0.1:5055 + hostlet running testdata/demo/*.yaml (root)
	rootfs/demo.sh

demo-stop:
	rootfs/demo.sh stop

test: ## what CI runs: apt packages, fmt, clippy, all tests (root)
	.ci/run
