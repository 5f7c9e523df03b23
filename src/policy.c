/*
 * Identity policy: the identities a certificate presents, and the verdict
 * of a route's allow rules on them.  The same code judges a live handshake
 * and `mtlsd --explain`, so it does no I/O and every verdict says why.
 *
 * Everything fails closed: a value that cannot be trusted as text is no
 * identity, a malformed pattern matches nothing, and a wildcard never
 * stretches over what a human would not read as one segment or label.
 */

#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "mtlsd/policy.h"

#define POLICY_NELEM(a)	(sizeof(a) / sizeof((a)[0]))

/*
 * A bounded text buffer.  Text that does not fit is cut at a UTF-8
 * character boundary and ends in "...", so that a cut value can never pass
 * for a whole one (e.g. a SPIFFE ID cut down to a shorter, valid one).
 */
struct sbuf {
	char		*sb_buf;
	size_t		 sb_len;	/* size of sb_buf */
	size_t		 sb_off;	/* length of the text, < sb_len */
	int		 sb_cut;
};

/* Rules and logs spell the kinds alike (conf.c has its own copy). */
static const char *const policy_kind_names[] = {
	[RULE_URI] = "uri", [RULE_DNS] = "dns", [RULE_IP] = "ip",
	[RULE_EMAIL] = "email", [RULE_CN] = "cn", [RULE_OU] = "ou",
	[RULE_O] = "o", [RULE_ANY] = "any"
};

/* Where each kind comes from, in the order identities list them. */
static const struct {
	enum rule_kind	 kind;
	int		 gen;	/* GENERAL_NAME type of a SAN, or -1 */
	int		 nid;	/* subject attribute, or NID_undef */
} policy_sources[] = {
	{ RULE_URI, GEN_URI, NID_undef },
	{ RULE_DNS, GEN_DNS, NID_undef },
	{ RULE_IP, GEN_IPADD, NID_undef },
	{ RULE_EMAIL, GEN_EMAIL, NID_undef },
	{ RULE_CN, -1, NID_commonName },
	{ RULE_OU, -1, NID_organizationalUnitName },
	{ RULE_O, -1, NID_organizationName }
};

static const char *
policy_kind_name(enum rule_kind kind)
{
	if ((size_t)kind >= POLICY_NELEM(policy_kind_names) ||
	    policy_kind_names[kind] == NULL)
		return ("?");
	return (policy_kind_names[kind]);
}

/* ASCII case folding: strncasecmp() would follow the locale. */
static int
policy_ci_eq(const char *a, const char *b, size_t n)
{
	unsigned char	ca, cb;
	size_t		i;

	for (i = 0; i < n; i++) {
		ca = (unsigned char)a[i];
		cb = (unsigned char)b[i];
		if (ca >= 'A' && ca <= 'Z')
			ca += 'a' - 'A';
		if (cb >= 'A' && cb <= 'Z')
			cb += 'a' - 'A';
		if (ca != cb)
			return (0);
	}
	return (1);
}

/*
 * 1 if len bytes at p can stand as an identity: not empty, no NUL (a C
 * string would silently end there: "good.example\0.evil"), no control
 * character (logs, terminals).  SANs are IA5String, i.e. 7-bit ASCII
 * (RFC 5280), so ascii also refuses bytes above 0x7f.
 */
static int
policy_text_ok(const unsigned char *p, size_t len, int ascii)
{
	size_t	i;

	if (p == NULL || len == 0)
		return (0);
	for (i = 0; i < len; i++)
		if (p[i] < 0x20 || p[i] == 0x7f || (ascii && p[i] > 0x7f))
			return (0);
	return (1);
}

static void
policy_sb_init(struct sbuf *sb, char *buf, size_t len)
{
	sb->sb_buf = buf;
	sb->sb_len = buf != NULL ? len : 0;
	sb->sb_off = 0;
	sb->sb_cut = 0;
	if (sb->sb_len > 0)
		buf[0] = '\0';
}

