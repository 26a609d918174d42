# capsnet: the Makefile is the source of truth for building and testing.
#
#   make              build ./capsnet, build/libcapsnet.a and build/libcapsnet.so
#   make test         build and run the test suite (ends with "N passed, N failed")
#   make lib          the core alone, in build-lib/: the libraries, their tests, and a capsnet
#                     with train, test, predict, info and bench; needs none of cairo,
#                     libmicrohttpd, cJSON (FIGURES=0)
#   make lib-test     make lib, then its tests
#   make install      the libraries (libcapsnet.so with a soname, libcapsnet.a), capsnet.h,
#                     capsnet.pc, the program and the PyTorch bridge (share/capsnet), under
#                     PREFIX (/usr/local); DESTDIR too
#   make cuda-emu     the CUDA backend's code on a CPU stand-in for CUDA (tests/cuda_emu/),
#                     tests/test_cuda.c under ASan + UBSan: no GPU needed
#   make asan         the suite under AddressSanitizer + UndefinedBehaviorSanitizer (the
#                     end-to-end MNIST runs skipped: ten times slower there)
#   make noblas       the suite built with BLAS=none NATIVE=0: the plain C kernels everywhere
#                     (the end-to-end MNIST run skipped: slow)
#   make run          get MNIST, train one epoch, print the test accuracy
#   make valgrind     the program under valgrind's memcheck (train, test, predict)
#   make bench        capsnet against PyTorch on this machine (bench/compare.sh)
#   make clean
#
# Switches: NATIVE=0 (no -march=native), OMP=0 (no OpenMP), BLAS=dnnl|openblas|none,
#           FIGURES=0 (no pictures, report or explorer: the core's dependencies only),
#           CUDA=1 (the GPU backend, src/cuda/: nvcc, cuBLAS; CUDA_ARCH=sm_90 by default),
#           WERROR=1 (warnings are errors, as in CI), SANITIZE=1 (what `make asan` sets),
#           MPI=1 (capsnet train across processes under mpirun: tools/mpi.c, Open MPI's
#           mpicc for its flags; the library itself never needs MPI).
#
# The core library (src/) depends on libc, libm, OpenMP, zlib, libpng and the BLAS. The
# program's pictures (tools/figure.c, visualize.c: cairo), report and explorer
# (libmicrohttpd, cJSON) are compiled and linked only into the program and their tests.

CC      ?= gcc
CUDA    ?= 0
MPI     ?= 0
NATIVE  ?= 1
OMP     ?= 1
BLAS    ?= dnnl
FIGURES ?= 1
WERROR  ?= 0
SANITIZE ?= 0
CAPS_SKIP_E2E ?= 0
BUILD   ?= build
PKG_CONFIG ?= pkg-config
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
LIBDIR  ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share

# The library's version, from its header; the soname carries the major number.
VERSION := $(shell sed -n 's/^\#define CAPSNET_VERSION_STRING "\(.*\)"/\1/p' include/capsnet.h)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))
SONAME  := libcapsnet.so.$(MAJOR)

CFLAGS  := -std=c11 -D_POSIX_C_SOURCE=200809L -O3 -g -Wall -Wextra -Wshadow -Iinclude -Isrc \
           -MMD -MP
# The library's objects also go into libcapsnet.so: position-independent, and only what
# capsnet.h declares is exported.
LIB_CFLAGS := -fPIC -fvisibility=hidden
LDLIBS  := -lpng -lz -lm
# BLAS_LIBS: what the library needs at link time beyond libc (capsnet.pc, libcapsnet.so).
BLAS_LIBS :=

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
BLAS_LIBS := -ldnnl
else ifeq ($(BLAS),openblas)
CFLAGS  += -DCAPS_USE_CBLAS -I/usr/include/x86_64-linux-gnu/openblas-pthread
BLAS_LIBS := -lopenblas
else ifneq ($(BLAS),none)
$(error BLAS must be dnnl, openblas or none, got '$(BLAS)')
endif
LDLIBS  := $(BLAS_LIBS) $(LDLIBS)
ifeq ($(WERROR),1)
CFLAGS  += -Werror
endif
ifeq ($(SANITIZE),1)
CFLAGS  += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
endif

