/*
 * Unit tests of the identity policy: the matchers with many near misses,
 * and identities and verdicts on real certificates made in memory (no
 * files, nothing expires).  Each certificate goes through DER and back, so
 * that the code sees what a peer would send.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "mtlsd/policy.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

struct fixture {
	EVP_PKEY	*f_key;
};

static int
group_setup(void **state)
{
	struct fixture	*f;

	if ((f = calloc(1, sizeof(*f))) == NULL)
		return (-1);
	/* One key for every certificate: keygen dominates the run time. */
	if ((f->f_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL) {
		free(f);
		return (-1);
	}
	*state = f;
	return (0);
}

static int
group_teardown(void **state)
{
	struct fixture	*f = *state;

	EVP_PKEY_free(f->f_key);
	free(f);
	return (0);
}

/* An unsigned certificate with subject entries "CN", "x", ..., NULL. */
static X509 *
cert_new(void **state, const char *const *subject)
{
	struct fixture	*f = *state;
	X509		*x;
	X509_NAME	*name;
	size_t		 i;

	assert_non_null(x = X509_new());
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
	assert_int_equal(X509_set_pubkey(x, f->f_key), 1);
	name = X509_get_subject_name(x);
	for (i = 0; subject != NULL && subject[i] != NULL; i += 2)
		assert_int_equal(X509_NAME_add_entry_by_txt(name, subject[i],
		    MBSTRING_UTF8, (const unsigned char *)subject[i + 1], -1,
		    -1, 0), 1);
	return (x);
}

/* Adds a subject entry of a given ASN.1 string type, bytes as they are. */
static void
cert_subject_raw(X509 *x, int nid, int type, const void *data, int len)
{
	assert_int_equal(X509_NAME_add_entry_by_NID(X509_get_subject_name(x),
	    nid, type, data, len, -1, 0), 1);
}

/* subjectAltName the way openssl.cnf writes it: "DNS:a,URI:b,IP:c". */
static void
cert_san_conf(X509 *x, const char *san)
{
	X509V3_CTX	 ctx;
	X509_EXTENSION	*ext;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	assert_non_null(ext = X509V3_EXT_conf_nid(NULL, &ctx,
	    NID_subject_alt_name, san));
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

/* Adds one GENERAL_NAME with arbitrary bytes (NULs, bad lengths). */
static void
gens_add(GENERAL_NAMES *gens, int type, const void *data, int len)
{
	GENERAL_NAME	*gn;
	ASN1_STRING	*s;

	if (type == GEN_IPADD)
		s = ASN1_OCTET_STRING_new();
	else
		s = ASN1_IA5STRING_new();
	assert_non_null(s);
	assert_int_equal(ASN1_STRING_set(s, data, len), 1);
	assert_non_null(gn = GENERAL_NAME_new());
	GENERAL_NAME_set0_value(gn, type, s);
	assert_true(sk_GENERAL_NAME_push(gens, gn) > 0);
}

static void
cert_san_raw(X509 *x, GENERAL_NAMES *gens)
{
	assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
	    X509V3_ADD_DEFAULT), 1);
	GENERAL_NAMES_free(gens);
}

/* Self-signs x, then returns it as parsed back from DER. */
static X509 *
cert_done(void **state, X509 *x)
{
	struct fixture		*f = *state;
	unsigned char		*der;
	const unsigned char	*p;
	X509			*y;
	int			 len;

	assert_true(X509_sign(x, f->f_key, EVP_sha256()) > 0);
	der = NULL;
	assert_true((len = i2d_X509(x, &der)) > 0);
	p = der;
	assert_non_null(y = d2i_X509(NULL, &p, len));
	OPENSSL_free(der);
	X509_free(x);
	return (y);
}

static X509 *
cert_make(void **state, const char *const *subject, const char *san)
{
	X509	*x;

	x = cert_new(state, subject);
	if (san != NULL)
		cert_san_conf(x, san);
	return (cert_done(state, x));
}

static void
assert_ids(const struct identities *ids, const char *expect)
{
	char	buf[2048];

	policy_identities_str(ids, buf, sizeof(buf));
	assert_string_equal(buf, expect);
}

/* Judges the identities of x; the verdict must not depend on x after. */
static void
judge(X509 *x, struct allow_rule *rules, size_t n, struct verdict *v)
{
	struct identities	ids;
	struct allow		allow;

	assert_int_equal(policy_identities(x, &ids), 0);
	allow.al_rules = rules;
	allow.al_nrules = n;
	memset(v, 0xa5, sizeof(*v));
	policy_judge(&allow, &ids, v);
	policy_identities_free(&ids);
	assert_non_null(memchr(v->v_reason, '\0', sizeof(v->v_reason)));
	assert_non_null(memchr(v->v_identity, '\0', sizeof(v->v_identity)));
}