static void
policy_sb_add(struct sbuf *sb, const char *s)
{
	size_t		end, keep, n, room, dots;
	unsigned char	c;

	if (sb->sb_len == 0 || sb->sb_cut)
		return;
	n = strlen(s);
	room = sb->sb_len - 1 - sb->sb_off;
	if (n <= room) {
		memcpy(sb->sb_buf + sb->sb_off, s, n);
		sb->sb_off += n;
		sb->sb_buf[sb->sb_off] = '\0';
		return;
	}

	/*
	 * Fill the buffer, then step back to make room for the dots, and
	 * further back while the cut would split a UTF-8 sequence: the byte
	 * at the cut must not be a continuation byte.
	 */
	memcpy(sb->sb_buf + sb->sb_off, s, room);
	end = sb->sb_len - 1;
	dots = end >= 3 ? 3 : 0;
	keep = end - dots;
	c = keep == end ? (unsigned char)s[room] :
	    (unsigned char)sb->sb_buf[keep];
	while (keep > 0 && (c & 0xc0) == 0x80) {
		keep--;
		c = (unsigned char)sb->sb_buf[keep];
	}
	memcpy(sb->sb_buf + keep, "...", dots);
	sb->sb_off = keep + dots;
	sb->sb_buf[sb->sb_off] = '\0';
	sb->sb_cut = 1;
}

static int
policy_ids_add(struct identities *ids, size_t *cap, enum rule_kind kind,
    const char *value, size_t len)
{
	struct identity	*list;
	char		*copy;
	size_t		 ncap;

	if (ids->ids_count == *cap) {
		ncap = *cap == 0 ? 8 : *cap * 2;
		list = reallocarray(ids->ids_list, ncap, sizeof(*list));
		if (list == NULL)
			return (-1);
		ids->ids_list = list;
		*cap = ncap;
	}
	if ((copy = malloc(len + 1)) == NULL)
		return (-1);
	memcpy(copy, value, len);
	copy[len] = '\0';
	ids->ids_list[ids->ids_count].id_kind = kind;
	ids->ids_list[ids->ids_count].id_value = copy;
	ids->ids_count++;
	return (0);
}

/* Appends the SANs of one GENERAL_NAME type, in certificate order. */
static int
policy_ids_san(const GENERAL_NAMES *gens, int type, enum rule_kind kind,
    struct identities *ids, size_t *cap)
{
	const GENERAL_NAME	*gn;
	const ASN1_STRING	*s;
	const unsigned char	*data;
	char			 ip[INET6_ADDRSTRLEN];
	size_t			 len;
	int			 i;

	for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		gn = sk_GENERAL_NAME_value(gens, i);
		if (gn == NULL || gn->type != type)
			continue;
		/* d.ia5 is the URI, DNS and email member of the union. */
		s = type == GEN_IPADD ? gn->d.iPAddress : gn->d.ia5;
		if (s == NULL || ASN1_STRING_length(s) <= 0)
			continue;
		data = ASN1_STRING_get0_data(s);
		len = (size_t)ASN1_STRING_length(s);
		if (type == GEN_IPADD) {
			/* Other lengths are name constraints, not hosts. */
			if ((len != 4 && len != 16) || inet_ntop(len == 4 ?
			    AF_INET : AF_INET6, data, ip, sizeof(ip)) == NULL)
				continue;
			data = (const unsigned char *)ip;
			len = strlen(ip);
		} else if (!policy_text_ok(data, len, 1))
			continue;
		if (policy_ids_add(ids, cap, kind, (const char *)data,
		    len) == -1)
			return (-1);
	}
	return (0);
}

/* Appends every subject entry of one attribute, in subject order. */
static int
policy_ids_subject(const X509_NAME *name, int nid, enum rule_kind kind,
    struct identities *ids, size_t *cap)
{
	const X509_NAME_ENTRY	*e;
	unsigned char		*utf8;
	int			 i, n, rc;

