# capsnet: the Makefile is the source of truth for building and testing.
#
#   make              build ./capsnet (and build/libcapsnet.a)
#   make test         build and run the test suite (ends with "N passed, N failed")
#   make asan         the same suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make noblas       the suite built with BLAS=none NATIVE=0: the plain C kernels everywhere
#                     (the end-to-end MNIST run skipped: slow)
#   make run          get MNIST, train one epoch, print the test accuracy
#   make valgrind     the program under valgrind's memcheck (train, test, predict)
#   make bench        capsnet against PyTorch on this machine (bench/compare.sh)
#   make clean
#
# Switches: NATIVE=0 (no -march=native), OMP=0 (no OpenMP), BLAS=dnnl|openblas|none,
#           WERROR=1 (warnings are errors, as in CI), SANITIZE=1 (what `make asan` sets).

CC      ?= gcc
NATIVE  ?= 1
OMP     ?= 1
BLAS    ?= dnnl
WERROR  ?= 0
SANITIZE ?= 0
CAPS_SKIP_E2E ?= 0
BUILD   ?= build

CFLAGS  := -std=c11 -D_POSIX_C_SOURCE=200809L -O3 -g -Wall -Wextra -Wshadow -Iinclude -Isrc -MMD -MP \
           $(shell pkg-config --cflags cairo fontconfig libmicrohttpd libcjson 2>/dev/null)
LDLIBS  := -lmicrohttpd -lcjson -lcairo -lfontconfig -lpng -lz -lm -lpthread

ifeq ($(NATIVE),1)
CFLAGS  += -march=native
endif
ifeq ($(OMP),1)
CFLAGS  += -fopenmp
LDFLAGS += -fopenmp
else
CFLAGS  += -Wno-unknown-pragmas
endif
ifeq ($(BLAS),dnnl)
CFLAGS  += -DCAPS_USE_DNNL
LDLIBS  := -ldnnl $(LDLIBS)
else ifeq ($(BLAS),openblas)
CFLAGS  += -DCAPS_USE_CBLAS -I/usr/include/x86_64-linux-gnu/openblas-pthread
LDLIBS  := -lopenblas $(LDLIBS)
else ifneq ($(BLAS),none)
$(error BLAS must be dnnl, openblas or none, got '$(BLAS)')
endif
ifeq ($(WERROR),1)
CFLAGS  += -Werror
endif
ifeq ($(SANITIZE),1)
CFLAGS  += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
endif

LIB_SRC   := $(wildcard src/*.c)
LIB_OBJ   := $(LIB_SRC:src/%.c=$(BUILD)/src/%.o)
WEB_FILES := $(sort $(wildcard tools/web/*.html tools/web/*.css tools/web/*.js))
TOOL_OBJ  := $(patsubst tools/%.c,$(BUILD)/tools/%.o,$(wildcard tools/*.c)) $(BUILD)/tools/web_assets.o
TEST_SRC  := $(wildcard tests/test_*.c)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_HELP := $(BUILD)/tests/gradcheck.o $(BUILD)/tests/fixture.o
PROGRAM   := $(if $(filter build,$(BUILD)),capsnet,$(BUILD)/capsnet)

.PHONY: all test asan noblas valgrind fuzz run bench clean
all: $(PROGRAM)

# Objects depend on the flags too: switching BLAS= or SANITIZE= rebuilds what they change.
FLAGS_STAMP := $(BUILD)/flags.$(shell echo '$(CC) $(CFLAGS) $(LDFLAGS) $(LDLIBS)' | cksum | cut -d' ' -f1)
$(FLAGS_STAMP): | $(BUILD)/src
	rm -f $(BUILD)/flags.* && touch $@

$(BUILD)/src/%.o: src/%.c $(FLAGS_STAMP) | $(BUILD)/src
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/tests/%.o: tests/%.c $(FLAGS_STAMP) | $(BUILD)/tests
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/tools/%.o: tools/%.c $(FLAGS_STAMP) | $(BUILD)/tools
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/src $(BUILD)/tests $(BUILD)/tools:
	mkdir -p $@

# capsnet serve's page, compiled in (scripts/embed.sh).
$(BUILD)/tools/web_assets.c: $(WEB_FILES) scripts/embed.sh | $(BUILD)/tools
	sh scripts/embed.sh $@ $(WEB_FILES)
$(BUILD)/tools/web_assets.o: $(BUILD)/tools/web_assets.c $(FLAGS_STAMP)
	$(CC) $(CFLAGS) -Itools -c $< -o $@

$(BUILD)/libcapsnet.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(PROGRAM): $(TOOL_OBJ) $(BUILD)/libcapsnet.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(TEST_HELP) $(BUILD)/libcapsnet.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# The suite needs MNIST for the end-to-end test: scripts/get-data.sh copies it from
# $MNIST_DIR or downloads it, and verifies the checksums.
test: $(TEST_BIN) $(PROGRAM)
	scripts/get-data.sh mnist data/mnist
	CAPS_SKIP_E2E=$(CAPS_SKIP_E2E) sh tests/run.sh $(BUILD) $(abspath $(PROGRAM))

asan:
	$(MAKE) BUILD=build-asan SANITIZE=1 test

noblas:
	$(MAKE) BUILD=build-noblas BLAS=none NATIVE=0 CAPS_SKIP_E2E=1 test

run: $(PROGRAM)
	scripts/get-data.sh mnist data/mnist
	./capsnet train --data data/mnist --out mnist.caps --epochs 1 --overwrite
	./capsnet test --model mnist.caps --data data/mnist

# valgrind knows no AVX-512 and nothing of oneDNN's generated code: a plain build.
valgrind:
	$(MAKE) BUILD=build-valgrind NATIVE=0 BLAS=none build-valgrind/capsnet
	scripts/get-data.sh mnist data/mnist
	sh tests/valgrind.sh build-valgrind/capsnet

# libFuzzer on the three readers of untrusted files (fuzz/README.md); FUZZ_SECONDS each.
FUZZ_SECONDS ?= 30
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

bench: $(PROGRAM)
	CAPSNET=$(abspath $(PROGRAM)) bench/compare.sh

clean:
	rm -rf build build-asan build-noblas build-valgrind build-fuzz capsnet

-include $(LIB_OBJ:.o=.d) $(TEST_BIN:=.d) $(TEST_HELP:.o=.d) $(TOOL_OBJ:.o=.d)
