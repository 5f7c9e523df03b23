/*
 * Fuzzes the identity policy: which identities a certificate presents,
 * which rule values are accepted, and the verdict of the rules on the
 * identities.
 *
 * Input: a 2-byte big-endian length L, L bytes of DER for d2i_X509(), then
 * up to FUZZ_MAXRULES records of [kind byte][length byte][pattern].  Each
 * pattern goes through policy_rule_check() as conf.c would; the accepted
 * ones form the allow list.  Every string is its own malloc'd copy, so
 * ASan sees a read past its end.
 *
 * Checked beyond "never crash, never leak":
 *  - identities: kinds in the documented order, no empty value, no control
 *    character, SANs 7-bit, IPs in canonical text form;
 *  - policy_judge() twice gives the identical verdict;
 *  - the verdict is the first match, rules in order then identities in
 *    order, found again here by brute force through the public matchers;
 *  - the matchers are deterministic, an accepted pattern matches itself,
 *    and what a match means is re-checked independently for dns, ip and
 *    email; a uri wildcard never stands for "", "." or "..";
 *  - policy_identities_str() cuts only at a UTF-8 boundary, with "...".
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "mtlsd/conf.h"
#include "mtlsd/policy.h"

#define FUZZ_MAXRULES	16

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const char *fuzz_kind_name(enum rule_kind);
static void	fuzz_fail(const char *, ...)
		    __attribute__((__format__(printf, 1, 2), noreturn));
static int	fuzz_match(enum rule_kind, const char *, const char *);
static int	fuzz_ci_eq(const char *, const char *, size_t);
static size_t	fuzz_dns_len(const char *);
static void	fuzz_check_ids(const struct identities *);
static void	fuzz_check_verdict(const struct allow *,
		    const struct identities *, const struct verdict *);
static void	fuzz_check_matchers(const char *, const char *);
static int	fuzz_uri_seg_bad(const char *, size_t);
static void	fuzz_check_uri_wild(const char *, const char *);
static char	*fuzz_uri_fill(const char *, const char *);
static void	fuzz_expect(enum rule_kind, const char *, const char *, int);
static void	fuzz_check_rule(enum rule_kind, const char *);
static void	fuzz_check_str(const struct identities *);

/* conf.c has the names, but this harness links policy.o alone. */
static const char *
fuzz_kind_name(enum rule_kind kind)
{
	static const char *const names[] = { "uri", "dns", "ip", "email",
	    "cn", "ou", "o", "any" };

	return (unsigned)kind <= RULE_ANY ? names[kind] : "?";
}