	for (i = X509_NAME_get_index_by_NID(name, nid, -1); i >= 0;
	    i = X509_NAME_get_index_by_NID(name, nid, i)) {
		if ((e = X509_NAME_get_entry(name, i)) == NULL)
			continue;
		/*
		 * The conversion refuses malformed input (bad UTF-8, lone
		 * surrogates), so what it returns is well-formed UTF-8.  A
		 * value it refuses, or no memory, only means one identity
		 * less, which can only mean fewer matches.
		 */
		utf8 = NULL;
		n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
		if (n < 0)
			continue;
		rc = 0;
		if (policy_text_ok(utf8, (size_t)n, 0))
			rc = policy_ids_add(ids, cap, kind, (const char *)utf8,
			    (size_t)n);
		OPENSSL_free(utf8);
		if (rc == -1)
			return (-1);
	}
	return (0);
}

int
policy_identities(X509 *cert, struct identities *ids)
{
	GENERAL_NAMES	*gens;
	const X509_NAME	*subj;
	size_t		 cap, i;
	int		 rc;

	ids->ids_list = NULL;
	ids->ids_count = 0;
	if (cert == NULL)
		return (0);

	/*
	 * Decoding errors here (a malformed SAN or name) belong to nobody
	 * upstream: leave the thread's error queue as it was, so that a
	 * later SSL_get_error() is not misled.
	 */
	ERR_set_mark();
	rc = -1;
	cap = 0;

	/* A missing, malformed or duplicated SAN extension gives NULL. */
	gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	subj = X509_get_subject_name(cert);
	for (i = 0; i < POLICY_NELEM(policy_sources); i++) {
		if (policy_sources[i].gen != -1 && gens != NULL &&
		    policy_ids_san(gens, policy_sources[i].gen,
		    policy_sources[i].kind, ids, &cap) == -1)
			goto out;
		if (policy_sources[i].nid != NID_undef && subj != NULL &&
		    policy_ids_subject(subj, policy_sources[i].nid,
		    policy_sources[i].kind, ids, &cap) == -1)
			goto out;
	}
	rc = 0;
 out:
	GENERAL_NAMES_free(gens);
	ERR_pop_to_mark();
	if (rc == -1)
		policy_identities_free(ids);
	return (rc);
}

void
policy_identities_free(struct identities *ids)
{
	size_t	i;

	if (ids == NULL)
		return;
	for (i = 0; i < ids->ids_count; i++)
		free(ids->ids_list[i].id_value);
	free(ids->ids_list);
	ids->ids_list = NULL;
	ids->ids_count = 0;
}

const char *
policy_primary(const struct identities *ids)
{
	static const enum rule_kind order[] = { RULE_URI, RULE_DNS, RULE_CN };
	size_t	i, k;

	if (ids == NULL)
		return ("-");
	for (k = 0; k < POLICY_NELEM(order); k++)
		for (i = 0; i < ids->ids_count; i++)
			if (ids->ids_list[i].id_kind == order[k] &&
			    ids->ids_list[i].id_value != NULL)
				return (ids->ids_list[i].id_value);
	return ("-");
}

void
policy_identities_str(const struct identities *ids, char *buf, size_t len)
{
	struct sbuf	sb;
	size_t		i, n;

	policy_sb_init(&sb, buf, len);
	n = 0;
	for (i = 0; ids != NULL && i < ids->ids_count; i++) {
		if (ids->ids_list[i].id_value == NULL)
			continue;
		if (n++ > 0)
			policy_sb_add(&sb, " ");
		policy_sb_add(&sb, policy_kind_name(ids->ids_list[i].id_kind));
		policy_sb_add(&sb, ":");
		policy_sb_add(&sb, ids->ids_list[i].id_value);
	}
	if (n == 0)
		policy_sb_add(&sb, "-");
}

/*
 * The length of "scheme://authority" at the start of s, or 0 when s has
 * no such prefix.  The authority ends at the first '/', '?' or '#'
 * (RFC 3986), so that a query is never compared case-insensitively.
 */
