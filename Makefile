# kizuna — the two commands:
#   make demo   install what is missing, build, run the daemon on conf/kizuna.conf
#   make test   install what is missing, build with ASan+UBSan, run every test
#
# Everything else is plain CMake (see docs/); this file only wraps it.

DEBIAN_PACKAGES := build-essential binutils cmake pkg-config libmicrohttpd-dev \
                   libcurl4-openssl-dev libjson-c-dev libconfig-dev libsqlite3-dev \
                   libssl-dev libcmocka-dev tzdata libcsv-dev
BUILD      ?= build
TEST_BUILD ?= build-test
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CONFIG     ?= conf/kizuna.conf

.PHONY: all deps build demo test bench bench-webhook clean

all: build

# Installs the Debian packages that are missing when run as root; otherwise
# prints the exact apt-get line and stops.
deps:
	@missing=""; \
	for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing packages; run as root:"; \
	    echo "  sudo apt-get install -y$$missing"; \
	    exit 1; \
	  fi; \
	fi

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	$(BUILD)/bin/kizuna check -c $(CONFIG)
	$(BUILD)/bin/kizuna serve -c $(CONFIG)

test: deps
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DKIZUNA_SANITIZE=ON
	cmake --build $(TEST_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(TEST_BUILD) --output-on-failure -j $(JOBS)

# Every figure docs/performance.md records except bench/webhook's (which
# needs wrk and node): a few minutes on two cores.
bench: build
	$(BUILD)/bin/bench_bus
	$(BUILD)/bin/bench_segment
	$(BUILD)/bin/bench_audience --friends 1000000
	$(BUILD)/bin/bench_broadcast --friends 1000000
	$(BUILD)/bin/bench_step --friends 1000000
	$(BUILD)/bin/bench_step --friends 1000000 --bulk 1000

# Signed webhooks with wrk against kizuna and an @line/bot-sdk peer (needs
# node and npm; installs wrk as root). Takes a few minutes.
bench-webhook: build
	bench/webhook/run.sh

clean:
	rm -rf $(BUILD) $(TEST_BUILD) var
