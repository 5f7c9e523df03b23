/*
 * Fuzzes the configuration loader: the input is the text of a config file,
 * read by conf_load_string() through the same parse, defaults and
 * validation as conf_load().
 *
 * It checks conf.h's contract both ways:
 *  - a refusal sets *out to NULL and writes at least one message;
 *  - an accepted configuration is one the rest of mtlsd may trust without
 *    looking again: every route named, unique and with its addresses,
 *    plaintext sides on loopback, at least one allow rule and each rule
 *    accepted by policy_rule_check(), the TLS files named, the numbers in
 *    range, no two listeners on one address; conf_print() can print it.
 *
 * Loading can reach outside the process in two ways; the harness keeps
 * both inside it:
 *  - an inbound listen address that is a host name is resolved at load
 *    time (addr_resolve(), getaddrinfo()), i.e. parsing can do DNS.  This
 *    file defines getaddrinfo() and freeaddrinfo(), which take precedence
 *    over libc's for the objects linked here: names resolve to a made-up
 *    address derived from the name, and those ending in ".invalid" fail.
 *  - libconfig's "@include" opens any file named; such inputs are skipped.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "mtlsd/addr.h"
#include "mtlsd/conf.h"
#include "mtlsd/policy.h"

#define FUZZ_CONF_INPUT_MAX	(64 * 1024)
#define FUZZ_NAME		"fuzz.conf"
#define FUZZ_NAME_CHARS		"ABCDEFGHIJKLMNOPQRSTUVWXYZ"	\
	"abcdefghijklmnopqrstuvwxyz0123456789_.-"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);
int	getaddrinfo(const char *, const char *, const struct addrinfo *,
	    struct addrinfo **);
void	freeaddrinfo(struct addrinfo *);

static ssize_t	fuzz_sink_write(void *, const char *, size_t);
static void	fuzz_fail(const char *, const char *, ...)
		    __attribute__((__format__(printf, 2, 3), noreturn));
static int	fuzz_seconds_ok(double);
static int	fuzz_addr_equal(const struct addr *, const struct addr *);
static void	fuzz_check_route(const struct conf *, size_t, const char *);
static void	fuzz_check(const struct conf *, const char *);

static FILE	*fuzz_errf;	/* counts and discards what conf.c writes */
static size_t	 fuzz_errbytes;
static FILE	*fuzz_devnull;
static unsigned long fuzz_lookups;

/*
 * The resolver of this process: no network.  A name stands for
 * 192.0.2.N, N a hash of the name, so that equal names collide as they
 * would for real; "*.invalid" does not resolve (RFC 6761).
 */
int
getaddrinfo(const char *node, const char *service,
    const struct addrinfo *hints, struct addrinfo **res)
{
	struct {
		struct addrinfo		ai;
		struct sockaddr_in	sin;
	}		*p;
	size_t		 n;
	unsigned int	 h = 0;

	(void)hints;
	*res = NULL;
	fuzz_lookups++;
	if (node == NULL)
		return EAI_NONAME;
	n = strlen(node);
	if (n >= 8 && strcasecmp(node + n - 8, ".invalid") == 0)
		return EAI_NONAME;
	for (; *node != '\0'; node++)
		h = h * 31 + (unsigned char)tolower((unsigned char)*node);
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return EAI_MEMORY;
	p->sin.sin_family = AF_INET;
	p->sin.sin_port = htons(service != NULL ?
	    (uint16_t)strtoul(service, NULL, 10) : 0);
	p->sin.sin_addr.s_addr = htonl(0xc0000200U | (h & 0xff));
	p->ai.ai_family = AF_INET;
	p->ai.ai_socktype = SOCK_STREAM;
	p->ai.ai_addr = (struct sockaddr *)&p->sin;
	p->ai.ai_addrlen = sizeof(p->sin);
	*res = &p->ai;
	return 0;
}

void
freeaddrinfo(struct addrinfo *ai)
{
	free(ai);	/* one block, as getaddrinfo() above made it */
}

static ssize_t
fuzz_sink_write(void *cookie, const char *buf, size_t len)
{
	(void)cookie;
	(void)buf;
	fuzz_errbytes += len;
	return (ssize_t)len;
}