static void
test_policy_match_uri_exact_and_case(void **state)
{
	const char	*p = "spiffe://example.org/web";

	(void)state;
	assert_int_equal(policy_match_uri(p, "spiffe://example.org/web"), 1);
	/* Scheme and host fold case, the path does not. */
	assert_int_equal(policy_match_uri(p, "SPIFFE://EXAMPLE.ORG/web"), 1);
	assert_int_equal(policy_match_uri("SPIFFE://Example.ORG/web", p), 1);
	assert_int_equal(policy_match_uri(p, "spiffe://example.org/Web"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://example.org/WEB"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://example.org/web/"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://example.org/we"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://example.org/webx"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://example.org"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://example.org.x/web"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://xexample.org/web"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe:/example.org/web"), 0);
	assert_int_equal(policy_match_uri(p, "https://example.org/web"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://example.org//web"), 0);
	assert_int_equal(policy_match_uri(p, ""), 0);
	assert_int_equal(policy_match_uri("spiffe://example.org",
	    "spiffe://EXAMPLE.org"), 1);
	/* A userinfo is case-sensitive; its host is not. */
	assert_int_equal(policy_match_uri("https://u@h.example/p",
	    "https://u@H.EXAMPLE/p"), 1);
	assert_int_equal(policy_match_uri("https://u@h.example/p",
	    "https://U@h.example/p"), 0);
	assert_int_equal(policy_match_uri("https://h.example/p",
	    "https://u@h.example/p"), 0);
	/* A query is compared exactly, even right after the host. */
	assert_int_equal(policy_match_uri("https://h/p?a=B", "https://H/p?a=B"),
	    1);
	assert_int_equal(policy_match_uri("https://h/p?a=B", "https://h/p?a=b"),
	    0);
	assert_int_equal(policy_match_uri("https://h?A", "https://h?a"), 0);
	assert_int_equal(policy_match_uri(NULL, p), 0);
	assert_int_equal(policy_match_uri(p, NULL), 0);
}

static void
test_policy_match_uri_star_is_one_segment(void **state)
{
	const char	*p = "spiffe://x/ns/*";
	const char	*q = "spiffe://x/ns/*/sa/web";

	(void)state;
	assert_int_equal(policy_match_uri(p, "spiffe://x/ns/a"), 1);
	assert_int_equal(policy_match_uri(p, "SPIFFE://X/ns/a"), 1);
	assert_int_equal(policy_match_uri(p, "spiffe://x/ns"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://x/ns/"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://x/ns/a/b"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://x/ns/a/"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://x/NS/a"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://x/nsx/a"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://y/ns/a"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://x.evil/ns/a"), 0);
	assert_int_equal(policy_match_uri(p, "https://x/ns/a"), 0);
	assert_int_equal(policy_match_uri(q, "spiffe://x/ns/prod/sa/web"), 1);
	assert_int_equal(policy_match_uri(q, "spiffe://x/ns/sa/web"), 0);
	assert_int_equal(policy_match_uri(q, "spiffe://x/ns//sa/web"), 0);
	assert_int_equal(policy_match_uri(q, "spiffe://x/ns/a/b/sa/web"), 0);
	assert_int_equal(policy_match_uri(q, "spiffe://x/ns/a/sa/web/"), 0);
	assert_int_equal(policy_match_uri(q, "spiffe://x/ns/a/sa/WEB"), 0);
	assert_int_equal(policy_match_uri("spiffe://x/*/*", "spiffe://x/a/b"),
	    1);
	assert_int_equal(policy_match_uri("spiffe://x/*/*", "spiffe://x/a"),
	    0);
	assert_int_equal(policy_match_uri("spiffe://x/*", "spiffe://x"), 0);
	/* '*' is no wildcard in a URI that is not a pattern. */
	assert_int_equal(policy_match_uri("spiffe://x/ns/a",
	    "spiffe://x/ns/*"), 0);
}

static void
test_policy_match_uri_double_star_is_one_or_more(void **state)
{
	const char	*p = "spiffe://x/**";
	const char	*q = "spiffe://x/ns/**";

	(void)state;
	assert_int_equal(policy_match_uri(p, "spiffe://x/a"), 1);
	assert_int_equal(policy_match_uri(p, "spiffe://x/a/b"), 1);
	assert_int_equal(policy_match_uri(p, "spiffe://x/a/b/c/d"), 1);
	assert_int_equal(policy_match_uri(p, "spiffe://X/a/b"), 1);
	assert_int_equal(policy_match_uri(p, "spiffe://x"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://x/"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://x/a/"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://x//a"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://x/a//b"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://y/a"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://xy/a"), 0);
	assert_int_equal(policy_match_uri(q, "spiffe://x/ns/a"), 1);
	assert_int_equal(policy_match_uri(q, "spiffe://x/ns/a/b"), 1);
	assert_int_equal(policy_match_uri(q, "spiffe://x/ns"), 0);
	assert_int_equal(policy_match_uri(q, "spiffe://x/ns/"), 0);
	assert_int_equal(policy_match_uri(q, "spiffe://x/nsx/a"), 0);
	assert_int_equal(policy_match_uri(q, "spiffe://x/other/a"), 0);
	assert_int_equal(policy_match_uri("spiffe://x/*/sa/**",
	    "spiffe://x/a/sa/b/c"), 1);
	assert_int_equal(policy_match_uri("spiffe://x/*/sa/**",
	    "spiffe://x/a/sa"), 0);
}

static void
test_policy_match_uri_wildcards_skip_dot_segments(void **state)
{
	const char	*p = "spiffe://x/ns/*";

	(void)state;
	assert_int_equal(policy_match_uri(p, "spiffe://x/ns/."), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://x/ns/.."), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://x/ns/%2e"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://x/ns/%2e%2E"), 0);
	assert_int_equal(policy_match_uri(p, "spiffe://x/ns/.%2e"), 0);
	/* Only "." and ".." are special, not every dotted name. */
	assert_int_equal(policy_match_uri(p, "spiffe://x/ns/..."), 1);
	assert_int_equal(policy_match_uri(p, "spiffe://x/ns/.a"), 1);
	assert_int_equal(policy_match_uri(p, "spiffe://x/ns/a.."), 1);
	assert_int_equal(policy_match_uri("spiffe://x/a/*/c",
	    "spiffe://x/a/../c"), 0);
	assert_int_equal(policy_match_uri("spiffe://x/ns/**",
	    "spiffe://x/ns/a/../../admin"), 0);
	assert_int_equal(policy_match_uri("spiffe://x/ns/**",
	    "spiffe://x/ns/./a"), 0);
	assert_int_equal(policy_match_uri("spiffe://x/ns/**",
	    "spiffe://x/ns/a/."), 0);
}

static void
test_policy_match_uri_query_fragment_never_wild(void **state)
{
	(void)state;
	assert_int_equal(policy_match_uri("spiffe://x/ns/*",
	    "spiffe://x/ns/a?b"), 0);
	assert_int_equal(policy_match_uri("spiffe://x/ns/*",
	    "spiffe://x/ns/a#b"), 0);
	assert_int_equal(policy_match_uri("spiffe://x/ns/*",
	    "spiffe://x/ns/?"), 0);
	assert_int_equal(policy_match_uri("spiffe://x/**",
	    "spiffe://x/a?b/c"), 0);
	assert_int_equal(policy_match_uri("spiffe://x/**",
	    "spiffe://x?/a"), 0);
	/* An exact pattern still compares a query or fragment. */
	assert_int_equal(policy_match_uri("https://h/p?q#f",
	    "https://h/p?q#f"), 1);
	assert_int_equal(policy_match_uri("https://h/p?q#f",
	    "https://h/p?q#F"), 0);
}

static void
test_policy_match_dns_exact(void **state)
{
	const char	*p = "api.example.org";

	(void)state;
	assert_int_equal(policy_match_dns(p, "api.example.org"), 1);
	assert_int_equal(policy_match_dns(p, "API.Example.ORG"), 1);
	assert_int_equal(policy_match_dns(p, "api.example.org."), 1);
	assert_int_equal(policy_match_dns("API.example.org.", p), 1);
	assert_int_equal(policy_match_dns(p, "api.example.org.."), 0);
	assert_int_equal(policy_match_dns(p, "api.example.com"), 0);
	assert_int_equal(policy_match_dns(p, "xapi.example.org"), 0);
	assert_int_equal(policy_match_dns(p, "a.api.example.org"), 0);
	assert_int_equal(policy_match_dns(p, "api.example.org.evil"), 0);
	assert_int_equal(policy_match_dns(p, "api.example"), 0);
	assert_int_equal(policy_match_dns(p, ""), 0);
	assert_int_equal(policy_match_dns(".", "."), 0);
	assert_int_equal(policy_match_dns("", ""), 0);
	assert_int_equal(policy_match_dns(NULL, p), 0);
	assert_int_equal(policy_match_dns(p, NULL), 0);
}

static void
test_policy_match_dns_wildcard_one_label(void **state)
{
	const char	*p = "*.example.org";

	(void)state;
	assert_int_equal(policy_match_dns(p, "a.example.org"), 1);
	assert_int_equal(policy_match_dns(p, "web-1.EXAMPLE.org"), 1);
	assert_int_equal(policy_match_dns(p, "a.example.org."), 1);
	assert_int_equal(policy_match_dns("*.example.org.", "a.example.org"),
	    1);
	assert_int_equal(policy_match_dns("*.EXAMPLE.ORG", "a.example.org"),
	    1);
	assert_int_equal(policy_match_dns(p, "a.b.example.org"), 0);
	assert_int_equal(policy_match_dns(p, "example.org"), 0);
	assert_int_equal(policy_match_dns(p, ".example.org"), 0);
	assert_int_equal(policy_match_dns(p, "..example.org"), 0);
	assert_int_equal(policy_match_dns(p, "aexample.org"), 0);
	assert_int_equal(policy_match_dns(p, "a-example.org"), 0);
	assert_int_equal(policy_match_dns(p, "a.example.org.evil"), 0);
	assert_int_equal(policy_match_dns(p, "a.example.com"), 0);
	assert_int_equal(policy_match_dns(p, "a.xexample.org"), 0);
	assert_int_equal(policy_match_dns(p, "org"), 0);
}

static void
test_policy_match_dns_wildcard_only_leftmost(void **state)
{
	(void)state;
	assert_int_equal(policy_match_dns("a*.example.org", "ab.example.org"),
	    0);
	assert_int_equal(policy_match_dns("*a.example.org", "ba.example.org"),
	    0);
	assert_int_equal(policy_match_dns("www.*.example.org",
	    "www.a.example.org"), 0);
	assert_int_equal(policy_match_dns("*", "a"), 0);
	assert_int_equal(policy_match_dns("*", "a.example.org"), 0);
	assert_int_equal(policy_match_dns("*.", "a"), 0);
	assert_int_equal(policy_match_dns("*.*.example.org",
	    "a.b.example.org"), 0);
}

static void
test_policy_match_dns_wildcard_name_only_literal(void **state)
{
	(void)state;
	/* A wildcard SAN is one text, not every host under it. */
	assert_int_equal(policy_match_dns("*.example.org", "*.example.org"),
	    1);
	assert_int_equal(policy_match_dns("*.example.org", "*.EXAMPLE.org."),
	    1);
	assert_int_equal(policy_match_dns("a.example.org", "*.example.org"),
	    0);
	assert_int_equal(policy_match_dns("*.example.org", "a*.example.org"),
	    0);
	assert_int_equal(policy_match_dns("*.example.org",
	    "*.*.example.org"), 0);
	assert_int_equal(policy_match_dns("*.example.org", "*"), 0);
	assert_int_equal(policy_match_dns("*.org", "*.example.org"), 0);
}

static void
test_policy_match_ip_forms(void **state)
{
	(void)state;
	assert_int_equal(policy_match_ip("10.0.0.1", "10.0.0.1"), 1);
	assert_int_equal(policy_match_ip("::1", "0:0:0:0:0:0:0:1"), 1);
	assert_int_equal(policy_match_ip("0:0:0:0:0:0:0:1", "::1"), 1);
	assert_int_equal(policy_match_ip("2001:db8::1",
	    "2001:DB8:0000:0:0:0:0:1"), 1);
	assert_int_equal(policy_match_ip("10.0.0.1", "10.0.0.2"), 0);
	assert_int_equal(policy_match_ip("::1", "::2"), 0);
	assert_int_equal(policy_match_ip("2001:db8::1", "2001:db8::1:0"), 0);
	/* No v4-mapped equivalence, either way round. */
	assert_int_equal(policy_match_ip("10.0.0.1", "::ffff:10.0.0.1"), 0);
	assert_int_equal(policy_match_ip("::ffff:10.0.0.1", "10.0.0.1"), 0);
	assert_int_equal(policy_match_ip("127.0.0.1", "::1"), 0);
	/* Same leading bytes (0a 00 00 01), different families. */
	assert_int_equal(policy_match_ip("10.0.0.1", "a00:1::"), 0);
	assert_int_equal(policy_match_ip("a00:1::", "10.0.0.1"), 0);
}

static void
test_policy_match_ip_invalid(void **state)
{
	(void)state;
	assert_int_equal(policy_match_ip("10.0.0.1", "010.0.0.1"), 0);
	assert_int_equal(policy_match_ip("10.0.0.1", "10.1"), 0);
	assert_int_equal(policy_match_ip("10.0.0.1", "10.0.0.1/32"), 0);
	assert_int_equal(policy_match_ip("10.0.0.1", " 10.0.0.1"), 0);
	assert_int_equal(policy_match_ip("10.0.0.1/32", "10.0.0.1"), 0);
	assert_int_equal(policy_match_ip("bogus", "bogus"), 0);
	assert_int_equal(policy_match_ip("", ""), 0);
	assert_int_equal(policy_match_ip("fe80::1%eth0", "fe80::1%eth0"), 0);
	assert_int_equal(policy_match_ip(NULL, "10.0.0.1"), 0);
	assert_int_equal(policy_match_ip("10.0.0.1", NULL), 0);
}

static void
test_policy_match_email_case(void **state)
{
	const char	*p = "alice@example.org";

	(void)state;
	assert_int_equal(policy_match_email(p, "alice@example.org"), 1);
	assert_int_equal(policy_match_email(p, "alice@EXAMPLE.Org"), 1);
	assert_int_equal(policy_match_email(p, "Alice@example.org"), 0);
	assert_int_equal(policy_match_email(p, "ALICE@example.org"), 0);
	assert_int_equal(policy_match_email(p, "xalice@example.org"), 0);
	assert_int_equal(policy_match_email(p, "alice@example.org.evil"), 0);
	assert_int_equal(policy_match_email(p, "alice@example.or"), 0);
	assert_int_equal(policy_match_email(p, "alice@sub.example.org"), 0);
	assert_int_equal(policy_match_email(p, "alice"), 0);
	assert_int_equal(policy_match_email(p, "example.org"), 0);
	assert_int_equal(policy_match_email(p, "alice@x@example.org"), 0);
	assert_int_equal(policy_match_email(NULL, p), 0);
	assert_int_equal(policy_match_email(p, NULL), 0);
}

static void
test_policy_identities_order_and_kinds(void **state)
{
	const char *const subject[] = { "O", "org1", "CN", "c1", "OU", "ou1",
	    "CN", "c2", "O", "org2", NULL };
	const enum rule_kind kinds[] = { RULE_URI, RULE_URI, RULE_DNS,
	    RULE_DNS, RULE_IP, RULE_IP, RULE_EMAIL, RULE_CN, RULE_CN, RULE_OU,
	    RULE_O, RULE_O };
	struct identities	 ids;
	X509			*x;
	size_t			 i;

	x = cert_make(state, subject, "DNS:d1.example.org,"
	    "URI:spiffe://x/one,email:a@example.org,IP:10.0.0.1,"
	    "DNS:d2.example.org,URI:spiffe://x/two,"
	    "IP:2001:DB8:0:0:0:0:0:1");
	assert_int_equal(policy_identities(x, &ids), 0);
	assert_int_equal(ids.ids_count, NELEM(kinds));
	for (i = 0; i < NELEM(kinds); i++)
		assert_int_equal(ids.ids_list[i].id_kind, kinds[i]);
	assert_ids(&ids, "uri:spiffe://x/one uri:spiffe://x/two "
	    "dns:d1.example.org dns:d2.example.org ip:10.0.0.1 ip:2001:db8::1 "
	    "email:a@example.org cn:c1 cn:c2 ou:ou1 o:org1 o:org2");
	policy_identities_free(&ids);
	X509_free(x);
}

static void
test_policy_identities_ip_text(void **state)
{
	const unsigned char	 v4[] = { 192, 0, 2, 1 };
	const unsigned char	 mapped[] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0xff, 0xff, 192, 0, 2, 1 };
	const unsigned char	 cidr[] = { 10, 0, 0, 0, 255, 0, 0, 0 };
	struct allow_rule	 ok[] = { { RULE_IP, "192.0.2.1" } };
	struct allow_rule	 no[] = { { RULE_IP, "10.0.0.0" } };
	struct identities	 ids;
	struct verdict		 v;
	GENERAL_NAMES		*gens;
	X509			*x;

	assert_non_null(gens = GENERAL_NAMES_new());
	gens_add(gens, GEN_IPADD, cidr, sizeof(cidr));
	gens_add(gens, GEN_IPADD, v4, 3);
	gens_add(gens, GEN_IPADD, v4, sizeof(v4));
	gens_add(gens, GEN_IPADD, mapped, sizeof(mapped));
	x = cert_new(state, NULL);
	cert_san_raw(x, gens);
	x = cert_done(state, x);

	/* Only 4 and 16 bytes are addresses; 8 is a constraint's net/mask. */
	assert_int_equal(policy_identities(x, &ids), 0);
	assert_ids(&ids, "ip:192.0.2.1 ip:::ffff:192.0.2.1");
	policy_identities_free(&ids);

	judge(x, ok, NELEM(ok), &v);
	assert_int_equal(v.v_accept, 1);
	assert_string_equal(v.v_identity, "192.0.2.1");
	judge(x, no, NELEM(no), &v);
	assert_int_equal(v.v_accept, 0);
	X509_free(x);
}

static void
test_policy_identities_nul_ignored(void **state)
{
	const char *const subject[] = { "CN", "real", NULL };
	struct allow_rule	 dns[] = { { RULE_DNS, "api.example.org" } };
	struct allow_rule	 uri[] = { { RULE_URI, "spiffe://x/web" } };
	struct allow_rule	 cn[] = { { RULE_CN, "api.example.org" } };
	struct identities	 ids;
	struct verdict		 v;
	GENERAL_NAMES		*gens;
	X509			*x;

	assert_non_null(gens = GENERAL_NAMES_new());
	gens_add(gens, GEN_DNS, "api.example.org\0.evil.com", 25);
	gens_add(gens, GEN_URI, "spiffe://x/web\0/admin", 21);
	gens_add(gens, GEN_EMAIL, "a@example.org\0b", 15);
	gens_add(gens, GEN_DNS, "ok.example.org", 14);
	x = cert_new(state, subject);
	cert_subject_raw(x, NID_commonName, V_ASN1_UTF8STRING,
	    "api.example.org\0x", 17);
	cert_san_raw(x, gens);
	x = cert_done(state, x);

	assert_int_equal(policy_identities(x, &ids), 0);
	assert_ids(&ids, "dns:ok.example.org cn:real");
	policy_identities_free(&ids);

	judge(x, dns, NELEM(dns), &v);
	assert_int_equal(v.v_accept, 0);
	assert_string_equal(v.v_identity, "ok.example.org");
	judge(x, uri, NELEM(uri), &v);
	assert_int_equal(v.v_accept, 0);
	judge(x, cn, NELEM(cn), &v);
	assert_int_equal(v.v_accept, 0);
	X509_free(x);
}

static void
test_policy_identities_control_chars_ignored(void **state)
{
	const char *const subject[] = { "CN", "esc\033[31m", "OU", "tab\tx",
	    "OU", "Z\xc3\xbcrich", NULL };
	struct identities	 ids;
	GENERAL_NAMES		*gens;
	X509			*x;

	assert_non_null(gens = GENERAL_NAMES_new());
	gens_add(gens, GEN_DNS, "a\001.example.org", 15);
	gens_add(gens, GEN_DNS, "del\177.example.org", 16);
	gens_add(gens, GEN_URI, "spiffe://x/a\nb", 14);
	/* IA5String is 7-bit: a byte above 0x7f is no text we can trust. */
	gens_add(gens, GEN_DNS, "\xc3\xa9.example.org", 14);
	gens_add(gens, GEN_DNS, "", 0);
	gens_add(gens, GEN_EMAIL, "ok@example.org", 14);
	x = cert_new(state, subject);
	cert_san_raw(x, gens);
	x = cert_done(state, x);

	assert_int_equal(policy_identities(x, &ids), 0);
	/* UTF-8 in the subject is fine; only the controls go. */
	assert_ids(&ids, "email:ok@example.org ou:Z\xc3\xbcrich");
	assert_string_equal(policy_primary(&ids), "-");
	policy_identities_free(&ids);
	X509_free(x);
}

static void
test_policy_identities_subject_to_utf8(void **state)
{
	/* "Zürich" as BMPString (UTF-16BE), "Café" as Latin-1 T61String. */
	const unsigned char	 bmp[] = { 0, 'Z', 0, 0xfc, 0, 'r', 0, 'i',
	    0, 'c', 0, 'h' };
	const unsigned char	 t61[] = { 'C', 'a', 'f', 0xe9 };
	struct allow_rule	 rules[] = { { RULE_CN, "Z\xc3\xbcrich" } };
	struct identities	 ids;
	struct verdict		 v;
	X509			*x;

	x = cert_new(state, NULL);
	cert_subject_raw(x, NID_commonName, V_ASN1_BMPSTRING, bmp,
	    sizeof(bmp));
	cert_subject_raw(x, NID_organizationName, V_ASN1_T61STRING, t61,
	    sizeof(t61));
	x = cert_done(state, x);
	assert_int_equal(policy_identities(x, &ids), 0);
	assert_ids(&ids, "cn:Z\xc3\xbcrich o:Caf\xc3\xa9");
	policy_identities_free(&ids);
	judge(x, rules, NELEM(rules), &v);
	assert_int_equal(v.v_accept, 1);
	X509_free(x);
}

static void
test_policy_identities_bad_san_keeps_error_queue(void **state)
{
	const char *const subject[] = { "CN", "c", NULL };
	/* A SEQUENCE whose dNSName claims more bytes than there are. */
	const unsigned char	 der[] = { 0x30, 0x03, 0x82, 0x05, 'a' };
	ASN1_OCTET_STRING	*os;
	X509_EXTENSION		*ext;
	struct identities	 ids;
	X509			*x;

	assert_non_null(os = ASN1_OCTET_STRING_new());
	assert_int_equal(ASN1_OCTET_STRING_set(os, der, sizeof(der)), 1);
	assert_non_null(ext = X509_EXTENSION_create_by_NID(NULL,
	    NID_subject_alt_name, 0, os));
	x = cert_new(state, subject);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
	ASN1_OCTET_STRING_free(os);
	x = cert_done(state, x);

	/* The caller's queue holds one error of its own; it must stay so. */
	ERR_clear_error();
	ERR_raise(ERR_LIB_USER, 42);
	assert_int_equal(policy_identities(x, &ids), 0);
	assert_ids(&ids, "cn:c");
	assert_int_equal(ERR_GET_REASON(ERR_peek_last_error()), 42);
	assert_int_equal(ERR_GET_REASON(ERR_get_error()), 42);
	assert_int_equal(ERR_get_error(), 0);
	policy_identities_free(&ids);
	X509_free(x);
}

static void
test_policy_identities_none(void **state)
{
	struct identities	 ids;
	X509			*x;

	x = cert_make(state, NULL, NULL);
	ids.ids_count = 99;
	assert_int_equal(policy_identities(x, &ids), 0);
	assert_int_equal(ids.ids_count, 0);
	assert_string_equal(policy_primary(&ids), "-");
	assert_ids(&ids, "-");
	policy_identities_free(&ids);
	X509_free(x);

	ids.ids_count = 99;
	assert_int_equal(policy_identities(NULL, &ids), 0);
	assert_int_equal(ids.ids_count, 0);
	assert_null(ids.ids_list);
	assert_string_equal(policy_primary(NULL), "-");
}

static void
test_policy_identities_free_zeroes(void **state)
{
	const char *const subject[] = { "CN", "c", NULL };
	struct identities	 ids;
	X509			*x;

	x = cert_make(state, subject, "DNS:a.example.org");
	assert_int_equal(policy_identities(x, &ids), 0);
	assert_int_equal(ids.ids_count, 2);
	assert_non_null(ids.ids_list);
	policy_identities_free(&ids);
	assert_null(ids.ids_list);
	assert_int_equal(ids.ids_count, 0);
	/* Twice, and NULL: both harmless. */
	policy_identities_free(&ids);
	policy_identities_free(NULL);
	X509_free(x);
}

static void
test_policy_primary_uri_dns_cn(void **state)
{
	const char *const subject[] = { "OU", "ou", "CN", "c", NULL };
	const char *const nocn[] = { "OU", "ou", "O", "o", NULL };
	struct identities	 ids;
	X509			*x;
	size_t			 i;
	const struct {
		const char *const	*subject;
		const char		*san;
		const char		*primary;
	} cases[] = {
		{ subject, "DNS:a.example.org,URI:spiffe://x/web",
		    "spiffe://x/web" },
		{ subject, "email:e@example.org,IP:10.0.0.1,DNS:b.example.org,"
		    "DNS:a.example.org", "b.example.org" },
		{ subject, "email:e@example.org,IP:10.0.0.1", "c" },
		{ nocn, "email:e@example.org,IP:10.0.0.1", "-" },
	};

	for (i = 0; i < NELEM(cases); i++) {
		x = cert_make(state, cases[i].subject, cases[i].san);
		assert_int_equal(policy_identities(x, &ids), 0);
		assert_string_equal(policy_primary(&ids), cases[i].primary);
		policy_identities_free(&ids);
		X509_free(x);
	}
}

static void
test_policy_identities_str_truncates(void **state)
{
	struct identity		 list[] = {
		{ RULE_URI, "spiffe://a/b" },
		{ RULE_CN, "Z\xc3\xbcrich" },
	};
	struct identities	 ids = { list, NELEM(list) };
	struct identities	 cn = { list + 1, 1 };
	char			 buf[64];

	(void)state;
	policy_identities_str(&ids, buf, sizeof(buf));
	assert_string_equal(buf, "uri:spiffe://a/b cn:Z\xc3\xbcrich");
	policy_identities_str(&ids, buf, 16);
	assert_string_equal(buf, "uri:spiffe:/...");
	policy_identities_str(&ids, buf, 4);
	assert_string_equal(buf, "...");
	policy_identities_str(&ids, buf, 1);
	assert_string_equal(buf, "");
	memset(buf, 'x', sizeof(buf));
	policy_identities_str(&ids, buf, 0);
	assert_int_equal(buf[0], 'x');
	/* A cut never splits a UTF-8 sequence ("ü" is 0xc3 0xbc). */
	policy_identities_str(&cn, buf, 9);
	assert_string_equal(buf, "cn:Z...");
	policy_identities_str(&cn, buf, 10);
	assert_string_equal(buf, "cn:Z\xc3\xbc...");
	policy_identities_str(&cn, buf, 11);
	assert_string_equal(buf, "cn:Z\xc3\xbcrich");
}

static void
test_policy_judge_dns_rule_ignores_cn(void **state)
{
	const char *const subject[] = { "CN", "api.example.org", NULL };
	struct allow_rule	 rules[] = { { RULE_DNS, "api.example.org" } };
	struct verdict		 v;
	X509			*x;

	x = cert_make(state, subject, NULL);
	judge(x, rules, NELEM(rules), &v);
	assert_int_equal(v.v_accept, 0);
	assert_null(v.v_rule);
	assert_string_equal(v.v_identity, "api.example.org");
	assert_string_equal(v.v_reason, "identity not allowed: "
	    "api.example.org (allowed: dns api.example.org)");
	X509_free(x);
}

static void
test_policy_judge_cn_rule_matches_cn_only(void **state)
{
	const char *const subject[] = { "CN", "api.example.org", NULL };
	const char *const other[] = { "CN", "other", NULL };
	struct allow_rule	 rules[] = { { RULE_CN, "api.example.org" } };
	struct verdict		 v;
	X509			*x;

	x = cert_make(state, subject, NULL);
	judge(x, rules, NELEM(rules), &v);
	assert_int_equal(v.v_accept, 1);
	assert_ptr_equal(v.v_rule, &rules[0]);
	assert_string_equal(v.v_identity, "api.example.org");
	assert_string_equal(v.v_reason,
	    "matched cn api.example.org with api.example.org");
	X509_free(x);

	/* Nor does a cn rule ever match a DNS SAN. */
	x = cert_make(state, other, "DNS:api.example.org");
	judge(x, rules, NELEM(rules), &v);
	assert_int_equal(v.v_accept, 0);
	assert_string_equal(v.v_identity, "api.example.org");
	X509_free(x);
}

static void
test_policy_judge_reject_reason(void **state)
{
	const char *const subject[] = { "CN", "svc", NULL };
	struct allow_rule	 rules[] = {
		{ RULE_URI, "spiffe://x/z" },
		{ RULE_DNS, "*.example.com" },
		{ RULE_URI, NULL },
	};
	struct verdict		 v;
	X509			*x;

	x = cert_make(state, subject,
	    "DNS:svc.example.org,URI:spiffe://x/y");
	judge(x, rules, NELEM(rules), &v);
	assert_int_equal(v.v_accept, 0);
	assert_null(v.v_rule);
	assert_string_equal(v.v_identity, "spiffe://x/y");
	assert_string_equal(v.v_reason, "identity not allowed: spiffe://x/y "
	    "(allowed: uri spiffe://x/z, dns *.example.com, uri -)");
	X509_free(x);
}

static void
test_policy_judge_reject_reason_truncated(void **state)
{
	const char		*prefix = "identity not allowed: spiffe://x/y "
	    "(allowed: uri spiffe://x/0/000";
	struct allow_rule	 rules[10];
	char			 pat[10][128];
	struct verdict		 v;
	X509			*x;
	size_t			 i, n;

	for (i = 0; i < NELEM(rules); i++) {
		snprintf(pat[i], sizeof(pat[i]), "spiffe://x/%zu/%0100d", i, 0);
		rules[i].ar_kind = RULE_URI;
		rules[i].ar_value = pat[i];
	}
	x = cert_make(state, NULL, "URI:spiffe://x/y");
	judge(x, rules, NELEM(rules), &v);
	assert_int_equal(v.v_accept, 0);
	n = strlen(v.v_reason);
	assert_int_equal(n, POLICY_TEXT_MAX - 1);
	assert_memory_equal(v.v_reason + n - 3, "...", 3);
	assert_memory_equal(v.v_reason, prefix, strlen(prefix));
	X509_free(x);
}

static void
test_policy_judge_any_accepts(void **state)
{
	struct allow_rule	 rules[] = {
		{ RULE_URI, "spiffe://other/a" },
		{ RULE_ANY, NULL },
		{ RULE_URI, "spiffe://x/web" },
	};
	struct identities	 none = { NULL, 0 };
	struct allow		 allow = { rules, NELEM(rules) };
	struct verdict		 v;
	X509			*x;

	x = cert_make(state, NULL, "DNS:a.example.org,URI:spiffe://x/web");
	judge(x, rules, NELEM(rules), &v);
	assert_int_equal(v.v_accept, 1);
	assert_ptr_equal(v.v_rule, &rules[1]);
	assert_string_equal(v.v_identity, "spiffe://x/web");
	assert_string_equal(v.v_reason, "matched any with spiffe://x/web");
	X509_free(x);

	policy_judge(&allow, &none, &v);
	assert_int_equal(v.v_accept, 1);
	assert_ptr_equal(v.v_rule, &rules[1]);
	assert_string_equal(v.v_identity, "-");
}

static void
test_policy_judge_first_matching_rule(void **state)
{
	struct allow_rule	 dns_first[] = {
		{ RULE_DNS, "c.example.org" },
		{ RULE_DNS, "*.example.org" },
		{ RULE_URI, "spiffe://x/**" },
	};
	struct allow_rule	 uri_first[] = {
		{ RULE_URI, "spiffe://x/ns/*/sa/web" },
		{ RULE_DNS, "*.example.org" },
	};
	struct verdict		 v;
	X509			*x;

	x = cert_make(state, NULL, "URI:spiffe://x/ns/a/sa/web,"
	    "DNS:b.example.org,DNS:a.example.org");
	judge(x, dns_first, NELEM(dns_first), &v);
	assert_int_equal(v.v_accept, 1);
	assert_ptr_equal(v.v_rule, &dns_first[1]);
	assert_string_equal(v.v_identity, "b.example.org");
	assert_string_equal(v.v_reason,
	    "matched dns *.example.org with b.example.org");

	judge(x, uri_first, NELEM(uri_first), &v);
	assert_int_equal(v.v_accept, 1);
	assert_ptr_equal(v.v_rule, &uri_first[0]);
	assert_string_equal(v.v_identity, "spiffe://x/ns/a/sa/web");
	assert_string_equal(v.v_reason, "matched uri spiffe://x/ns/*/sa/web "
	    "with spiffe://x/ns/a/sa/web");
	X509_free(x);
}

static void
test_policy_judge_kind_must_match(void **state)
{
	const char *const subject[] = { "CN", "10.0.0.1", "OU", "payments",
	    "O", "Example Inc", NULL };
	struct allow_rule	 ip[] = { { RULE_IP, "10.0.0.1" } };
	struct allow_rule	 dns[] = { { RULE_DNS, "10.0.0.1" } };
	struct allow_rule	 o[] = { { RULE_O, "Example Inc" } };
	struct allow_rule	 o_case[] = { { RULE_O, "example inc" } };
	struct allow_rule	 ou_as_o[] = { { RULE_O, "payments" } };
	struct allow_rule	 ou[] = { { RULE_OU, "payments" } };
	struct allow_rule	 email[] = {
		{ RULE_EMAIL, "web@example.org" }
	};
	struct verdict		 v;
	X509			*x;

	/* A DNS SAN that looks like an address is still a DNS name. */
	x = cert_make(state, subject, "DNS:10.0.0.1");
	judge(x, ip, NELEM(ip), &v);
	assert_int_equal(v.v_accept, 0);
	judge(x, dns, NELEM(dns), &v);
	assert_int_equal(v.v_accept, 1);
	judge(x, o, NELEM(o), &v);
	assert_int_equal(v.v_accept, 1);
	assert_string_equal(v.v_identity, "Example Inc");
	judge(x, o_case, NELEM(o_case), &v);
	assert_int_equal(v.v_accept, 0);
	judge(x, ou_as_o, NELEM(ou_as_o), &v);
	assert_int_equal(v.v_accept, 0);
	judge(x, ou, NELEM(ou), &v);
	assert_int_equal(v.v_accept, 1);
	judge(x, email, NELEM(email), &v);
	assert_int_equal(v.v_accept, 0);
	X509_free(x);

	x = cert_make(state, NULL, "email:web@EXAMPLE.org");
	judge(x, email, NELEM(email), &v);
	assert_int_equal(v.v_accept, 1);
	assert_string_equal(v.v_identity, "web@EXAMPLE.org");
	X509_free(x);
}

static void
test_policy_judge_no_rules_rejects(void **state)
{
	struct identity		 list[] = { { RULE_URI, "spiffe://x/y" } };
	struct identities	 ids = { list, NELEM(list) };
	struct allow		 empty = { NULL, 0 };
	struct verdict		 v;

	(void)state;
	policy_judge(NULL, &ids, &v);
	assert_int_equal(v.v_accept, 0);
	assert_null(v.v_rule);
	assert_string_equal(v.v_reason,
	    "identity not allowed: spiffe://x/y (no rules)");
	memset(&v, 0xa5, sizeof(v));
	policy_judge(&empty, NULL, &v);
	assert_int_equal(v.v_accept, 0);
	assert_string_equal(v.v_identity, "-");
	assert_string_equal(v.v_reason, "identity not allowed: - (no rules)");
}

static void
test_policy_judge_long_identity_marked_cut(void **state)
{
	char			 uri[600];
	struct identity		 list[1];
	struct identities	 ids = { list, 1 };
	struct allow_rule	 rules[1];
	struct allow		 allow = { rules, 1 };
	struct verdict		 v;
	size_t			 n;

	(void)state;
	memcpy(uri, "spiffe://x/", 11);
	memset(uri + 11, 'a', sizeof(uri) - 12);
	uri[sizeof(uri) - 1] = '\0';
	list[0].id_kind = RULE_URI;
	list[0].id_value = uri;
	rules[0].ar_kind = RULE_URI;
	rules[0].ar_value = uri;
	policy_judge(&allow, &ids, &v);
	assert_int_equal(v.v_accept, 1);
	/* A cut identity must never pass for a shorter, whole one. */
	n = strlen(v.v_identity);
	assert_int_equal(n, POLICY_TEXT_MAX - 1);
	assert_memory_equal(v.v_identity + n - 3, "...", 3);
	assert_int_equal(strlen(v.v_reason), POLICY_TEXT_MAX - 1);
}

static void
check_good(enum rule_kind kind, const char *value)
{
	char	err[256];

	memset(err, 'x', sizeof(err));
	if (policy_rule_check(kind, value, err, sizeof(err)) != 0)
		fail_msg("rejected \"%s\": %s", value, err);
}

static void
check_bad(enum rule_kind kind, const char *value, const char *why)
{
	char	err[256];

	err[0] = '\0';
	if (policy_rule_check(kind, value, err, sizeof(err)) != -1)
		fail_msg("accepted \"%s\"", value != NULL ? value : "(null)");
	if (strstr(err, why) == NULL)
		fail_msg("\"%s\": got \"%s\", want \"%s\"",
		    value != NULL ? value : "(null)", err, why);
}

static void
test_policy_rule_check_uri(void **state)
{
	(void)state;
	check_good(RULE_URI, "spiffe://example.org/web");
	check_good(RULE_URI, "spiffe://example.org");
	check_good(RULE_URI, "SPIFFE://Example.org/ns/*/sa/web");
	check_good(RULE_URI, "spiffe://example.org/**");
	check_good(RULE_URI, "spiffe://example.org/ns/*/**");
	check_good(RULE_URI, "https://h.example:8443/p?q=1#f");
	check_bad(RULE_URI, "spiffe://x/ns/a*",
	    "'*' may only stand for a whole path segment");
	check_bad(RULE_URI, "spiffe://x/ns/*a",
	    "'*' may only stand for a whole path segment");
	check_bad(RULE_URI, "spiffe://x/***",
	    "'*' may only stand for a whole path segment");
	check_bad(RULE_URI, "spiffe://x/**/a",
	    "'**' may only stand for the whole last path segment");
	check_bad(RULE_URI, "spiffe://x/**/",
	    "'**' may only stand for the whole last path segment");
	check_bad(RULE_URI, "spiffe://*.x/a", "authority");
	check_bad(RULE_URI, "spiffe://x*/a", "authority");
	check_bad(RULE_URI, "spiffe://*", "authority");
	check_bad(RULE_URI, "spiffe:///a", "needs an authority");
	check_bad(RULE_URI, "spiffe://", "needs an authority");
	check_bad(RULE_URI, "example.org/web", "scheme");
	check_bad(RULE_URI, "://x/a", "scheme");
	check_bad(RULE_URI, "1ab://x/a", "scheme");
	check_bad(RULE_URI, "spiffe:/x/a", "scheme");
	check_bad(RULE_URI, "spiffe://x/a b", "printable ASCII");
	check_bad(RULE_URI, "spiffe://x/\xc3\xa9", "printable ASCII");
	check_bad(RULE_URI, "spiffe://x/*?q", "query or fragment");
	check_bad(RULE_URI, "spiffe://x/**#f", "query or fragment");
	check_bad(RULE_URI, "spiffe://x/a?q=*", "whole path segment");
	check_bad(RULE_URI, "", "empty");
	check_bad(RULE_URI, NULL, "empty");
}

static void
test_policy_rule_check_dns(void **state)
{
	char	label[70], name[300];
	size_t	i;

	(void)state;
	check_good(RULE_DNS, "api.example.org");
	check_good(RULE_DNS, "*.example.org");
	check_good(RULE_DNS, "API.example.org.");
	check_good(RULE_DNS, "a-b.example");
	check_good(RULE_DNS, "localhost");
	check_bad(RULE_DNS, "a.*.example.org",
	    "'*' may only stand for the whole leftmost label");
	check_bad(RULE_DNS, "*", "whole leftmost label");
	check_bad(RULE_DNS, "*.", "whole leftmost label");
	check_bad(RULE_DNS, "a*.example.org", "whole leftmost label");
	check_bad(RULE_DNS, "**.example.org", "whole leftmost label");
	check_bad(RULE_DNS, "*.*.example.org", "whole leftmost label");
	check_bad(RULE_DNS, ".example.org", "empty label");
	check_bad(RULE_DNS, "a..example.org", "empty label");
	check_bad(RULE_DNS, "a.example.org..", "empty label");
	check_bad(RULE_DNS, "*..example.org", "empty label");
	check_bad(RULE_DNS, ".", "empty label");
	check_bad(RULE_DNS, "a_b.example.org", "not '_'");
	check_bad(RULE_DNS, "a b", "not byte 0x20");
	check_bad(RULE_DNS, "\xc3\xa9.example.org", "not byte 0xc3");
	check_bad(RULE_DNS, "", "empty");

	memset(label, 'a', 63);
	label[63] = '\0';
	snprintf(name, sizeof(name), "%s.example.org", label);
	check_good(RULE_DNS, name);
	snprintf(name, sizeof(name), "a%s.example.org", label);
	check_bad(RULE_DNS, name, "63");

	/* 253 characters, plus the root's dot, is the most. */
	for (i = 0; i < 253; i += 2)
		memcpy(name + i, "a.", 2);
	name[253] = '\0';
	assert_int_equal(name[252], 'a');
	check_good(RULE_DNS, name);
	name[253] = '.';
	name[254] = '\0';
	check_good(RULE_DNS, name);
	memcpy(name + 253, "a", 2);
	check_bad(RULE_DNS, name, "253");
}

static void
test_policy_rule_check_ip_email_subject(void **state)
{
	(void)state;
	check_good(RULE_IP, "10.0.0.1");
	check_good(RULE_IP, "::1");
	check_good(RULE_IP, "2001:db8::1");
	check_bad(RULE_IP, "10.0.0.0/8", "not a prefix");
	check_bad(RULE_IP, "10.0.0", "not an IPv4 or IPv6 address");
	check_bad(RULE_IP, "localhost", "not an IPv4 or IPv6 address");
	check_bad(RULE_IP, "fe80::1%eth0", "not an IPv4 or IPv6 address");
	check_bad(RULE_IP, "", "empty");

	check_good(RULE_EMAIL, "alice@example.org");
	check_bad(RULE_EMAIL, "alice", "exactly one '@'");
	check_bad(RULE_EMAIL, "a@b@example.org", "exactly one '@'");
	check_bad(RULE_EMAIL, "@example.org", "a name before");
	check_bad(RULE_EMAIL, "alice@", "a domain after");
	check_bad(RULE_EMAIL, "*@example.org", "not a wildcard");
	check_bad(RULE_EMAIL, "al ice@example.org", "printable ASCII");
	check_bad(RULE_EMAIL, "", "empty");

	check_good(RULE_CN, "api.example.org");
	check_good(RULE_CN, "Z\xc3\xbcrich");
	check_good(RULE_OU, "payments team");
	check_good(RULE_O, "Example Inc");
	check_bad(RULE_CN, "", "empty cn");
	check_bad(RULE_OU, NULL, "empty ou");
	check_bad(RULE_O, "a\nb", "control characters");
}

static void
test_policy_rule_check_any_and_errors(void **state)
{
	char	err[8];

	(void)state;
	check_good(RULE_ANY, NULL);
	check_bad(RULE_ANY, "true", "takes no value");
	check_bad((enum rule_kind)99, "x", "unknown rule kind");
	/* A short or missing buffer still gets the verdict, never overflow. */
	memset(err, 'x', sizeof(err));
	assert_int_equal(policy_rule_check(RULE_URI, "x", err, sizeof(err)),
	    -1);
	assert_int_equal(strlen(err), sizeof(err) - 1);
	assert_int_equal(policy_rule_check(RULE_URI, "x", NULL, 0), -1);
	assert_int_equal(policy_rule_check(RULE_DNS, "a.example", NULL, 0),
	    0);
	err[0] = 'x';
	assert_int_equal(policy_rule_check(RULE_URI, "x", err, 0), -1);
	assert_int_equal(err[0], 'x');
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_match_uri_exact_and_case),
		cmocka_unit_test(test_policy_match_uri_star_is_one_segment),
		cmocka_unit_test(
		    test_policy_match_uri_double_star_is_one_or_more),
		cmocka_unit_test(
		    test_policy_match_uri_wildcards_skip_dot_segments),
		cmocka_unit_test(
		    test_policy_match_uri_query_fragment_never_wild),
		cmocka_unit_test(test_policy_match_dns_exact),
		cmocka_unit_test(test_policy_match_dns_wildcard_one_label),
		cmocka_unit_test(test_policy_match_dns_wildcard_only_leftmost),
		cmocka_unit_test(
		    test_policy_match_dns_wildcard_name_only_literal),
		cmocka_unit_test(test_policy_match_ip_forms),
		cmocka_unit_test(test_policy_match_ip_invalid),
		cmocka_unit_test(test_policy_match_email_case),
		cmocka_unit_test(test_policy_identities_order_and_kinds),
		cmocka_unit_test(test_policy_identities_ip_text),
		cmocka_unit_test(test_policy_identities_nul_ignored),
		cmocka_unit_test(test_policy_identities_control_chars_ignored),
		cmocka_unit_test(test_policy_identities_subject_to_utf8),
		cmocka_unit_test(
		    test_policy_identities_bad_san_keeps_error_queue),
		cmocka_unit_test(test_policy_identities_none),
		cmocka_unit_test(test_policy_identities_free_zeroes),
		cmocka_unit_test(test_policy_primary_uri_dns_cn),
		cmocka_unit_test(test_policy_identities_str_truncates),
		cmocka_unit_test(test_policy_judge_dns_rule_ignores_cn),
		cmocka_unit_test(test_policy_judge_cn_rule_matches_cn_only),
		cmocka_unit_test(test_policy_judge_reject_reason),
		cmocka_unit_test(test_policy_judge_reject_reason_truncated),
		cmocka_unit_test(test_policy_judge_any_accepts),
		cmocka_unit_test(test_policy_judge_first_matching_rule),
		cmocka_unit_test(test_policy_judge_kind_must_match),
		cmocka_unit_test(test_policy_judge_no_rules_rejects),
		cmocka_unit_test(test_policy_judge_long_identity_marked_cut),
		cmocka_unit_test(test_policy_rule_check_uri),
		cmocka_unit_test(test_policy_rule_check_dns),
		cmocka_unit_test(test_policy_rule_check_ip_email_subject),
		cmocka_unit_test(test_policy_rule_check_any_and_errors),
	};

	return (cmocka_run_group_tests(tests, group_setup, group_teardown));
}