# The presentation side: only its objects see these flags, only the program and its
# tests link these libraries.
FIG_PKGS := cairo fontconfig libmicrohttpd libcjson
ifeq ($(FIGURES),1)
FIG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(FIG_PKGS))
FIG_LIBS   := $(shell $(PKG_CONFIG) --libs $(FIG_PKGS)) -lpthread
endif

LIB_SRC   := $(wildcard src/*.c)
LIB_OBJ   := $(LIB_SRC:src/%.c=$(BUILD)/src/%.o)

# The CUDA backend: nvcc for src/cuda/*.cu, cuBLAS and the runtime linked in (with a
# run path, so the program finds them where this build found them).
ifeq ($(CUDA),1)
NVCC      ?= $(or $(shell command -v nvcc 2>/dev/null),/usr/local/cuda/bin/nvcc)
CUDA_HOME ?= $(abspath $(dir $(NVCC))..)
CUDA_LIB  ?= $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib) $(CUDA_HOME)/lib64)
CUDA_ARCH ?= sm_90
NVFLAGS   := -O3 -std=c++17 -arch=$(CUDA_ARCH) -Iinclude -Isrc -MMD -MP \
             -Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Wextra
ifeq ($(WERROR),1)
NVFLAGS   += -Werror all-warnings -Xcompiler -Werror
endif
CFLAGS    += -DCAPS_WITH_CUDA
LDLIBS    := $(LDLIBS) -L$(CUDA_LIB) -Wl,-rpath,$(CUDA_LIB) -lcublas -lcudart -lstdc++
LIB_OBJ   += $(patsubst src/%.cu,$(BUILD)/src/%.o,$(wildcard src/cuda/*.cu))
endif

# make cuda-emu: the same sources as C++ for the host, each kernel launch rewritten into a
# call of the stand-in (tests/cuda_emu/README.md).
ifeq ($(CUDA_EMU),1)
CFLAGS    += -DCAPS_WITH_CUDA
EMU_FLAGS := -std=c++17 -O1 -g -Wall -Wextra -Itests/cuda_emu -Iinclude -Isrc -Isrc/cuda \
             -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDLIBS    := $(LDLIBS) -lstdc++
LIB_OBJ   += $(patsubst src/cuda/%.cu,$(BUILD)/emu/%.o,$(wildcard src/cuda/*.cu)) \
             $(BUILD)/emu/emu.o
endif
# MPI=1: the program's processes talk over MPI (tools/mpi.c); the flags are mpicc's.
ifeq ($(MPI),1)
MPICC     ?= mpicc
MPI_CFLAGS := $(shell $(MPICC) --showme:compile)
MPI_LIBS   := $(shell $(MPICC) --showme:link)
endif
WEB_FILES := $(sort $(wildcard tools/web/*.html tools/web/*.css tools/web/*.js))
# The program: the core commands always; the pictures, report and explorer with FIGURES=1,
# else no_figures.c says they are not built.
CORE_TOOLS := capsnet cli cmd_train cmd_train_cnn cmd_eval cmd_bench cmd_export cmd_data cmd_multimnist \
              $(if $(filter 1,$(MPI)),mpi,no_mpi)
FIG_TOOLS  := cmd_figures cmd_plot cmd_report cmd_serve web_assets
FIG_LIB_OBJ := $(BUILD)/tools/figure.o $(BUILD)/tools/visualize.o
ifeq ($(FIGURES),1)
TOOL_OBJ  := $(patsubst %,$(BUILD)/tools/%.o,$(CORE_TOOLS) $(FIG_TOOLS)) $(FIG_LIB_OBJ)
else
TOOL_OBJ  := $(patsubst %,$(BUILD)/tools/%.o,$(CORE_TOOLS) no_figures)
endif
# Tests of the pictures need cairo; the rest test the core.
FIG_TEST_SRC := tests/test_figure.c tests/test_visualize.c
TEST_SRC  := $(if $(filter 1,$(FIGURES)),$(wildcard tests/test_*.c),\
                  $(filter-out $(FIG_TEST_SRC),$(wildcard tests/test_*.c)))
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
FIG_TEST_BIN := $(FIG_TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_HELP := $(BUILD)/tests/gradcheck.o $(BUILD)/tests/fixture.o
PROGRAM   := $(if $(filter build,$(BUILD)),capsnet,$(BUILD)/capsnet)
LIBS      := $(BUILD)/libcapsnet.a $(BUILD)/libcapsnet.so

.PHONY: all lib lib-test tests install test asan cuda-emu noblas valgrind fuzz run bench clean
all: $(PROGRAM) $(LIBS)
tests: $(TEST_BIN)

# Objects depend on the flags too: switching BLAS= or SANITIZE= rebuilds what they change.
FLAGS_STAMP := $(BUILD)/flags.$(shell echo '$(CC) $(CFLAGS) $(LDFLAGS) $(LDLIBS) $(FIGURES) $(MPI) \
                 $(NVFLAGS) $(EMU_FLAGS)' | cksum | cut -d' ' -f1)
$(FLAGS_STAMP): | $(BUILD)/src
	rm -f $(BUILD)/flags.* && touch $@

$(BUILD)/src/%.o: src/%.c $(FLAGS_STAMP) | $(BUILD)/src
	$(CC) $(CFLAGS) $(LIB_CFLAGS) -c $< -o $@
$(BUILD)/src/cuda/%.o: src/cuda/%.cu $(FLAGS_STAMP) | $(BUILD)/src/cuda
	$(NVCC) $(NVFLAGS) -c $< -o $@
$(BUILD)/emu/%.cpp: src/cuda/%.cu | $(BUILD)/emu
	{ echo '#line 1 "$<"'; perl -pe 's/(\w+)<<<(.*?)>>>\(/emu::Launch($$2).run($$1, /g' $<; } > $@
# kernels.h's launch macros too: the rewritten copy sits beside the .cpp files, so their
# #include "kernels.h" finds it before src/cuda's.
$(BUILD)/emu/kernels.h: src/cuda/kernels.h | $(BUILD)/emu
	{ echo '#line 1 "$<"'; perl -pe 's/(\w+)<<<(.*?)>>>\(/emu::Launch($$2).run($$1, /g' $<; } > $@
$(BUILD)/emu/%.o: $(BUILD)/emu/%.cpp $(BUILD)/emu/kernels.h tests/cuda_emu/cuda_runtime.h \
                  tests/cuda_emu/cublas_v2.h $(FLAGS_STAMP)
	g++ $(EMU_FLAGS) -c $< -o $@
# The stand-in itself checks ranges explicitly; optimised, it keeps the products fast.
$(BUILD)/emu/emu.o: tests/cuda_emu/emu.cpp tests/cuda_emu/cuda_runtime.h tests/cuda_emu/cublas_v2.h \
                    $(FLAGS_STAMP) | $(BUILD)/emu
	g++ -std=c++17 -O3 -Wall -Wextra -Itests/cuda_emu -c $< -o $@
$(BUILD)/tests/%.o: tests/%.c $(FLAGS_STAMP) | $(BUILD)/tests
	$(CC) $(CFLAGS) -Itools $(FIG_CFLAGS) -c $< -o $@
$(BUILD)/tools/%.o: tools/%.c $(FLAGS_STAMP) | $(BUILD)/tools
	$(CC) $(CFLAGS) $(FIG_CFLAGS) -c $< -o $@
$(BUILD)/tools/mpi.o: CFLAGS += $(MPI_CFLAGS)
$(BUILD)/src $(BUILD)/src/cuda $(BUILD)/emu $(BUILD)/tests $(BUILD)/tools:
	mkdir -p $@

# capsnet serve's page, compiled in (scripts/embed.sh).
$(BUILD)/tools/web_assets.c: $(WEB_FILES) scripts/embed.sh | $(BUILD)/tools
	sh scripts/embed.sh $@ $(WEB_FILES)
$(BUILD)/tools/web_assets.o: $(BUILD)/tools/web_assets.c $(FLAGS_STAMP)
	$(CC) $(CFLAGS) -Itools -c $< -o $@

$(BUILD)/libcapsnet.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^
# The shared library records what it needs (--as-needed drops the rest) and may leave
# no symbol undefined.
$(BUILD)/libcapsnet.so: $(LIB_OBJ)
	$(CC) -shared $(LDFLAGS) -Wl,-soname,$(SONAME) -Wl,--no-undefined -Wl,--as-needed \
	    $^ $(LDLIBS) -o $@.$(VERSION)
	ln -sf libcapsnet.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf libcapsnet.so.$(VERSION) $@

# The program links the static library: it needs nothing of capsnet installed to run.
$(PROGRAM): $(TOOL_OBJ) $(BUILD)/libcapsnet.a
	$(CC) $(LDFLAGS) $^ $(FIG_LIBS) $(LDLIBS) $(MPI_LIBS) -o $@

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(TEST_HELP) $(BUILD)/libcapsnet.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
$(FIG_TEST_BIN): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_HELP) $(FIG_LIB_OBJ) \
                 $(BUILD)/libcapsnet.a
	$(CC) $(LDFLAGS) $^ $(FIG_LIBS) $(LDLIBS) -o $@

# The suite needs MNIST for the end-to-end test: scripts/get-data.sh copies it from
# $MNIST_DIR or downloads it, and verifies the checksums.
test: $(TEST_BIN) $(PROGRAM) $(LIBS)
	scripts/get-data.sh mnist data/mnist
	CAPS_SKIP_E2E=$(CAPS_SKIP_E2E) CAPS_FIGURES=$(FIGURES) sh tests/run.sh $(BUILD) \
	    $(abspath $(PROGRAM))

lib:
	$(MAKE) BUILD=build-lib FIGURES=0 all tests
lib-test:
	$(MAKE) BUILD=build-lib FIGURES=0 test

# capsnet.pc for the prefix it is installed under.
$(BUILD)/capsnet.pc: capsnet.pc.in $(FLAGS_STAMP)
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|; s|@LIBS_PRIVATE@|$(strip $(LDFLAGS) $(LDLIBS))|' $< > $@

install: $(PROGRAM) $(LIBS) $(BUILD)/capsnet.pc
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) \
	    $(DESTDIR)$(DATADIR)/capsnet
	install -m 755 $(PROGRAM) $(DESTDIR)$(BINDIR)/capsnet
	install -m 644 $(BUILD)/libcapsnet.a $(DESTDIR)$(LIBDIR)/libcapsnet.a
	install -m 755 $(BUILD)/libcapsnet.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libcapsnet.so.$(VERSION)
	ln -sf libcapsnet.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libcapsnet.so
	install -m 644 include/capsnet.h $(DESTDIR)$(INCLUDEDIR)/capsnet.h
	install -m 644 $(BUILD)/capsnet.pc $(DESTDIR)$(LIBDIR)/pkgconfig/capsnet.pc
	install -m 644 python/capsnet_torch.py $(DESTDIR)$(DATADIR)/capsnet/capsnet_torch.py

# The end-to-end runs (full-size networks trained on thousands of MNIST images, ten times
# slower under the sanitizers) are left to the plain build; the sanitizers still see every
# layer and the training loop, and the full-size network on 100 images (cli.sh).
asan:
	$(MAKE) BUILD=build-asan SANITIZE=1 CAPS_SKIP_E2E=1 test

cuda-emu:
	$(MAKE) BUILD=build-emu SANITIZE=1 NATIVE=0 BLAS=none FIGURES=0 CUDA_EMU=1 \
	    build-emu/tests/test_cuda
	build-emu/tests/test_cuda

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

# libFuzzer on the readers of untrusted files (fuzz/README.md); FUZZ_SECONDS each.
FUZZ_SECONDS ?= 30
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

bench: $(PROGRAM)
	CAPSNET=$(abspath $(PROGRAM)) bench/compare.sh

clean:
	rm -rf build build-lib build-cuda build-emu build-asan build-noblas build-valgrind build-fuzz \
	    capsnet

-include $(LIB_OBJ:.o=.d) $(TEST_BIN:=.d) $(TEST_HELP:.o=.d) $(TOOL_OBJ:.o=.d)
