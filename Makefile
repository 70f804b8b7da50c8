# klua build. `make` builds build/klua and build/klua_core.so; `make test`
# installs missing dependencies, builds, and runs every suite.
# SANITIZE=address builds everything with ASan+UBSan into build/asan,
# SANITIZE=thread with TSan into build/tsan. BUILD=dir moves all of it.

PREFIX ?= /usr/local
DESTDIR ?=
LUA_VERSION := 5.1
LUA_LDIR ?= $(PREFIX)/share/lua/$(LUA_VERSION)
# Where LuaJIT looks by default: /usr/lib/<multiarch>/lua/5.1 for PREFIX=/usr,
# PREFIX/lib/lua/5.1 otherwise (e.g. /usr/local/lib/lua/5.1).
MULTIARCH := $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
ifeq ($(PREFIX),/usr)
LUA_CDIR ?= $(PREFIX)/lib/$(MULTIARCH)/lua/$(LUA_VERSION)
else
LUA_CDIR ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
endif

CC ?= cc
PKGS := luajit libcurl libcjson yaml-0.1 libmicrohttpd gnutls
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

OPT ?= -O2
CFLAGS_BASE := -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -g -fPIC \
  -Iruntime
LDLIBS := -lpthread -lm -ldl

SANITIZE ?=
BUILD ?= build
ifeq ($(SANITIZE),address)
  B := $(BUILD)/asan
  SAN := -fsanitize=address,undefined -fno-omit-frame-pointer \
    -fno-sanitize-recover=undefined
  OPT := -O1
else ifeq ($(SANITIZE),thread)
  B := $(BUILD)/tsan
  SAN := -fsanitize=thread
  OPT := -O1
else
  B := $(BUILD)
  SAN :=
endif

CFLAGS := $(CFLAGS_BASE) $(OPT) $(SAN) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := $(SAN) $(EXTRA_LDFLAGS)

LIB_SRC := $(filter-out runtime/main.c,$(wildcard runtime/*.c))
LIB_OBJ := $(patsubst runtime/%.c,$(B)/obj/%.o,$(LIB_SRC))
HDRS := $(wildcard runtime/*.h)
TEST_SRC := $(wildcard tests/c/test_*.c tests/c/stress_*.c)
TEST_BIN := $(patsubst tests/c/%.c,$(B)/tests/%,$(TEST_SRC))
TEST_HDRS := $(wildcard tests/c/*.h)

.PHONY: all test test-c test-lua test-tsan test-e2e install uninstall clean \
  deps bench soak fuzz demo

all: $(B)/klua $(B)/klua_core.so

$(B)/obj/%.o: runtime/%.c $(HDRS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/libklua.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/klua: $(B)/obj/main.o $(B)/libklua.a
	$(CC) $(LDFLAGS) -rdynamic -o $@ $< $(B)/libklua.a $(PKG_LIBS) $(LDLIBS)

$(B)/klua_core.so: $(LIB_OBJ)
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(PKG_LIBS) $(LDLIBS)

$(B)/tests/%: tests/c/%.c $(B)/libklua.a $(TEST_HDRS) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/c $(LDFLAGS) -o $@ $< $(B)/libklua.a \
	  $(PKG_LIBS) $(LDLIBS)

test-bins: $(TEST_BIN)

# Benchmarks (`make bench`, scripts/bench; docs/performance.md): bench/*.c
# built with -O2 and no sanitizers into $(BUILD)/bench/.
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))
$(BUILD)/bench/%: bench/%.c bench/bench.h $(BUILD)/libklua.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O2 $(PKG_CFLAGS) \
	  $(if $(wildcard runtime/informer.c),-DKL_BENCH_HAVE_INFORMER) \
	  -o $@ $< $(BUILD)/libklua.a \
	  $(PKG_LIBS) $(LDLIBS)
bench-bins: $(BENCH_BIN)
bench:
	@$(MAKE) --no-print-directory BUILD=$(BUILD) SANITIZE= all bench-bins
	@BUILD=$(BUILD) /usr/bin/python3 scripts/bench $(BENCH_ARGS)

deps:
	@bash scripts/install-deps.sh

# The whole test run: every suite, one closing line "N passed, N failed".
test: deps
	@bash scripts/run-tests.sh

# Individual suites (run-tests.sh calls these through its own logic too).
test-c:
	@$(MAKE) --no-print-directory SANITIZE=address test-bins
	@bash scripts/run-tests.sh c
test-lua: all
	@bash scripts/run-tests.sh lua
test-tsan:
	@$(MAKE) --no-print-directory SANITIZE=thread test-bins
	@bash scripts/run-tests.sh tsan
test-e2e: all
	@bash scripts/run-tests.sh e2e

# The README's first command: installs what is missing, builds, and runs the
# ConfigMap mirror example against the local API server (docs/examples.md).
DEMO_KUBECONFIG = $(abspath $(B))/demo.kubeconfig
demo: deps
	@$(MAKE) --no-print-directory all
	@echo ''
	@echo 'klua demo: examples/configmap-mirror.lua copies every ConfigMap labelled'
	@echo 'mirror=true from namespace source to namespace target. In another terminal:'
	@echo '  export KUBECONFIG=$(DEMO_KUBECONFIG)'
	@echo '  kubectl get configmaps -n target --show-labels    # the copy of app-settings'
	@echo "  kubectl patch configmap -n source app-settings --type merge -p '{\"data\":{\"color\":\"green\"}}'"
	@echo '  kubectl get configmap -n target app-settings -o yaml    # color: green'
	@echo '  kubectl label configmap -n source local-only mirror=true    # copied too'
	@echo '  kubectl delete configmap -n source app-settings    # its copy goes'
	@echo 'Edit the script and save: klua dev reloads it. Ctrl-C stops the demo.'
	@echo 'More examples: docs/examples.md'
	@echo ''
	$(B)/klua dev examples/configmap-mirror.lua --seed examples/seed \
	  --kubeconfig-out $(DEMO_KUBECONFIG)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(LUA_LDIR)/klua \
	  $(DESTDIR)$(LUA_CDIR)
	install -m 755 $(B)/klua $(DESTDIR)$(PREFIX)/bin/klua
	install -m 644 $(B)/klua_core.so $(DESTDIR)$(LUA_CDIR)/klua_core.so
	for f in lua/klua/*.lua; do \
	  install -m 644 $$f $(DESTDIR)$(LUA_LDIR)/klua/; done
	if [ -f lua/klua.lua ]; then \
	  install -m 644 lua/klua.lua $(DESTDIR)$(LUA_LDIR)/klua.lua; fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/klua $(DESTDIR)$(LUA_CDIR)/klua_core.so
	rm -rf $(DESTDIR)$(LUA_LDIR)/klua $(DESTDIR)$(LUA_LDIR)/klua.lua

clean:
	rm -rf build $(BUILD)

# libFuzzer targets (clang, ASan+UBSan) into $(BUILD)/fuzz, each run for
# FUZZ_SECONDS from a scratch copy of its seed corpus; see docs/fuzzing.md.
FUZZ_SECONDS ?= 30
fuzz:
	@BUILD=$(BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh

# Long reliability run (chaos convergence with several seeds, 50-informer
# load with flat memory, leaks); see docs/reliability.md.
SOAK_SECONDS ?= 300
soak:
	@$(MAKE) --no-print-directory BUILD=$(BUILD) SANITIZE= all
	@BUILD=$(BUILD) SOAK_SECONDS=$(SOAK_SECONDS) bash scripts/soak