static size_t
policy_uri_prefix(const char *s)
{
	const char	*p;

	p = s;
	if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
		return (0);
	while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
	    (*p >= '0' && *p <= '9') || *p == '+' || *p == '-' || *p == '.')
		p++;
	if (strncmp(p, "://", 3) != 0)
		return (0);
	p += 3;
	p += strcspn(p, "/?#");
	return ((size_t)(p - s));
}

/*
 * Scheme and host compare case-insensitively; a userinfo ("user@") is
 * case-sensitive like the path, so it may not be folded.
 */
static int
policy_uri_prefix_eq(const char *a, const char *b, size_t n)
{
	const char	*aat, *bat;
	size_t		 at, scheme;

	aat = memrchr(a, '@', n);
	bat = memrchr(b, '@', n);
	if (aat == NULL && bat == NULL)
		return (policy_ci_eq(a, b, n));
	if (aat == NULL || bat == NULL || aat - a != bat - b)
		return (0);
	at = (size_t)(aat - a);
	scheme = strcspn(a, ":");
	return (policy_ci_eq(a, b, scheme) &&
	    memcmp(a + scheme, b + scheme, at - scheme) == 0 &&
	    policy_ci_eq(aat, bat, n - at));
}

/*
 * 1 if a wildcard may stand for the segment s of n bytes: not empty, and
 * not "." or ".." (nor their percent-encoded forms, which normalise to
 * them), so that no wildcard ever walks up or stays in place.
 */
static int
policy_uri_seg_ok(const char *s, size_t n)
{
	size_t	dots, i;

	/* An empty segment counts no dots, and is refused with them. */
	dots = 0;
	for (i = 0; i < n; dots++) {
		if (s[i] == '.')
			i++;
		else if (n - i >= 3 && s[i] == '%' && s[i + 1] == '2' &&
		    (s[i + 2] == 'e' || s[i + 2] == 'E'))
			i += 3;
		else
			return (1);
	}
	return (dots > 2);
}

/* Segment by segment; pat and path each start at '/' or are empty. */
static int
policy_uri_path_match(const char *pat, const char *path)
{
	const char	*ps, *us;
	size_t		 pn, un;

	while (*pat == '/') {
		if (*path != '/')
			return (0);
		ps = pat + 1;
		pn = strcspn(ps, "/");
		us = path + 1;
		un = strcspn(us, "/");
		if (pn == 2 && ps[0] == '*' && ps[1] == '*' && ps[2] == '\0') {
			/* One or more segments, each fit for a wildcard. */
			for (;;) {
				if (!policy_uri_seg_ok(us, un))
					return (0);
				if (us[un] == '\0')
					return (1);
				us += un + 1;
				un = strcspn(us, "/");
			}
		}
		if (pn == 1 && ps[0] == '*') {
			if (!policy_uri_seg_ok(us, un))
				return (0);
		} else if (pn != un || memcmp(ps, us, pn) != 0)
			return (0);
		pat = ps + pn;
		path = us + un;
	}
	return (*pat == '\0' && *path == '\0');
}

int
policy_match_uri(const char *pattern, const char *uri)
{
	size_t	n;

	if (pattern == NULL || uri == NULL)
		return (0);
	n = policy_uri_prefix(pattern);
	if (n == 0 || policy_uri_prefix(uri) != n)
		return (n == 0 && strcmp(pattern, uri) == 0);
	if (!policy_uri_prefix_eq(pattern, uri, n))
		return (0);
	/* policy_rule_check() allows '*' only in wildcard segments. */
	if (strchr(pattern + n, '*') == NULL)
		return (strcmp(pattern + n, uri + n) == 0);
	/*
	 * A query or fragment has no segments to match, and what a
	 * wildcard would mean across one is anybody's guess: refuse.
	 */
	if (strpbrk(uri + n, "?#") != NULL)
		return (0);
	return (policy_uri_path_match(pattern + n, uri + n));
}

/* The length of a DNS name without the root's trailing dot. */
static size_t
policy_dns_len(const char *s)
{
	size_t	n;

	n = strlen(s);
	if (n > 0 && s[n - 1] == '.')
		n--;
	return (n);
}

