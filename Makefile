# samda: the two commands.
#   make run   install what is missing, build, and run samdad in the foreground on loopback
#   make test  install what is missing, build, and run every test (plus the unit tests under ASan/UBSan
#              and each libFuzzer target for FUZZ_TEST_SECONDS, 10 s)
# Other targets: deps, build, asan, fuzz (each fuzz target for SAMDA_FUZZ_SECONDS, 300 s), bench, clean.

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= 2
FUZZ_TEST_SECONDS ?= 10
RUN_DIR    ?= var
DICOM_PORT ?= 11112
HTTP_PORT  ?= 8080
CMAKE_ARGS ?=
CTEST_ARGS ?=

.PHONY: all deps build run test asan test-asan fuzz-build test-fuzz fuzz bench clean

all: build

deps:
	@bash deploy/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# The local instance: configuration and data under ./var (created once, then left alone; its ports
# are DICOM_PORT and HTTP_PORT, 11112 and 8080 unless given).
# Builds only the two programs (the tests are built by `make test`).
run: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS) --target samdad samda
	@bash deploy/make-run-config.sh $(RUN_DIR) $(BUILD) $(DICOM_PORT) $(HTTP_PORT)
	exec $(BUILD)/daemon/samdad --config $(RUN_DIR)/samdad.conf

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSAMDA_SANITIZE=ON -DSAMDA_WITH_MODEL=OFF $(CMAKE_ARGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)

test-asan: asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -L unit -LE "slow|bench" -j$(JOBS) $(CTEST_ARGS)

# The libFuzzer targets (clang, ASan/UBSan) and only what they link; each runs as one ctest (label
# fuzz) for SAMDA_FUZZ_SECONDS, $(JOBS) at a time. New inputs stay in $(FUZZ_BUILD)/tests/fuzz.
fuzz-build: deps
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSAMDA_FUZZ=ON -DSAMDA_WITH_MODEL=OFF \
		-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ $(CMAKE_ARGS) >/dev/null
	@cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzz_all

test-fuzz: fuzz-build
	cd $(FUZZ_BUILD) && SAMDA_FUZZ_SECONDS=$(FUZZ_TEST_SECONDS) ctest --output-on-failure -L fuzz -j$(JOBS)

# Unit tests under ASan/UBSan first, then a short run of every fuzz target, then the whole suite: its
# unit tests $(JOBS) at a time (as under ASan), then the integration tests one at a time, since many
# of them time what they watch (the last summary line printed is theirs).
test: build test-asan test-fuzz
	cd $(BUILD) && ctest --output-on-failure -L unit -LE bench -j$(JOBS) $(CTEST_ARGS)
	cd $(BUILD) && ctest --output-on-failure -LE "unit|bench" $(CTEST_ARGS)

fuzz: fuzz-build
	cd $(FUZZ_BUILD) && SAMDA_FUZZ_SECONDS=$${SAMDA_FUZZ_SECONDS:-300} ctest --output-on-failure -L fuzz -j$(JOBS)

bench: build
	cd $(BUILD) && ctest --output-on-failure -L bench -V $(CTEST_ARGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
