# The one place that knows apt, clang and the commands. `make run` and `make test` are all a newcomer needs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
CONFIG ?= config/sbc.toml
# Where cargo puts its builds (CARGO_TARGET_DIR when set).
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
# `make install`: PREFIX and DESTDIR as usual (DESTDIR stages a package: no user is created then).
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR ?= /etc/systemd/system
STATEDIR ?= /var/lib/sbc
# Debian packages the tests need: SIPp and baresip as real SIP peers, nodejs and npm for JsSIP (a real SIP-over-
# WebSocket peer, installed into tests/js by `make deps`), chromium as the browser of tests/js/browser.js
# (driven by puppeteer-core, JsSIP in the page), sipvicious (scans), iproute2 for network
# namespaces, clang/libbpf for eBPF, tshark (its dumpcap) for packet captures; stunnel4 puts TLS in front of SIPp
# (Debian builds SIPp without OpenSSL, so its -t l1 is not there) and openssl checks served certificates; rtpengine-daemon
# (10.5) is also the reference relay of `sbc-bench media --paths rtpengine` and its test. prometheus brings promtool,
# which checks and unit-tests the alert rules (`make ops-check`); its service is kept from starting like the others;
# systemd brings systemd-analyze, which verifies the units in ops/systemd/ (a container image may lack it).
# Kamailio (with the dialog, topos and rtpengine modules; topos keeps its state in Redis) and rtpengine are the
# `kamailio-rtpengine` target of `sbc-bench cps` (make bench), started by the harness in its own namespaces; it
# uses none of their packaged services: `make deps` installs with a policy-rc.d that keeps Debian from starting them
# (Kamailio's would take 5060, Redis's 6379 on this host), unless the host already has a policy-rc.d of its own.
DEB_PACKAGES := clang llvm libbpf-dev sip-tester iproute2 ethtool iputils-arping sipvicious baresip tshark stunnel4 openssl dnsmasq-base curl \
	kamailio kamailio-extra-modules kamailio-redis-modules redis-server rtpengine-daemon prometheus systemd \
	chromium
FUZZ_SECONDS ?= 60
# `make test` runs every fuzz target this long (CI exercises them; `make fuzz` is the real run).
FUZZ_TEST_SECONDS ?= 20
FUZZ_TARGETS := parse_message endpoint_calls
# A call-logic scenario needs many steps to reach deep call states: long inputs from the start.
FUZZ_ARGS_endpoint_calls := -len_control=0 -max_len=2048

.PHONY: help run call install build deps test ops-check unit lint fmt bench bench-parse fuzz fuzz-setup ebpf clean

help:
	@echo "make run     build and start the SBC on $(CONFIG) (Ctrl-C stops it)"
	@echo "make call    with \`make run\` up: one call with RTP both ways through it (SIPp caller and carrier), its CDR"
	@echo "make install release binaries, systemd units (ops/systemd), /etc/sbc/sbc.toml, /var/lib/sbc, user sbc (as root; PREFIX, DESTDIR)"
	@echo "make test    install test dependencies (Debian, as root) and run every test"
	@echo "make lint    rustfmt check and clippy with warnings as errors"
	@echo "make bench   the load-test suite as root: cps (vs SIPp direct, vs Kamailio+rtpengine), ng (Kamailio + rtpengine vs Kamailio + our relay), overload, concurrent, media (user space, SRTP, XDP, bare, kernel, rtpengine), failover, webrtc (DTLS handshakes/s, DTLS-SRTP vs plain relay CPU) (target/bench/)"
	@echo "make bench-parse  criterion: the SIP parser against ezk-sip-types"
	@echo "make fuzz    run each fuzzer ($(FUZZ_TARGETS)) for FUZZ_SECONDS (default $(FUZZ_SECONDS))"

run:
	$(CARGO) build --release -p sbc --bin sbc --bin sbcctl
	exec $(TARGET_DIR)/release/sbc --config $(CONFIG)

# The demo call against `make run`'s default config (scripts/demo-call says what it does; tests/tests/demo_call.rs
# runs both in a namespace).
call:
	scripts/demo-call