int
policy_match_dns(const char *pattern, const char *name)
{
	const char	*dot;
	size_t		 label, nn, pn;

	if (pattern == NULL || name == NULL)
		return (0);
	pn = policy_dns_len(pattern);
	nn = policy_dns_len(name);
	if (pn == 0 || nn == 0)
		return (0);

	/*
	 * A wildcard certificate name ("*.example.org") is matched only by
	 * the same text: it is not any one host a pattern could allow.
	 */
	if (memchr(name, '*', nn) != NULL || pn < 3 || pattern[0] != '*' ||
	    pattern[1] != '.' || pattern[2] == '.')
		return (pn == nn && policy_ci_eq(pattern, name, pn));

	/* "*.rest": exactly one non-empty leftmost label, then ".rest". */
	if ((dot = memchr(name, '.', nn)) == NULL || dot == name)
		return (0);
	label = (size_t)(dot - name);
	return (nn - label == pn - 1 && policy_ci_eq(dot, pattern + 1, pn - 1));
}

/* Parses an IPv4 or IPv6 address into buf (16 bytes); its length or -1. */
static int
policy_ip_parse(const char *s, unsigned char *buf)
{
	if (inet_pton(AF_INET, s, buf) == 1)
		return (4);
	if (inet_pton(AF_INET6, s, buf) == 1)
		return (16);
	return (-1);
}

int
policy_match_ip(const char *pattern, const char *ip)
{
	unsigned char	a[16], b[16];
	int		n;

	if (pattern == NULL || ip == NULL)
		return (0);
	/* Different lengths: IPv4 never equals IPv6, even v4-mapped. */
	if ((n = policy_ip_parse(pattern, a)) == -1 ||
	    policy_ip_parse(ip, b) != n)
		return (0);
	return (memcmp(a, b, (size_t)n) == 0);
}

int
policy_match_email(const char *pattern, const char *email)
{
	const char	*pa, *ea;
	size_t		 n;

	if (pattern == NULL || email == NULL)
		return (0);
	/* The domain holds no '@'; a quoted local part might. */
	if ((pa = strrchr(pattern, '@')) == NULL ||
	    (ea = strrchr(email, '@')) == NULL || pa - pattern != ea - email)
		return (0);
	n = (size_t)(pa - pattern);
	if (memcmp(pattern, email, n) != 0 || strlen(pa) != strlen(ea))
		return (0);
	return (policy_ci_eq(pa, ea, strlen(pa)));
}

static int
policy_rule_match(enum rule_kind kind, const char *pattern, const char *value)
{
	switch (kind) {
	case RULE_URI:
		return (policy_match_uri(pattern, value));
	case RULE_DNS:
		return (policy_match_dns(pattern, value));
	case RULE_IP:
		return (policy_match_ip(pattern, value));
	case RULE_EMAIL:
		return (policy_match_email(pattern, value));
	case RULE_CN:
	case RULE_OU:
	case RULE_O:
		return (strcmp(pattern, value) == 0);
	default:
		return (0);
	}
}

static void
policy_accept(struct verdict *v, const struct allow_rule *r,
    const char *identity)
{
	struct sbuf	sb;

	v->v_accept = 1;
	v->v_rule = r;
	v->v_match = identity;
	policy_sb_init(&sb, v->v_identity, sizeof(v->v_identity));
	policy_sb_add(&sb, identity);

	policy_sb_init(&sb, v->v_reason, sizeof(v->v_reason));
	policy_sb_add(&sb, "matched ");
	policy_sb_add(&sb, policy_kind_name(r->ar_kind));
	if (r->ar_kind != RULE_ANY && r->ar_value != NULL) {
		policy_sb_add(&sb, " ");
		policy_sb_add(&sb, r->ar_value);
	}
	policy_sb_add(&sb, " with ");
	policy_sb_add(&sb, identity);
}

