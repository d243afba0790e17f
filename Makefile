# The two set-up commands of the README: `make run` and `make test`.
# Both install the Debian packages they need (as root), so a fresh machine works.
# Also: `make bench` (performance, bench/README.md) and `make soak` (a bounded soak run of
# SOAK_SECONDS, default 600: churn, bulk, reconnecting servers and every bad input against
# one relay; checks RSS, descriptors, sessions and every byte; bench/results/soak.md).

BUILD_DIR      ?= build
ASAN_BUILD_DIR ?= build-asan
TSAN_BUILD_DIR ?= build-tsan
JOBS           ?= $(shell nproc)
RUN_ARGS       ?=
KEYS_DIR       ?= ./relay_server_certs

# The complete list of Debian packages: build, tests (incl. the libFuzzer run),
# development PKI, and the .deb (help2man for the man page, dpkg-dev for
# dpkg-shlibdeps, file for CPack's ELF check, systemd for systemd-analyze verify,
# strace for the check that the unit's sandbox lets the relay work).
# libtomlplusplus-dev: serve --config. nlohmann-json3-dev: the admin endpoint's
# /status; python3-prometheus-client and prometheus (promtool): the /metrics tests
# parse and lint what the relay exports. nodejs, npm, python3-yaml: the offline
# check of the Kubernetes manifests (make test-k8s).
DEBIAN_PACKAGES = g++ make cmake ninja-build pkg-config libcaf-dev libssl-dev openssl \
                  libboost-dev catch2 libcli11-dev libspdlog-dev libfmt-dev python3 \
                  clang-14 libclang-rt-14-dev help2man dpkg-dev file systemd strace \
                  libtomlplusplus-dev nlohmann-json3-dev python3-prometheus-client prometheus \
                  nodejs npm python3-yaml
# Peers that `make bench` measures against, its plots, and the profilers of
# bench/profile_setup.sh (heaptrack: where the relay's memory per session goes).
BENCH_PACKAGES  = haproxy openssh-server openssh-client python3-matplotlib linux-perf valgrind strace \
                  heaptrack
FUZZ_SECONDS   ?= 60
FUZZ_FIRST_LINES_SECONDS ?= 30
SOAK_SECONDS   ?= 600
# test-k8s: where `npm ci` installs tests/k8s/package-lock.json, and the Python
# that has Debian's python3-yaml (a python3 earlier in PATH may lack it).
K8S_NPM_DIR    ?= $(BUILD_DIR)/k8s-validate
K8S_PYTHON     ?= /usr/bin/python3
# The relay whose `serve --help` the config keys and flags are checked against.
K8S_TLSRELAY   ?= $(BUILD_DIR)/tlsrelay

.PHONY: all deps bench-deps build run test test-asan test-tsan fuzz bench soak clean package \
        test-package test-k8s

all: build

# Installs those of the packages in $(1) that are missing. A package that an
# installed one provides counts as present: NodeSource's nodejs provides (and
# conflicts with) npm, which apt would otherwise replace with an older Node.js.
define install_missing
	@provided=$$(dpkg-query -W -f='$${db:Status-Abbrev} $${Provides}\n' 2>/dev/null | \
	  sed -n 's/^ii *//p' | tr ',' '\n' | sed 's/ *(.*//; s/^ *//'); \
	missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || \
	    printf '%s\n' "$$provided" | grep -qx "$$p" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi
endef

deps:
	$(call install_missing,$(DEBIAN_PACKAGES))

bench-deps:
	$(call install_missing,$(BENCH_PACKAGES))

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	@if [ ! -e $(KEYS_DIR)/ca.crt.pem ]; then $(BUILD_DIR)/tlsrelay certs init $(KEYS_DIR); fi
	$(BUILD_DIR)/tlsrelay serve --keys $(KEYS_DIR) $(RUN_ARGS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j 2 --timeout 300
	$(MAKE) test-k8s
	$(MAKE) test-package
	$(MAKE) test-asan
	$(MAKE) test-tsan
	$(MAKE) fuzz

# The Debian package, $(BUILD_DIR)/tlsrelay_<version>-1_<arch>.deb (cmake/Packaging.cmake):
# only the binary and its man page need building. Configured again so that a
# build directory made before help2man was installed gets the man page target.
package: deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD_DIR) -j $(JOBS) --target tlsrelay tlsrelay_man
	cd $(BUILD_DIR) && cpack