# The service install (README, "Installing as a service"). The config is the demo's with CDRs in $(STATEDIR); an
# existing /etc/sbc/sbc.toml is never overwritten. The units name $(BINDIR). sbcctl goes along once it is built.
install:
	$(CARGO) build --release -p sbc -p media-relay --bins
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/sbc
	install -m 0755 $(TARGET_DIR)/release/sbc $(TARGET_DIR)/release/media-relay $(DESTDIR)$(BINDIR)/
	if [ -x $(TARGET_DIR)/release/sbcctl ]; then install -m 0755 $(TARGET_DIR)/release/sbcctl $(DESTDIR)$(BINDIR)/; fi
	for unit in sbc media-relay; do \
	  sed 's|/usr/local/bin/|$(BINDIR)/|g' ops/systemd/$$unit.service >$(DESTDIR)$(UNITDIR)/$$unit.service; \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/$$unit.service; \
	done
	if [ -e $(DESTDIR)$(SYSCONFDIR)/sbc/sbc.toml ]; then echo "keeping the existing $(DESTDIR)$(SYSCONFDIR)/sbc/sbc.toml"; \
	else sed 's|^path = "../target/demo/cdr.jsonl"|path = "$(STATEDIR)/cdr.jsonl"|' config/sbc.toml >$(DESTDIR)$(SYSCONFDIR)/sbc/sbc.toml; \
	  chmod 0640 $(DESTDIR)$(SYSCONFDIR)/sbc/sbc.toml; fi
	install -d -m 0750 $(DESTDIR)$(STATEDIR)
	if [ -z "$(DESTDIR)" ]; then \
	  getent passwd sbc >/dev/null || useradd --system --user-group --home-dir $(STATEDIR) --shell /usr/sbin/nologin sbc; \
	  chown sbc:sbc $(STATEDIR); chgrp sbc $(SYSCONFDIR)/sbc $(SYSCONFDIR)/sbc/sbc.toml; \
	  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	  echo "installed: systemctl enable --now sbc"; \
	fi

build:
	$(CARGO) build --workspace --all-targets

