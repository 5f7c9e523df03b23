# Fuzzing with libFuzzer; included by the top Makefile.
#
#   make fuzz [FUZZ_SECONDS=60]	build every harness, replay the
#				regressions, fuzz each for FUZZ_SECONDS
#   make fuzz-smoke		the same for FUZZ_SMOKE_SECONDS (20) each
#   make build/fuzz/fuzz_conf	build one harness
#
# Harnesses and the src objects they link are built with clang and
# ASan/UBSan into build/fuzz/; fuzzing writes only there (working corpora,
# artifacts, logs).  See fuzz/README.md.

FUZZ_CC?=		clang
FUZZ_SECONDS?=		60
FUZZ_SMOKE_SECONDS?=	20
FUZZ_HARNESSES?=	fuzz_addr fuzz_conf fuzz_policy fuzz_tls_server \
			$(if $(wildcard src/pp2.c),fuzz_pp2)

# Every src object but main.o, in an archive: each harness pulls in only
# what it uses, and a file split in src/ needs no change here.
FUZZ_LIB=		build/fuzz/libmtlsd.a
FUZZ_LIB_OBJS=		$(filter-out build/fuzz/obj/main.o,\
			    $(SRCS:%.c=build/fuzz/obj/%.o))

FUZZ_SAN=		-fsanitize=address,undefined -fno-sanitize-recover=all \
			-fno-omit-frame-pointer
# FUZZ_DEFS: e.g. -DFUZZ_IGNORE_ADDR_STR_MAX, to fuzz on past a known bug.
FUZZ_DEFS?=
FUZZ_CFLAGS=		$(BASE_CFLAGS) -O1 -g $(FUZZ_SAN) \
			-fsanitize=fuzzer-no-link $(FUZZ_DEFS)
FUZZ_LDFLAGS=		$(FUZZ_SAN) -fsanitize=fuzzer
FUZZ_BINS=		$(FUZZ_HARNESSES:%=build/fuzz/%)

.PHONY: fuzz fuzz-smoke

fuzz: $(FUZZ_BINS)
	$(Q)./fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_HARNESSES)

fuzz-smoke: $(FUZZ_BINS)
	$(Q)./fuzz/run.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_HARNESSES)

build/fuzz/obj/%.o: src/%.c | build/fuzz/obj
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

build/fuzz/obj/fuzz_%.o: fuzz/fuzz_%.c | build/fuzz/obj
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $(FUZZ_LIB_OBJS)

build/fuzz/fuzz_%: build/fuzz/obj/fuzz_%.o $(FUZZ_LIB)
	$(Q)$(FUZZ_CC) $(FUZZ_LDFLAGS) -o $@ $< $(FUZZ_LIB) $(PKG_LIBS)

build/fuzz/obj:
	$(Q)mkdir -p $@

-include $(wildcard build/fuzz/obj/*.d)
