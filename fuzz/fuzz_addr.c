/*
 * Fuzzes addr_parse(), the reader of every listen and target address.
 *
 * The input is the address text.  Beyond "never crash", it checks what
 * addr.h promises:
 *  - a refusal writes a sentence into err and leaves nothing half-set;
 *  - addr_str() gives "the canonical text form, as addr_parse reads it
 *    back", in a buffer of ADDR_STR_MAX as every caller uses: parsing it
 *    again yields the same address, and printing that gives the same text;
 *  - addr_is_local() is deterministic, agrees with its documented rule
 *    (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104, unix) and survives the
 *    round trip.
 * Any violation aborts, so that libFuzzer keeps the input.
 */
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtlsd/addr.h"

/* More than any accepted address: ADDR_HOST_MAX plus brackets and port. */
#define FUZZ_ADDR_INPUT_MAX	1024

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void	fuzz_fail(const char *, const char *, const char *)
		    __attribute__((noreturn));
static int	fuzz_local_rule(const struct addr *);
static int	fuzz_addr_same(const struct addr *, const struct addr *);

static void
fuzz_fail(const char *what, const char *in, const char *more)
{
	fprintf(stderr, "fuzz_addr: %s\n  input: \"%s\"\n  %s\n", what, in,
	    more != NULL ? more : "");
	abort();
}

/* The rule of addr.h, written out independently of addr.c. */
static int
fuzz_local_rule(const struct addr *a)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	const uint8_t			*b;
	static const uint8_t		 mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0,
	    0, 0, 0xff, 0xff };

	if (a->a_kind == ADDR_UNIX)
		return 1;
	if (a->a_kind == ADDR_NAME)
		return 0;
	if (a->a_ss.ss_family == AF_INET) {
		sin = (const struct sockaddr_in *)&a->a_ss;
		b = (const uint8_t *)&sin->sin_addr;
		return b[0] == 127;
	}
	sin6 = (const struct sockaddr_in6 *)&a->a_ss;
	b = sin6->sin6_addr.s6_addr;
	if (memcmp(b, in6addr_loopback.s6_addr, 16) == 0)
		return 1;
	return memcmp(b, mapped, 12) == 0 && b[12] == 127;
}

/* What a listener or a connect() uses: kind, port, path, socket address. */
static int
fuzz_addr_same(const struct addr *a, const struct addr *b)
{
	if (a->a_kind != b->a_kind || a->a_port != b->a_port ||
	    a->a_sslen != b->a_sslen ||
	    memcmp(&a->a_ss, &b->a_ss, sizeof(a->a_ss)) != 0)
		return 0;
	switch (a->a_kind) {
	case ADDR_UNIX:
		return strcmp(a->a_path, b->a_path) == 0;
	case ADDR_NAME:
		return strcmp(a->a_host, b->a_host) == 0;
	case ADDR_INET:
		return 1;
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct addr	 a, b;
	char			 in[FUZZ_ADDR_INPUT_MAX + 1];
	char			 err[512], s1[ADDR_STR_MAX], s2[ADDR_STR_MAX];
	char			 big[1024];
	int			 local;

	if (size > FUZZ_ADDR_INPUT_MAX)
		return -1;
	memcpy(in, data, size);
	in[size] = '\0';

	memset(err, 'x', sizeof(err));
	if (addr_parse(in, &a, err, sizeof(err)) == -1) {
		if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
			fuzz_fail("refused without a sentence in err", in,
			    NULL);
		return 0;
	}

	switch (a.a_kind) {
	case ADDR_INET:
		if (a.a_port == 0 || (a.a_ss.ss_family != AF_INET &&
		    a.a_ss.ss_family != AF_INET6))
			fuzz_fail("ADDR_INET without a port or family", in,
			    NULL);
		break;
	case ADDR_NAME:
		if (a.a_port == 0 || a.a_host[0] == '\0')
			fuzz_fail("ADDR_NAME without host or port", in, NULL);
		break;
	case ADDR_UNIX:
		if (a.a_path[0] != '/')
			fuzz_fail("unix path not absolute", in, NULL);
		break;
	default:
		fuzz_fail("unknown kind", in, NULL);
	}

	local = addr_is_local(&a);
	if (local != addr_is_local(&a))
		fuzz_fail("addr_is_local not deterministic", in, NULL);
	if (local != fuzz_local_rule(&a))
		fuzz_fail("addr_is_local disagrees with the rule of addr.h",
		    in, local ? "said local" : "said not local");

	/* The text form never needs more than the callers' ADDR_STR_MAX. */
	addr_str(&a, big, sizeof(big));
	addr_str(&a, s1, sizeof(s1));
#ifdef FUZZ_IGNORE_ADDR_STR_MAX
	/* Known bug (fuzz/regressions/fuzz_addr): go on with the whole text. */
	if (strlen(big) >= sizeof(s1))
		return 0;
#endif
	if (strcmp(big, s1) != 0)
		fuzz_fail("addr_str cut short in ADDR_STR_MAX bytes", in, big);

	if (addr_parse(s1, &b, err, sizeof(err)) == -1)
		fuzz_fail("addr_str output does not parse back", in, s1);
	if (!fuzz_addr_same(&a, &b))
		fuzz_fail("parse(str(parse(x))) differs from parse(x)", in,
		    s1);
	addr_str(&b, s2, sizeof(s2));
	if (strcmp(s1, s2) != 0)
		fuzz_fail("addr_str not stable over a round trip", in, s2);
	if (addr_is_local(&b) != local)
		fuzz_fail("addr_is_local changed over a round trip", in, s1);
	return 0;
}