# The .deb on this machine (as root): dpkg -i, the installed unit verified, the
# installed relay with the installed config doing a relayed round trip, then
# dpkg --purge, leaving the machine as it was (tests/package/deb_roundtrip.py).
test-package: package
	python3 tests/package/deb_roundtrip.py --build $(BUILD_DIR)

# deploy/k8s checked offline (tests/k8s/): the manifests against the
# Kubernetes schemas (kubernetes-models, installed by `npm ci` only when the
# lock file changed) and the relay's needs, config keys and flags against
# `serve --help` of K8S_TLSRELAY when it is built (as in `make test`); then a
# self-test proving that deliberately broken copies fail.
$(K8S_NPM_DIR)/node_modules/.tlsrelay-installed: tests/k8s/package.json tests/k8s/package-lock.json tests/k8s/.npmrc
	mkdir -p $(K8S_NPM_DIR)
	cp tests/k8s/package.json tests/k8s/package-lock.json tests/k8s/.npmrc $(K8S_NPM_DIR)/
	cd $(K8S_NPM_DIR) && npm ci --no-audit --no-fund
	touch $@

test-k8s: deps $(K8S_NPM_DIR)/node_modules/.tlsrelay-installed
	@if [ -x "$(K8S_TLSRELAY)" ]; then tlsrelay="--tlsrelay $(K8S_TLSRELAY)"; else \
	  tlsrelay=""; echo "test-k8s: no tlsrelay binary at '$(K8S_TLSRELAY)': config keys and flags not checked against serve --help"; fi; \
	$(K8S_PYTHON) tests/k8s/validate_k8s.py --dir deploy/k8s --npm-dir $(K8S_NPM_DIR) $$tlsrelay && \
	$(K8S_PYTHON) tests/k8s/selftest_k8s.py --dir deploy/k8s --npm-dir $(K8S_NPM_DIR) $$tlsrelay

# The same suite built with AddressSanitizer and UBSan.
test-asan: deps
	cmake -S . -B $(ASAN_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTLSRELAY_SANITIZE=ON
	cmake --build $(ASAN_BUILD_DIR) -j $(JOBS)
	cd $(ASAN_BUILD_DIR) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j 2 --timeout 300

# The multi-threaded suites (actors, net, client, end-to-end) built with
# ThreadSanitizer; the pure protocol and PKI tests are left out (see
# tests/CMakeLists.txt), so only what these suites run is built.
# tests/tsan.supp holds the reports from uninstrumented libraries.
TSAN_TARGETS = tlsrelay relayed_echo_server relayed_tls_echo_server actors_test pump_test net_test \
               client_test tlsrelay_e2e_tests tlsrelay_e2e_v2_tests cli_e2e_test \
               tlsrelay_fault_tests tlsrelay_fault_proxy_tests tlsrelay_ops_tests tlsrelay_drain_tests \
               tlsrelay_admin_tests
test-tsan: deps
	cmake -S . -B $(TSAN_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTLSRELAY_TSAN=ON
	cmake --build $(TSAN_BUILD_DIR) -j $(JOBS) --target $(TSAN_TARGETS)
	cd $(TSAN_BUILD_DIR) && \
	  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	  ctest --output-on-failure -j 2 --timeout 300

# The protocol parsers under libFuzzer (clang-14, ASan, UBSan): fuzz_protocol for
# FUZZ_SECONDS, fuzz_first_lines for FUZZ_FIRST_LINES_SECONDS.
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_FIRST_LINES_SECONDS=$(FUZZ_FIRST_LINES_SECONDS) \
	  tests/fuzz/run.sh build-fuzz

# tlsrelay against direct, haproxy and ssh -R; results in bench/results/.
bench: build bench-deps
	python3 bench/run_bench.py --build $(BUILD_DIR)

# One relay under mixed load and bad inputs for SOAK_SECONDS (stops by itself); fails
# on RSS growth, descriptors or sessions not returning, or any lost byte.
soak: build bench-deps
	python3 bench/soak.py --build $(BUILD_DIR) --seconds $(SOAK_SECONDS)

clean:
	rm -rf $(BUILD_DIR) $(ASAN_BUILD_DIR) $(TSAN_BUILD_DIR) build-fuzz
