# mtlsd -- mutual-TLS sidecar proxy.
#
#   make            build/mtlsd (optimised, hardened)
#   make test       unit + integration tests under ASan/UBSan
#   make demo       example PKI, echo service, inbound + outbound mtlsd
#   make deps       install missing Debian packages (run by test and demo)

PROG=		mtlsd
SRCS=		addr.c conf.c conf_print.c policy.c log.c tls.c relay.c endbio.c \
		session.c proxy.c \
		reload.c stats.c admin.c pp2.c sandbox.c sandbox_syscalls.c main.c
PKGS=		openssl libevent_core libevent_extra libevent_openssl \
		libevent_pthreads libconfig libseccomp
UNIT_TESTS=	test_addr test_conf test_policy test_sandbox test_log \
		test_proxy_v2 test_relay

# Debian packages: to build, to test, to run the demo.
DEB_BUILD=	gcc make pkg-config libssl-dev libevent-dev libconfig-dev \
		libcmocka-dev libseccomp-dev
DEB_TEST=	openssl curl python3 procps iproute2 cppcheck clang-tidy tcpdump \
		clang libclang-rt-14-dev testssl.sh sslscan apparmor \
		python3-prometheus-client python3-yaml util-linux valgrind
DEB_ALL=	$(DEB_BUILD) $(DEB_TEST)