deps:
	@missing=(); for p in $(DEB_PACKAGES); do dpkg -s "$$p" >/dev/null 2>&1 || missing+=("$$p"); done; \
	if [ $${#missing[@]} -gt 0 ]; then \
	  if [ "$$(id -u)" -ne 0 ]; then echo "missing Debian packages: $${missing[*]}; run 'make deps' as root" >&2; exit 1; fi; \
	  echo "installing: $${missing[*]}"; \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$${missing[@]}"; \
	fi
	@# Node.js and npm: this kind of machine ships them (nodesource's nodejs, npm included); Debian's own are
	@# installed only where there is none (Debian's npm package conflicts with nodesource's nodejs).
	@if ! command -v npm >/dev/null 2>&1; then \
	  if [ "$$(id -u)" -ne 0 ]; then echo "npm is missing; run 'make deps' as root" >&2; exit 1; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm; fi
	@# JsSIP (and ws, its WebSocket in Node) for the SIP-over-WebSocket tests, puppeteer-core (drives Chromium) and
	@# esbuild (bundles JsSIP for the page) for the browser tests, at the versions of tests/js/package-lock.json.
	@if [ ! -f tests/js/node_modules/jssip/package.json ] || [ ! -f tests/js/node_modules/puppeteer-core/package.json ] \
	  || [ ! -f tests/js/node_modules/esbuild/package.json ]; then npm ci --prefix tests/js --no-audit --no-fund; fi

test: deps lint ops-check
	$(CARGO) test --workspace --all-targets
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_TEST_SECONDS)

# The operations files: the Prometheus alert rules checked and unit-tested (ops/prometheus/alerts_test.yml). The
# dashboard's JSON and the metric names in both are checked by tests/tests/ops_files.rs (part of `cargo test`).
# systemd-analyze verify wants the commands the units name to exist: it checks copies whose paths point at
# stand-ins (the binaries are tested by cargo test), and fails on any complaint about our units, which it only
# warns about (an unknown key, say).
ops-check:
	promtool check rules ops/prometheus/alerts.yml
	promtool test rules ops/prometheus/alerts_test.yml
	dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; mkdir "$$dir/bin"; \
	for unit in sbc media-relay; do \
	  ln -s /bin/true "$$dir/bin/$$unit"; sed "s|/usr/local/bin/|$$dir/bin/|g" ops/systemd/$$unit.service >"$$dir/$$unit.service"; \
	done; \
	out=$$(systemd-analyze verify "$$dir/sbc.service" "$$dir/media-relay.service" 2>&1) || { echo "$$out"; exit 1; }; \
	if grep -E '(sbc|media-relay)\.service' <<<"$$out"; then echo "systemd-analyze verify: the units above have problems"; exit 1; fi; \
	echo "systemd-analyze verify: ops/systemd/sbc.service and media-relay.service OK"

unit:
	$(CARGO) test --workspace --lib

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# The default bench suite (as root, about 12-13 minutes on 2 cores plus the release build: 12 min 10 s measured on 2026-12-07; the Kamailio + rtpengine cps comparison is about 75 s of it, the ng line (Kamailio + rtpengine vs Kamailio + our relay) about 150 s, the line-rate ladder (XDP generator, 1 and 1,000 flows) about 90 s, our program against the reference at 10,000 and 100,000 flows (xdp-maps) about 105 s, xdp-cost about 35 s): short runs of every load scenario against our own
# SBC in network namespaces, each next to its baseline in the same run; JSON, SVG plots and tables under
# target/bench/. The soak is not in it (it is meant to run for hours: see benches/README.md).
bench: deps
	$(CARGO) build --release -p sbc-bench -p sbc -p media-relay -p tests --bins
	mkdir -p target/bench
	target/release/sbc-bench cps --target local --compare direct --runs 1 --step-secs 3 --rates 100,500,1000,1500,2000 --out target/bench/cps.json | tee target/bench/cps.txt
	target/release/sbc-bench cps --target local --compare kamailio-rtpengine --runs 1 --step-secs 3 --rates 200,400,600,800,1000,1500,2000,2500,3000 --out target/bench/cps-kamailio.json | tee target/bench/cps-kamailio.txt
	target/release/sbc-bench ng --runs 1 --rates 200,400,600,800,1000,1200,1500 --calls 50 --media-secs 5 --out target/bench/ng.json | tee target/bench/ng.txt
	target/release/sbc-bench overload --target local --runs 1 --step-secs 3 --ceiling-rates 1000,2000,3000,4000,5000,6000 --ceiling-step-secs 2 --out target/bench/overload.json | tee target/bench/overload.txt
	target/release/sbc-bench concurrent --target local --compare direct --calls 200 --rate 50 --hold-secs 20 --out target/bench/concurrent.json | tee target/bench/concurrent.txt
	target/release/sbc-bench media --local --runs 1 --paths relay,srtp,xdp,bare,kernel,rtpengine --rates 10000,20000,40000,60000,80000 --out target/bench/media.json | tee target/bench/media.txt
	target/release/sbc-bench media --local --generator xdp --paths bare,reference,xdp,kernel,relay --runs 1 --flows 1,1000 --step-secs 1 --rates 250000,500000,1000000,1500000,2000000,3000000 --path-core --relay target/release/media-relay --out target/bench/media-live.json | tee target/bench/media-live.txt
	target/release/sbc-bench media --local --generator xdp --paths reference,xdp-maps,kernel --runs 1 --flows 10000,100000 --step-secs 1 --rates 500000,1000000,1500000,2000000 --path-core --out target/bench/media-live-flows.json | tee target/bench/media-live-flows.txt
	target/release/sbc-bench xdp-cost --rounds 3 --out target/bench/xdp-cost.json | tee target/bench/xdp-cost.txt
	target/release/sbc-bench failover --local --drills 3 --kind kill --out target/bench/failover.json | tee target/bench/failover.txt
	target/release/sbc-bench webrtc --runs 1 --legs 100 --calls 50 --rate 10000 --media-secs 2 --out target/bench/webrtc.json | tee target/bench/webrtc.txt
	@echo "results in target/bench/: cps, cps-kamailio, ng, overload, concurrent, media, media-live, xdp-cost, failover, webrtc (.json every figure, .svg plots, .txt the tables)"

# The parser micro-bench against ezk-sip-types (criterion, results under target/criterion).
bench-parse:
	$(CARGO) bench -p sbc-bench --bench sip_parse

# cargo-fuzz passes nightly-only -Z flags; RUSTC_BOOTSTRAP=1 lets the stable compiler accept them. That is fine
# for a test-only build of the fuzzer and never used for release builds.
# Each target runs FUZZ_SECONDS from its corpus (seeded with the RFC 4475 messages and the committed seeds of the
# call-logic target); a crash stops make with the input in sbc/proto/fuzz/artifacts/.
fuzz: fuzz-setup
	cd sbc/proto/fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build
	$(foreach t,$(FUZZ_TARGETS),(cd sbc/proto/fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $(t) corpus/$(t) -- \
	  -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(FUZZ_ARGS_$(t))) &&) true

fuzz-setup:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	mkdir -p $(addprefix sbc/proto/fuzz/corpus/,$(FUZZ_TARGETS))
	if [ -d ../shared/corpus/rfc4475 ]; then find ../shared/corpus/rfc4475 -name '*.sip' -exec cp {} sbc/proto/fuzz/corpus/parse_message/ \; ; fi
	cp sbc/proto/fuzz/seeds/endpoint_calls/* sbc/proto/fuzz/corpus/endpoint_calls/

# The XDP programs (ebpf/src/*.bpf.c) are compiled by media-relay's build.rs with clang into its OUT_DIR and
# embedded in the binary; this builds them (and shows where the objects are).
ebpf:
	$(CARGO) build -p media-relay
	@ls -l target/debug/build/media-relay-*/out/*.bpf.o

clean:
	$(CARGO) clean
