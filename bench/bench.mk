# The benchmark: mtlsd against stunnel4, HAProxy and nginx (stream).
# Included by the top Makefile.  A benchmark, not a test: never part of
# "make test".  See bench/README.md.
#
#   make bench            build, install the peers if missing, run, print
#                         the table (BENCH_SECONDS, BENCH_RUNS, ... below)
#   make bench-tools      only the load generator, backend and references
#   make bench-deps       only the Debian packages
#   make bench-profile    perf profile of mtlsd under the handshake load

BENCH_BIN=	build/bench
BENCH_TOOLS=	loadgen backend tlsecho hsmem
BENCH_CFLAGS=	-std=c11 -D_GNU_SOURCE -O2 -g $(WARN) \
		$(shell pkg-config --cflags openssl 2>/dev/null)
BENCH_LIBS=	$(shell pkg-config --libs openssl 2>/dev/null || \
		    echo -lssl -lcrypto)
BENCH_DEBS=	stunnel4 haproxy nginx libnginx-mod-stream util-linux linux-perf \
		procps python3 openssl
BENCH_PY?=	/usr/bin/python3

.PHONY: bench bench-tools bench-deps bench-profile

bench: bench-deps
	$(MAKE) all certs bench-tools
	$(BENCH_PY) bench/run.py --mtlsd build/mtlsd --bin $(BENCH_BIN) \
	    --certs certs-example/out

bench-profile: bench-deps
	$(MAKE) all certs bench-tools
	$(BENCH_PY) bench/run.py --mtlsd build/mtlsd --bin $(BENCH_BIN) \
	    --certs certs-example/out --profile

bench-tools: $(BENCH_TOOLS:%=$(BENCH_BIN)/%)

$(BENCH_BIN)/%: bench/%.c | $(BENCH_BIN)
	$(Q)$(CC) $(BENCH_CFLAGS) -o $@ $< $(BENCH_LIBS)

$(BENCH_BIN):
	$(Q)mkdir -p $@

# Installing nginx or haproxy must not leave a system service holding
# ports: a policy-rc.d that forbids starting services is put in place for
# the install (when there is none), and whatever the packages still
# managed to start is stopped and disabled.  The benchmark never uses
# those services; it runs its own instances with its own configurations.
bench-deps:
	@missing=""; for p in $(BENCH_DEBS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	        grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "bench-deps: installing$$missing"; \
	    rcd=""; \
	    if [ ! -e /usr/sbin/policy-rc.d ]; then \
	        rcd=/usr/sbin/policy-rc.d; \
	        printf '#!/bin/sh\nexit 101\n' >$$rcd && chmod 755 $$rcd; \
	        trap 'rm -f '$$rcd EXIT; \
	    fi; \
	    apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        $$missing || exit 1; \
	    for s in nginx haproxy stunnel4; do \
	        case " $$missing " in *" $$s "*) ;; *) continue;; esac; \
	        if [ -d /run/systemd/system ]; then \
	            systemctl disable --now $$s >/dev/null 2>&1 || true; \
	        elif [ -x /etc/init.d/$$s ]; then \
	            /etc/init.d/$$s stop >/dev/null 2>&1 || true; \
	            update-rc.d $$s disable >/dev/null 2>&1 || true; \
	        fi; \
	    done; \
	fi