CC?=		cc
PKG_CFLAGS=	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS=	$(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN=		-Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes \
		-Wmissing-prototypes -Wpointer-arith -Wcast-qual \
		-Wno-missing-field-initializers
BASE_CFLAGS=	-std=c11 -D_GNU_SOURCE -Iinclude -MMD -MP $(WARN) \
		$(PKG_CFLAGS)
REL_CFLAGS=	$(BASE_CFLAGS) -O2 -g -D_FORTIFY_SOURCE=2 \
		-fstack-protector-strong -fPIE
REL_LDFLAGS=	-pie -Wl,-z,relro,-z,now
SAN=		-fsanitize=address,undefined -fno-sanitize-recover=all \
		-fno-omit-frame-pointer
TEST_CFLAGS=	$(BASE_CFLAGS) -O1 -g $(SAN) -DMTLSD_TEST
TEST_LDFLAGS=	$(SAN)

# The test build without sanitizers, for valgrind (make memcheck).
DBG_CFLAGS=	$(BASE_CFLAGS) -O1 -g -fno-omit-frame-pointer -DMTLSD_TEST
DBG_OBJS=	$(SRCS:%.c=build/debug/%.o)

REL_OBJS=	$(SRCS:%.c=build/rel/%.o)
TEST_OBJS=	$(SRCS:%.c=build/test/%.o)
LIB_TEST_OBJS=	$(filter-out build/test/main.o,$(TEST_OBJS))

V?=		0
ifeq ($(V),0)
Q=		@
endif

.PHONY: all deps test unit integration packaging lint demo certs clean \
	memcheck soak \
	seccomp-profile

all: build/$(PROG)

build/$(PROG): $(REL_OBJS)
	$(Q)$(CC) $(REL_LDFLAGS) -o $@ $(REL_OBJS) $(PKG_LIBS)

build/rel/%.o: src/%.c | build/rel
	$(Q)$(CC) $(REL_CFLAGS) -c -o $@ $<

build/test/%.o: src/%.c | build/test
	$(Q)$(CC) $(TEST_CFLAGS) -c -o $@ $<

build/test/$(PROG): $(TEST_OBJS)
	$(Q)$(CC) $(TEST_LDFLAGS) -o $@ $(TEST_OBJS) $(PKG_LIBS)

build/test/test_%: tests/unit/test_%.c $(LIB_TEST_OBJS)
	$(Q)$(CC) $(TEST_CFLAGS) -o $@ $< $(LIB_TEST_OBJS) $(TEST_LDFLAGS) \
	    $(PKG_LIBS) $(shell pkg-config --libs cmocka)

build/test/pp2_backend: tests/tools/pp2_backend.c include/mtlsd/proxy_v2.h
	$(Q)$(CC) -std=c11 -D_GNU_SOURCE -Iinclude $(WARN) -O2 -o $@ $<

build/test/keyupdate_client: tests/tools/keyupdate_client.c
	$(Q)$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O2 -o $@ $< -lssl -lcrypto

build/debug/%.o: src/%.c | build/debug
	$(Q)$(CC) $(DBG_CFLAGS) -c -o $@ $<

build/debug/$(PROG): $(DBG_OBJS)
	$(Q)$(CC) -o $@ $(DBG_OBJS) $(PKG_LIBS)

build/rel build/test build/debug:
	$(Q)mkdir -p $@

# valgrind memcheck over most of the integration suite (~6 min).
memcheck: build/debug/$(PROG) build/test/pp2_backend \
	    build/test/keyupdate_client certs
	bash tests/memcheck.sh build/debug/$(PROG)

# ~2000 concurrent connections, SIGHUP every second; SOAK_SECONDS (180).
soak: build/$(PROG) certs
	/usr/bin/python3 tests/soak/soak.py --mtlsd build/$(PROG)

deps:
	@missing=""; for p in $(DEB_ALL); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	        grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "deps: installing$$missing"; \
	    apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

unit: $(UNIT_TESTS:%=build/test/%)
	@fail=0; for t in $(UNIT_TESTS); do \
	    ASAN_OPTIONS=detect_leaks=1 ./build/test/$$t || fail=1; \
	done; exit $$fail

integration: build/test/$(PROG) build/test/pp2_backend \
	    build/test/keyupdate_client certs
	/usr/bin/python3 tests/integration/run.py --mtlsd build/test/$(PROG)

packaging: build/$(PROG)
	bash tests/packaging/check.sh

# docker/seccomp.json is generated from src/sandbox_syscalls.c.
seccomp-profile:
	/usr/bin/python3 tools/gen-seccomp-profile.py

# Static analysis, zero findings.  Suppressions are justified where they
# are written (.clang-tidy, and inline next to the code).
CPPCHECK_FLAGS=	--enable=warning,style,performance,portability --std=c11 \
		-D_GNU_SOURCE -D__GNUC__ -Iinclude \
		--include=/usr/include/$(shell $(CC) -print-multiarch)/sys/queue.h \
		--inline-suppr --quiet --error-exitcode=1 \
		--suppress=missingIncludeSystem
# variableScope asks for declarations inside inner blocks; style(9), our
# style, declares locals at the top of the function.
CPPCHECK_FLAGS+= --suppress=variableScope

lint:
	cppcheck $(CPPCHECK_FLAGS) src tests/tools/pp2_backend.c \
	    tests/tools/keyupdate_client.c
	clang-tidy --quiet $(addprefix src/,$(SRCS)) -- -std=c11 \
	    -D_GNU_SOURCE -Iinclude $(PKG_CFLAGS) 2>/dev/null
	@for f in $(SRCS); do \
	    $(CC) -std=c11 -D_GNU_SOURCE -Iinclude $(PKG_CFLAGS) -O1 \
	        -fanalyzer -Werror -c -o /dev/null src/$$f || exit 1; \
	done
	@echo "lint: cppcheck, clang-tidy and gcc -fanalyzer found nothing"

test: deps
	$(MAKE) lint
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) packaging
	$(MAKE) fuzz-smoke

certs:
	@./certs-example/make-certs.sh certs-example/out >/dev/null

demo: deps
	$(MAKE) all certs
	./tests/demo.sh build/$(PROG)

clean:
	rm -rf build certs-example/out

-include $(REL_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(DBG_OBJS:.o=.d)

# Benchmarks and fuzzing keep their rules beside their sources.
-include bench/bench.mk
-include fuzz/fuzz.mk