static void
fuzz_fail(const char *fmt, ...)
{
	va_list	 ap;

	fprintf(stderr, "fuzz_policy: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* What policy_judge() does for one rule and one identity of its kind. */
static int
fuzz_match(enum rule_kind kind, const char *pattern, const char *value)
{
	switch (kind) {
	case RULE_URI:
		return policy_match_uri(pattern, value);
	case RULE_DNS:
		return policy_match_dns(pattern, value);
	case RULE_IP:
		return policy_match_ip(pattern, value);
	case RULE_EMAIL:
		return policy_match_email(pattern, value);
	case RULE_CN:
	case RULE_OU:
	case RULE_O:
		return strcmp(pattern, value) == 0;
	default:
		return 0;
	}
}

static int
fuzz_ci_eq(const char *a, const char *b, size_t n)
{
	size_t	i;
	int	ca, cb;

	for (i = 0; i < n; i++) {
		ca = (unsigned char)a[i];
		cb = (unsigned char)b[i];
		if (ca >= 'A' && ca <= 'Z')
			ca += 'a' - 'A';
		if (cb >= 'A' && cb <= 'Z')
			cb += 'a' - 'A';
		if (ca != cb)
			return 0;
	}
	return 1;
}

static size_t
fuzz_dns_len(const char *s)
{
	size_t	n = strlen(s);

	return (n > 0 && s[n - 1] == '.') ? n - 1 : n;
}

static void
fuzz_check_ids(const struct identities *ids)
{
	const struct identity	*id;
	const unsigned char	*p;
	unsigned char		 bin[16];
	char			 txt[INET6_ADDRSTRLEN];
	size_t			 i;
	int			 af;

	for (i = 0; i < ids->ids_count; i++) {
		id = &ids->ids_list[i];
		if (id->id_kind > RULE_O)
			fuzz_fail("identity %zu has kind %d", i,
			    (int)id->id_kind);
		if (i > 0 && id->id_kind < ids->ids_list[i - 1].id_kind)
			fuzz_fail("identity %zu out of order", i);
		if (id->id_value == NULL || id->id_value[0] == '\0')
			fuzz_fail("identity %zu empty", i);
		for (p = (const unsigned char *)id->id_value; *p != '\0'; p++)
			if (*p < 0x20 || *p == 0x7f || (*p > 0x7f &&
			    id->id_kind <= RULE_EMAIL))
				fuzz_fail("identity %zu holds byte 0x%02x", i,
				    *p);
		if (id->id_kind != RULE_IP)
			continue;
		af = strchr(id->id_value, ':') != NULL ? AF_INET6 : AF_INET;
		if (inet_pton(af, id->id_value, bin) != 1 ||
		    inet_ntop(af, bin, txt, sizeof(txt)) == NULL ||
		    strcmp(txt, id->id_value) != 0)
			fuzz_fail("ip identity \"%s\" not canonical",
			    id->id_value);
	}
}

static void
fuzz_check_verdict(const struct allow *al, const struct identities *ids,
    const struct verdict *v)
{
	const struct allow_rule	*r;
	const struct identity	*id;
	size_t			 i, j;

	if (memchr(v->v_reason, '\0', sizeof(v->v_reason)) == NULL ||
	    memchr(v->v_identity, '\0', sizeof(v->v_identity)) == NULL ||
	    v->v_reason[0] == '\0')
		fuzz_fail("verdict text not a string");

	/* The first match: rules in order, then identities in order. */
	for (i = 0; i < al->al_nrules; i++) {
		r = &al->al_rules[i];
		if (r->ar_kind == RULE_ANY) {
			if (!v->v_accept || v->v_rule != r ||
			    strcmp(v->v_match, policy_primary(ids)) != 0)
				fuzz_fail("rule %zu (any) should have matched "
				    "first", i);
			return;
		}
		for (j = 0; j < ids->ids_count; j++) {
			id = &ids->ids_list[j];
			if (id->id_kind != r->ar_kind ||
			    !fuzz_match(r->ar_kind, r->ar_value, id->id_value))
				continue;
			if (!v->v_accept || v->v_rule != r ||
			    v->v_match != id->id_value)
				fuzz_fail("rule %zu (%s \"%s\") matches \"%s\" "
				    "first, but the verdict says %s",
				    i, fuzz_kind_name(r->ar_kind),
				    r->ar_value, id->id_value,
				    v->v_reason);
			if (strncmp(v->v_identity, id->id_value,
			    strlen(v->v_identity) > 3 ?
			    strlen(v->v_identity) - 3 : 0) != 0)
				fuzz_fail("v_identity is not the match");
			return;
		}
	}
	if (v->v_accept || v->v_rule != NULL)
		fuzz_fail("accepted, but no rule matches: %s", v->v_reason);
}

static void
fuzz_check_matchers(const char *p, const char *s)
{
	int		 m[4], n, i;
	const char	*pa, *sa, *seg;
	size_t		 pn, sn;
	unsigned char	 a[16], b[16];

	m[0] = policy_match_uri(p, s);
	m[1] = policy_match_dns(p, s);
	m[2] = policy_match_ip(p, s);
	m[3] = policy_match_email(p, s);
	if (m[0] != policy_match_uri(p, s) || m[1] != policy_match_dns(p, s) ||
	    m[2] != policy_match_ip(p, s) ||
	    m[3] != policy_match_email(p, s))
		fuzz_fail("a matcher is not deterministic");
	for (i = 0; i < 4; i++)
		if (m[i] != 0 && m[i] != 1)
			fuzz_fail("a matcher returned %d", m[i]);

	if (m[1]) {
		/* Equal names, or "*." and exactly one non-empty label. */
		pn = fuzz_dns_len(p);
		sn = fuzz_dns_len(s);
		if (!(pn == sn && fuzz_ci_eq(p, s, pn))) {
			if (pn < 3 || p[0] != '*' || p[1] != '.' ||
			    (seg = memchr(s, '.', sn)) == NULL || seg == s ||
			    memchr(s, '*', sn) != NULL ||
			    sn - (size_t)(seg - s) != pn - 1 ||
			    !fuzz_ci_eq(seg, p + 1, pn - 1))
				fuzz_fail("dns \"%s\" matched \"%s\"", p, s);
		}
	}
	if (m[2]) {
		n = inet_pton(AF_INET, p, a) == 1 ? 4 :
		    inet_pton(AF_INET6, p, a) == 1 ? 16 : 0;
		if (n == 0 || (n == 4 ? inet_pton(AF_INET, s, b) :
		    inet_pton(AF_INET6, s, b)) != 1 ||
		    memcmp(a, b, (size_t)n) != 0)
			fuzz_fail("ip \"%s\" matched \"%s\"", p, s);
	}
	if (m[3]) {
		pa = strrchr(p, '@');
		sa = strrchr(s, '@');
		if (pa == NULL || sa == NULL || pa - p != sa - s ||
		    memcmp(p, s, (size_t)(pa - p)) != 0 ||
		    strlen(pa) != strlen(sa) || !fuzz_ci_eq(pa, sa, strlen(pa)))
			fuzz_fail("email \"%s\" matched \"%s\"", p, s);
	}
	if (m[0] && strcmp(p, s) != 0)
		fuzz_check_uri_wild(p, s);
}

/*
 * 1 if the n bytes at s are a segment no wildcard may stand for: "", "."
 * or "..", also spelt with %2e (what policy_uri_seg_ok() refuses).
 */
static int
fuzz_uri_seg_bad(const char *s, size_t n)
{
	static const char *const bad[] = { ".", "..", "%2e", ".%2e", "%2e.",
	    "%2e%2e" };
	size_t			 i;

	if (n == 0)
		return 1;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (n == strlen(bad[i]) && strncasecmp(s, bad[i], n) == 0)
			return 1;
	return 0;
}

/*
 * A uri pattern matched a different text: both are URIs, and where the
 * pattern has "*" or "**" after "scheme://authority", no segment it
 * stands for is one fuzz_uri_seg_bad() names.
 */
static void
fuzz_check_uri_wild(const char *p, const char *s)
{
	const char	*pa, *sa, *seg, *pseg;
	size_t		 pn, sn, k, ks;
	int		 one, all;

	if ((pa = strstr(p, "://")) == NULL || (sa = strstr(s, "://")) == NULL)
		fuzz_fail("uri \"%s\" matched \"%s\" without ://", p, s);
	pseg = pa + 3 + strcspn(pa + 3, "/?#");
	seg = sa + 3 + strcspn(sa + 3, "/?#");
	while (*pseg == '/' && *seg == '/') {
		pseg++;
		seg++;
		pn = strcspn(pseg, "/");
		sn = strcspn(seg, "/");
		one = pn == 1 && pseg[0] == '*';
		all = pn == 2 && pseg[0] == '*' && pseg[1] == '*';
		if (all)
			sn = strlen(seg);	/* one or more: the rest */
		for (k = 0; (one || all) && k <= sn; k += ks + 1) {
			ks = strcspn(seg + k, "/");
			if (ks > sn - k)
				ks = sn - k;
			if (fuzz_uri_seg_bad(seg + k, ks))
				fuzz_fail("uri wildcard of \"%s\" stood for a "
				    "bad segment of \"%s\"", p, s);
		}
		pseg += pn;
		seg += sn;
	}
}

/*
 * pattern with each wildcard segment ("*" or "**") replaced by seg, in a
 * malloc'd string, or NULL when pattern has no wildcard segment.
 */
static char *
fuzz_uri_fill(const char *pattern, const char *seg)
{
	const char	*p, *path;
	char		*out, *o;
	size_t		 n, sl, wild = 0;

	if ((path = strstr(pattern, "://")) == NULL)
		return NULL;
	path += 3 + strcspn(path + 3, "/?#");
	sl = strlen(seg);
	if ((out = malloc(strlen(pattern) * (sl + 1) + 1)) == NULL)
		return NULL;
	memcpy(out, pattern, (size_t)(path - pattern));
	o = out + (path - pattern);
	for (p = path; *p == '/'; p += n) {
		*o++ = *p++;
		n = strcspn(p, "/");
		if ((n == 1 && p[0] == '*') ||
		    (n == 2 && p[0] == '*' && p[1] == '*')) {
			memcpy(o, seg, sl);
			o += sl;
			wild++;
		} else {
			memcpy(o, p, n);
			o += n;
		}
	}
	strcpy(o, p);
	if (wild == 0) {
		free(out);
		return NULL;
	}
	return out;
}

static void
fuzz_expect(enum rule_kind kind, const char *pattern, const char *value,
    int want)
{
	if (fuzz_match(kind, pattern, value) != want)
		fuzz_fail("%s rule \"%s\" %s \"%s\"", fuzz_kind_name(kind),
		    pattern, want ? "does not match" : "matches", value);
}

/*
 * What an accepted rule must match and must not, built from the rule:
 * itself; a uri wildcard stands for a plain segment ("a", "...") but
 * never for "", "." or ".." in any spelling; "*.rest" stands for exactly
 * one leftmost label; dns names and email domains ignore ASCII case, and
 * a dns name its root dot.
 */
static void
fuzz_check_rule(enum rule_kind kind, const char *pattern)
{
	static const char *const good[] = { "a", "...", "%2e%2e%2e", "*" };
	static const char *const bad[] = { "", ".", "..", "%2e", "%2E",
	    ".%2e", "%2e.", "%2e%2E" };
	char		*v;
	size_t		 i, n;

	if (kind == RULE_ANY)
		return;
	fuzz_expect(kind, pattern, pattern, 1);
	n = strlen(pattern);
	if ((v = malloc(n + 8)) == NULL)
		return;
	switch (kind) {
	case RULE_URI:
		free(v);
		for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
			if ((v = fuzz_uri_fill(pattern, good[i])) != NULL) {
				fuzz_expect(kind, pattern, v, 1);
				free(v);
			}
		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			if ((v = fuzz_uri_fill(pattern, bad[i])) != NULL) {
				fuzz_expect(kind, pattern, v, 0);
				free(v);
			}
		return;
	case RULE_DNS:
		for (i = 0; i <= n; i++)
			v[i] = pattern[i] >= 'a' && pattern[i] <= 'z' ?
			    pattern[i] - 'a' + 'A' : pattern[i];
		fuzz_expect(kind, pattern, v, 1);
		if (pattern[n - 1] != '.') {
			snprintf(v, n + 8, "%s.", pattern);
			fuzz_expect(kind, pattern, v, 1);
		}
		if (n < 3 || pattern[0] != '*' || pattern[1] != '.')
			break;
		snprintf(v, n + 8, "a%s", pattern + 1);
		fuzz_expect(kind, pattern, v, 1);
		snprintf(v, n + 8, "Xy-1%s", pattern + 1);
		fuzz_expect(kind, pattern, v, 1);
		fuzz_expect(kind, pattern, pattern + 1, 0);
		snprintf(v, n + 8, "a.b%s", pattern + 1);
		fuzz_expect(kind, pattern, v, 0);
		snprintf(v, n + 8, "*.a%s", pattern + 1);
		fuzz_expect(kind, pattern, v, 0);
		break;
	case RULE_EMAIL:
		memcpy(v, pattern, n + 1);
		for (i = (size_t)(strrchr(v, '@') - v); i < n; i++)
			if (v[i] >= 'a' && v[i] <= 'z')
				v[i] = v[i] - 'a' + 'A';
		fuzz_expect(kind, pattern, v, 1);
		break;
	default:
		break;
	}
	free(v);
}

/* Cut text ends in "..." after a prefix that stops at a UTF-8 boundary. */
static void
fuzz_check_str(const struct identities *ids)
{
	static const size_t	 sizes[] = { 1, 2, 3, 4, 5, 8, 13, 64, 200 };
	char			 full[8192], buf[256];
	size_t			 i, n;

	policy_identities_str(ids, full, sizeof(full));
	if (strlen(full) + 1 >= sizeof(full))
		return;		/* itself cut: nothing to compare with */
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		memset(buf, 'Z', sizeof(buf));
		policy_identities_str(ids, buf, sizes[i]);
		n = strnlen(buf, sizes[i]);
		if (n >= sizes[i])
			fuzz_fail("identities_str overran %zu bytes", sizes[i]);
		if (strcmp(buf, full) == 0)
			continue;
		if (sizes[i] < 4)
			continue;	/* no room for the dots */
		if (n < 3 || strcmp(buf + n - 3, "...") != 0 ||
		    strncmp(buf, full, n - 3) != 0)
			fuzz_fail("identities_str cut badly in %zu: \"%s\" of "
			    "\"%s\"", sizes[i], buf, full);
		if (((unsigned char)full[n - 3] & 0xc0) == 0x80)
			fuzz_fail("identities_str cut inside a UTF-8 "
			    "character in %zu: \"%s\"", sizes[i], buf);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct allow_rule	 rules[FUZZ_MAXRULES];
	char			*pats[FUZZ_MAXRULES];
	struct allow		 al;
	struct identities	 ids;
	struct verdict		 v1, v2;
	const unsigned char	*p;
	X509			*cert = NULL;
	char			 err[512];
	size_t			 certlen, off, len, npats = 0, i, j;
	unsigned int		 kind;

	if (size < 2)
		return 0;
	certlen = (size_t)data[0] << 8 | data[1];
	if (certlen > size - 2)
		certlen = size - 2;
	p = data + 2;
	if (certlen > 0)
		cert = d2i_X509(NULL, &p, (long)certlen);
	ERR_clear_error();

	memset(&al, 0, sizeof(al));
	al.al_rules = rules;
	for (off = 2 + certlen; off + 2 <= size && npats < FUZZ_MAXRULES;
	    off += len) {
		kind = data[off] % (RULE_ANY + 2);	/* one past: unknown */
		len = data[off + 1];
		off += 2;
		if (len > size - off)
			len = size - off;
		if ((pats[npats] = malloc(len + 1)) == NULL)
			break;
		memcpy(pats[npats], data + off, len);
		pats[npats][len] = '\0';
		if (kind == RULE_ANY && len == 0) {
			free(pats[npats]);
			pats[npats] = NULL;
		}
		if (policy_rule_check((enum rule_kind)kind, pats[npats], err,
		    sizeof(err)) == 0) {
			if (kind > RULE_ANY || (kind == RULE_ANY) !=
			    (pats[npats] == NULL))
				fuzz_fail("rule check accepted kind %u \"%s\"",
				    kind, pats[npats] != NULL ? pats[npats] :
				    "(null)");
			rules[al.al_nrules].ar_kind = (enum rule_kind)kind;
			rules[al.al_nrules].ar_value = pats[npats];
			al.al_nrules++;
			fuzz_check_rule((enum rule_kind)kind, pats[npats]);
		} else if (memchr(err, '\0', sizeof(err)) == NULL ||
		    err[0] == '\0')
			fuzz_fail("rule refused without a sentence");
		npats++;
	}

	if (policy_identities(cert, &ids) == -1)
		fuzz_fail("policy_identities failed");
	if (ERR_peek_error() != 0)
		fuzz_fail("policy_identities left errors in the queue");
	fuzz_check_ids(&ids);
	fuzz_check_str(&ids);

	policy_judge(&al, &ids, &v1);
	policy_judge(&al, &ids, &v2);
	if (v1.v_accept != v2.v_accept || v1.v_rule != v2.v_rule ||
	    v1.v_match != v2.v_match ||
	    strcmp(v1.v_identity, v2.v_identity) != 0 ||
	    strcmp(v1.v_reason, v2.v_reason) != 0)
		fuzz_fail("two verdicts differ: \"%s\" / \"%s\"",
		    v1.v_reason, v2.v_reason);
	fuzz_check_verdict(&al, &ids, &v1);

	/* The matchers on random strings: every pattern with every other. */
	for (i = 0; i < npats; i++) {
		if (pats[i] == NULL)
			continue;
		for (j = 0; j < ids.ids_count; j++)
			fuzz_check_matchers(pats[i],
			    ids.ids_list[j].id_value);
		for (j = 0; j < npats; j++)
			if (pats[j] != NULL)
				fuzz_check_matchers(pats[i], pats[j]);
	}

	policy_identities_free(&ids);
	for (i = 0; i < npats; i++)
		free(pats[i]);
	X509_free(cert);
	return 0;
}