static void
fuzz_fail(const char *text, const char *fmt, ...)
{
	va_list	 ap;

	fprintf(stderr, "fuzz_conf: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n--- input ---\n%s\n--- end ---\n", text);
	abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	cookie_io_functions_t	 io = { NULL, fuzz_sink_write, NULL, NULL };

	(void)argc;
	(void)argv;
	if ((fuzz_errf = fopencookie(NULL, "w", io)) == NULL ||
	    (fuzz_devnull = fopen("/dev/null", "w")) == NULL) {
		perror("fuzz_conf: init");
		exit(1);
	}
	return 0;
}

static int
fuzz_seconds_ok(double v)
{
	return isfinite(v) && v >= 0.0 && v <= 365.0 * 86400.0;
}

static int
fuzz_addr_equal(const struct addr *a, const struct addr *b)
{
	if (a->a_kind == ADDR_UNIX || b->a_kind == ADDR_UNIX)
		return a->a_kind == b->a_kind &&
		    strcmp(a->a_path, b->a_path) == 0;
	return a->a_sslen == b->a_sslen &&
	    memcmp(&a->a_ss, &b->a_ss, a->a_sslen) == 0;
}

static void
fuzz_check_route(const struct conf *c, size_t i, const char *text)
{
	const struct route	*r = &c->c_routes[i], *o;
	const struct tls_conf	*tc = &r->r_tls;
	const struct allow_rule	*ar;
	char			 err[512];
	size_t			 j;

	if (r->r_dir != ROUTE_INBOUND && r->r_dir != ROUTE_OUTBOUND)
		fuzz_fail(text, "route %zu: direction %d", i, (int)r->r_dir);
	if (r->r_name == NULL || r->r_name[0] == '\0' ||
	    strspn(r->r_name, FUZZ_NAME_CHARS) != strlen(r->r_name))
		fuzz_fail(text, "route %zu: bad or missing name", i);
	if (r->r_dir == ROUTE_INBOUND) {
		if (!addr_is_local(&r->r_target))
			fuzz_fail(text, "route %s: inbound target not local",
			    r->r_name);
		if (r->r_listen.a_kind == ADDR_NAME)
			fuzz_fail(text, "route %s: inbound listen never "
			    "resolved", r->r_name);
		if (r->r_proxy_protocol != 0 && r->r_proxy_protocol != 1)
			fuzz_fail(text, "route %s: proxy_protocol %d",
			    r->r_name, r->r_proxy_protocol);
	} else {
		if (!addr_is_local(&r->r_listen))
			fuzz_fail(text, "route %s: outbound listen not local",
			    r->r_name);
		if (r->r_server_name == NULL || r->r_server_name[0] == '\0')
			fuzz_fail(text, "route %s: no server_name", r->r_name);
	}
	if (r->r_allow.al_nrules == 0 || r->r_allow.al_rules == NULL)
		fuzz_fail(text, "route %s: accepted without allow rules",
		    r->r_name);
	for (j = 0; j < r->r_allow.al_nrules; j++) {
		ar = &r->r_allow.al_rules[j];
		if (ar->ar_kind > RULE_ANY)
			fuzz_fail(text, "route %s: rule kind %d", r->r_name,
			    (int)ar->ar_kind);
		if ((ar->ar_kind == RULE_ANY) != (ar->ar_value == NULL))
			fuzz_fail(text, "route %s: rule %zu value/kind "
			    "mismatch", r->r_name, j);
		if (policy_rule_check(ar->ar_kind, ar->ar_value, err,
		    sizeof(err)) == -1)
			fuzz_fail(text, "route %s: rule %s \"%s\" accepted "
			    "by conf but refused by policy: %s", r->r_name,
			    conf_rule_kind_name(ar->ar_kind), ar->ar_value,
			    err);
	}
	if (tc->tc_cert == NULL || tc->tc_cert[0] == '\0' ||
	    tc->tc_key == NULL || tc->tc_key[0] == '\0' ||
	    tc->tc_ca == NULL || tc->tc_ca[0] == '\0')
		fuzz_fail(text, "route %s: cert, key or ca missing", r->r_name);
	if (tc->tc_crl != NULL && tc->tc_crl[0] == '\0')
		fuzz_fail(text, "route %s: empty crl", r->r_name);
	if (tc->tc_ciphers == NULL || tc->tc_ciphersuites == NULL ||
	    tc->tc_groups == NULL)
		fuzz_fail(text, "route %s: cipher settings not filled in",
		    r->r_name);
	if (tc->tc_min_version != TLS1_2_VERSION &&
	    tc->tc_min_version != TLS1_3_VERSION)
		fuzz_fail(text, "route %s: min_version 0x%x", r->r_name,
		    tc->tc_min_version);
	if (!fuzz_seconds_ok(tc->tc_crl_grace) ||
	    !fuzz_seconds_ok(tc->tc_reload_interval))
		fuzz_fail(text, "route %s: crl_grace %g reload_interval %g",
		    r->r_name, tc->tc_crl_grace, tc->tc_reload_interval);

	for (j = 0; j < i; j++) {
		o = &c->c_routes[j];
		if (strcmp(o->r_name, r->r_name) == 0)
			fuzz_fail(text, "two routes named %s", r->r_name);
		if (fuzz_addr_equal(&o->r_listen, &r->r_listen))
			fuzz_fail(text, "routes %s and %s share a listen "
			    "address", o->r_name, r->r_name);
	}
	if (c->c_admin_enabled &&
	    fuzz_addr_equal(&c->c_admin_listen, &r->r_listen))
		fuzz_fail(text, "route %s listens on admin.listen", r->r_name);
}