void
policy_judge(const struct allow *allow, const struct identities *ids,
    struct verdict *v)
{
	const struct allow_rule	*r;
	const struct identity	*id;
	const char		*primary;
	struct sbuf		 sb;
	size_t			 i, j, nrules;

	memset(v, 0, sizeof(*v));
	primary = policy_primary(ids);
	nrules = 0;
	if (allow != NULL && allow->al_rules != NULL)
		nrules = allow->al_nrules;

	/* Rules in order, then identities in order: the first match wins. */
	for (i = 0; i < nrules; i++) {
		r = &allow->al_rules[i];
		if (r->ar_kind == RULE_ANY) {
			/* The chain is verified before policy_judge() runs. */
			policy_accept(v, r, primary);
			return;
		}
		if (r->ar_value == NULL || ids == NULL)
			continue;
		for (j = 0; j < ids->ids_count; j++) {
			id = &ids->ids_list[j];
			if (id->id_kind != r->ar_kind || id->id_value == NULL)
				continue;
			if (policy_rule_match(r->ar_kind, r->ar_value,
			    id->id_value)) {
				policy_accept(v, r, id->id_value);
				return;
			}
		}
	}

	v->v_accept = 0;
	v->v_rule = NULL;
	policy_sb_init(&sb, v->v_identity, sizeof(v->v_identity));
	policy_sb_add(&sb, primary);

	policy_sb_init(&sb, v->v_reason, sizeof(v->v_reason));
	policy_sb_add(&sb, "identity not allowed: ");
	policy_sb_add(&sb, primary);
	policy_sb_add(&sb, nrules == 0 ? " (no rules" : " (allowed: ");
	for (i = 0; i < nrules; i++) {
		r = &allow->al_rules[i];
		if (i > 0)
			policy_sb_add(&sb, ", ");
		policy_sb_add(&sb, policy_kind_name(r->ar_kind));
		policy_sb_add(&sb, " ");
		policy_sb_add(&sb, r->ar_value != NULL ? r->ar_value : "-");
	}
	policy_sb_add(&sb, ")");
}

static int	policy_fail(char *, size_t, const char *, ...)
		    __attribute__((__format__(__printf__, 3, 4)));

/* Writes a sentence into err and returns -1, for policy_rule_check(). */
static int
policy_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list	ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return (-1);
}

/* 1 if s is printable ASCII without spaces, as URI and email SANs are. */
static int
policy_printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
			return (0);
	return (1);
}

static int
policy_check_uri(const char *v, char *err, size_t errlen)
{
	const char	*auth, *end, *seg;
	size_t		 n, sn;
	int		 wild;

	if (!policy_printable(v))
		return (policy_fail(err, errlen, "a uri may hold only "
		    "printable ASCII characters, without spaces"));
	if ((n = policy_uri_prefix(v)) == 0)
		return (policy_fail(err, errlen, "a uri must start with a "
		    "scheme and \"://\", as in spiffe://example.org/service"));
	auth = strstr(v, "://") + 3;
	if (auth == v + n)
		return (policy_fail(err, errlen, "a uri needs an authority "
		    "(a host or trust domain) after \"://\""));
	if (memchr(auth, '*', (size_t)(v + n - auth)) != NULL)
		return (policy_fail(err, errlen, "'*' may not stand in the "
		    "authority of a uri, only for a whole path segment"));

	wild = 0;
	end = v + n + strcspn(v + n, "?#");
	for (seg = v + n; seg < end; seg += sn) {
		seg++;
		sn = strcspn(seg, "/?#");
		if (memchr(seg, '*', sn) == NULL)
			continue;
		if (sn == 2 && seg[0] == '*' && seg[1] == '*' &&
		    seg + sn != end)
			return (policy_fail(err, errlen, "'**' may only stand "
			    "for the whole last path segment"));
		if (sn > 2 || (sn == 2 && seg[0] != seg[1]))
			return (policy_fail(err, errlen, "'*' may only stand "
			    "for a whole path segment"));
		wild = 1;
	}
	if (strchr(end, '*') != NULL)
		return (policy_fail(err, errlen, "'*' may only stand for a "
		    "whole path segment, not in a query or fragment"));
	if (wild && *end != '\0')
		return (policy_fail(err, errlen, "a uri with a wildcard may "
		    "not have a query or fragment ('?' or '#')"));
	return (0);
}