static void
fuzz_check(const struct conf *c, const char *text)
{
	const struct limits	*l = &c->c_limits;
	size_t			 i;

	if (c->c_nroutes == 0 || c->c_routes == NULL)
		fuzz_fail(text, "accepted without routes");
	if (c->c_path == NULL || strcmp(c->c_path, FUZZ_NAME) != 0)
		fuzz_fail(text, "c_path is not the name given");
	if (c->c_workers < 0 || c->c_workers > 256)
		fuzz_fail(text, "workers %d", c->c_workers);
	if ((unsigned)c->c_log_level > LOG_LEVEL_DEBUG ||
	    (unsigned)c->c_log_format > LOG_FORMAT_JSON)
		fuzz_fail(text, "log level %d format %d", c->c_log_level,
		    c->c_log_format);
	if (c->c_seccomp != 0 && c->c_seccomp != 1)
		fuzz_fail(text, "seccomp %d", c->c_seccomp);
	if (c->c_admin_enabled && (c->c_admin_listen.a_kind == ADDR_UNIX ||
	    !addr_is_local(&c->c_admin_listen)))
		fuzz_fail(text, "admin.listen not on loopback TCP");
	if (l->l_max_connections == 0)
		fuzz_fail(text, "max_connections 0");
	if (!fuzz_seconds_ok(l->l_handshake_timeout) ||
	    !fuzz_seconds_ok(l->l_connect_timeout) ||
	    !fuzz_seconds_ok(l->l_idle_timeout) ||
	    !fuzz_seconds_ok(l->l_drain_timeout) ||
	    l->l_handshake_timeout == 0.0 || l->l_connect_timeout == 0.0 ||
	    l->l_idle_timeout == 0.0 || l->l_drain_timeout == 0.0)
		fuzz_fail(text, "a timeout out of range");
	for (i = 0; i < c->c_nroutes; i++)
		fuzz_check_route(c, i, text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf	*c;
	char		*text, *p;
	int		 rc;

	if (size > FUZZ_CONF_INPUT_MAX)
		return -1;
	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	/* "@include" reads any file: not from a fuzzer (see above). */
	for (p = text; (p = strchr(p, '@')) != NULL; p++)
		if (strncasecmp(p, "@include", 8) == 0) {
			free(text);
			return -1;
		}

	c = (struct conf *)&c;		/* conf_load_string() must clear it */
	fuzz_errbytes = 0;
	rc = conf_load_string(text, FUZZ_NAME, fuzz_errf, &c);
	fflush(fuzz_errf);
	if (rc == -1) {
		if (c != NULL)
			fuzz_fail(text, "refused, but *out is not NULL");
		if (fuzz_errbytes == 0)
			fuzz_fail(text, "refused without a message");
	} else if (rc == 0) {
		if (c == NULL)
			fuzz_fail(text, "accepted, but *out is NULL");
		if (fuzz_errbytes != 0)
			fuzz_fail(text, "accepted, but wrote a message");
		fuzz_check(c, text);
		conf_print(c, fuzz_devnull);
	} else
		fuzz_fail(text, "returned %d", rc);
	conf_free(c);
	free(text);
	return 0;
}