static int
policy_check_dns(const char *v, char *err, size_t errlen)
{
	size_t		i, label, n;
	unsigned char	c;

	if ((n = policy_dns_len(v)) > 253)
		return (policy_fail(err, errlen, "a dns name may have at most "
		    "253 characters"));
	if (n > 2 && v[0] == '*' && v[1] == '.') {
		v += 2;
		n -= 2;
	}
	for (i = label = 0; i < n; i++) {
		c = (unsigned char)v[i];
		if (c == '.' && label == 0)
			break;
		if (c == '.') {
			label = 0;
			continue;
		}
		if (c == '*')
			return (policy_fail(err, errlen, "'*' may only stand "
			    "for the whole leftmost label, as in "
			    "*.example.org"));
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-'))
			return (policy_fail(err, errlen, c > ' ' && c < 0x7f ?
			    "a dns name may hold only letters, digits, '-' "
			    "and '.', not '%c'" : "a dns name may hold only "
			    "letters, digits, '-' and '.', not byte 0x%02x",
			    c));
		if (++label > 63)
			return (policy_fail(err, errlen, "a dns label may have "
			    "at most 63 characters"));
	}
	if (label == 0)
		return (policy_fail(err, errlen, "a dns name may not have an "
		    "empty label (a leading dot or \"..\")"));
	return (0);
}

static int
policy_check_email(const char *v, char *err, size_t errlen)
{
	const char	*at;

	if (!policy_printable(v))
		return (policy_fail(err, errlen, "an email address may hold "
		    "only printable ASCII characters, without spaces"));
	if ((at = strchr(v, '@')) == NULL || strchr(at + 1, '@') != NULL)
		return (policy_fail(err, errlen, "an email address must have "
		    "exactly one '@'"));
	if (at == v || at[1] == '\0')
		return (policy_fail(err, errlen, "an email address needs a "
		    "name before and a domain after its '@'"));
	/* Users write "*@example.org" hoping for a wildcard; there is none. */
	if (strchr(v, '*') != NULL)
		return (policy_fail(err, errlen, "email rules are exact: '*' "
		    "is not a wildcard here"));
	return (0);
}

int
policy_rule_check(enum rule_kind kind, const char *value, char *err,
    size_t errlen)
{
	unsigned char	buf[16];
	const char	*name, *p;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if ((size_t)kind >= POLICY_NELEM(policy_kind_names))
		return (policy_fail(err, errlen, "unknown rule kind %d",
		    (int)kind));
	name = policy_kind_name(kind);
	if (kind == RULE_ANY)
		return (value == NULL ? 0 : policy_fail(err, errlen,
		    "an any rule takes no value"));
	if (value == NULL || value[0] == '\0')
		return (policy_fail(err, errlen, "an empty %s value would "
		    "match nothing", name));

	switch (kind) {
	case RULE_URI:
		return (policy_check_uri(value, err, errlen));
	case RULE_DNS:
		return (policy_check_dns(value, err, errlen));
	case RULE_IP:
		if (policy_ip_parse(value, buf) != -1)
			return (0);
		return (policy_fail(err, errlen, "%s",
		    strchr(value, '/') != NULL ? "an ip rule is one exact "
		    "address, not a prefix" : "not an IPv4 or IPv6 address"));
	case RULE_EMAIL:
		return (policy_check_email(value, err, errlen));
	default:
		break;
	}

	/* cn, ou, o: a value an identity can never hold is a mistake. */
	for (p = value; *p != '\0'; p++)
		if ((unsigned char)*p < ' ' || (unsigned char)*p == 0x7f)
			return (policy_fail(err, errlen, "a %s value may not "
			    "hold control characters", name));
	return (0);
}
