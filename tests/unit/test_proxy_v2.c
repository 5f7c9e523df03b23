/*
 * PROXY protocol v2: what pp2_encode() writes, the header-only reader in
 * proxy_v2.h reads back; the reader refuses what is not a header and
 * survives any bytes (run under ASan and UBSan: inputs live in heap
 * buffers of their exact length, so one byte too far is caught).
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "mtlsd/pp2.h"
#include "mtlsd/proxy_v2.h"

#define ID_LEN		1000
#define BRUTE_RUNS	20000

struct fixture {
	struct sockaddr_in	 f_v4src, f_v4dst;
	struct sockaddr_in6	 f_v6src, f_v6dst;
	struct sockaddr_un	 f_unix;
	char			 f_identity[ID_LEN + 1];
	uint8_t			 f_sha[MTLSD_PP2_SHA256_LEN];
	struct pp2_info		 f_info;
	uint8_t			 f_hdr[MTLSD_PP2_HDR_MAX];
	size_t			 f_hdrlen;
};

static const uint8_t	 alpn_h2[] = { 'h', '2' };
static uint32_t		 rnd_state;

static int	 setup(void **);
static int	 teardown(void **);
static uint32_t	 rnd(void);
static uint8_t	*dup_exact(const void *, size_t);
static int	 parse_exact(const void *, size_t, struct mtlsd_pp2 *);
static void	 check_sane(const uint8_t *, size_t, int,
		    const struct mtlsd_pp2 *);
static size_t	 raw_header(uint8_t *, uint8_t, uint8_t, size_t);

static int
setup(void **state)
{
	struct fixture	*f;
	ssize_t		 n;
	size_t		 i;

	if ((f = calloc(1, sizeof(*f))) == NULL)
		return -1;
	f->f_v4src.sin_family = AF_INET;
	f->f_v4src.sin_port = htons(5555);
	inet_pton(AF_INET, "192.0.2.7", &f->f_v4src.sin_addr);
	f->f_v4dst.sin_family = AF_INET;
	f->f_v4dst.sin_port = htons(8443);
	inet_pton(AF_INET, "127.0.0.1", &f->f_v4dst.sin_addr);
	f->f_v6src.sin6_family = AF_INET6;
	f->f_v6src.sin6_port = htons(40000);
	inet_pton(AF_INET6, "2001:db8::1", &f->f_v6src.sin6_addr);
	f->f_v6dst.sin6_family = AF_INET6;
	f->f_v6dst.sin6_port = htons(443);
	inet_pton(AF_INET6, "::1", &f->f_v6dst.sin6_addr);
	f->f_unix.sun_family = AF_UNIX;
	strcpy(f->f_unix.sun_path, "/run/mtlsd.sock");

	/* A SPIFFE ID far longer than any fixed buffer would hold. */
	memcpy(f->f_identity, "spiffe://example.org/", 21);
	for (i = 21; i < ID_LEN; i++)
		f->f_identity[i] = (char)('a' + i % 26);
	f->f_identity[ID_LEN] = '\0';
	for (i = 0; i < sizeof(f->f_sha); i++)
		f->f_sha[i] = (uint8_t)(0xA0 + i);

	f->f_info.authority = "api.example.org";
	f->f_info.alpn = alpn_h2;
	f->f_info.alpn_len = sizeof(alpn_h2);
	f->f_info.ssl_version = "TLSv1.3";
	f->f_info.ssl_cipher = "TLS_AES_256_GCM_SHA384";
	f->f_info.ssl_cn = "client.example.org";
	f->f_info.identity = f->f_identity;
	f->f_info.route = "api";
	f->f_info.sha256 = f->f_sha;

	n = pp2_encode(f->f_hdr, sizeof(f->f_hdr),
	    (const struct sockaddr *)&f->f_v4src,
	    (const struct sockaddr *)&f->f_v4dst, &f->f_info);
	if (n <= 0) {
		free(f);
		return -1;
	}
	f->f_hdrlen = (size_t)n;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	free(*state);
	return 0;
}

/* xorshift32: the same bytes on every run and every libc. */
static uint32_t
rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 17;
	rnd_state ^= rnd_state << 5;
	return rnd_state;
}

/* A heap copy of exactly len bytes, so ASan sees any read past them. */
static uint8_t *
dup_exact(const void *p, size_t len)
{
	uint8_t	*d;

	d = malloc(len == 0 ? 1 : len);
	assert_non_null(d);
	if (len > 0)
		memcpy(d, p, len);
	return d;
}

/*
 * Parses a copy of exactly len bytes.  The pointers in pp die with the
 * copy, so only callers that look at no TLV may use this.
 */
static int
parse_exact(const void *p, size_t len, struct mtlsd_pp2 *pp)
{
	uint8_t	*d;
	int	 r;

	d = dup_exact(p, len);
	r = mtlsd_pp2_parse(d, len, pp);
	free(d);
	return r;
}

/* What must hold for any input; exercises every accessor on success. */
static void
check_sane(const uint8_t *buf, size_t len, int r, const struct mtlsd_pp2 *pp)
{
	static const uint8_t	 types[] = { 0x00, 0x01, 0x02, 0x03, 0x04,
				    0x05, 0x20, 0x21, 0x22, 0x23, 0x30, 0xE0,
				    0xE1, 0xE2, 0xFF };
	const uint8_t		*v;
	char			 s[64];
	size_t			 i, n, off;
	uint32_t		 verify;
	uint8_t			 client, t;

	assert_true(r >= -1);
	if (r <= 0)
		return;
	assert_true((size_t)r <= len);
	assert_int_equal(pp->header_len, (size_t)r);
	assert_true(pp->tlv >= buf + MTLSD_PP2_HDR_MIN);
	assert_true(pp->tlv + pp->tlv_len == buf + r);
	for (i = 0; i < sizeof(types); i++) {
		if (mtlsd_pp2_tlv(pp, types[i], &v, &n))
			assert_true(v >= pp->tlv && v + n <= buf + r);
		if (mtlsd_pp2_ssl_sub(pp, types[i], &v, &n))
			assert_true(v >= pp->tlv && v + n <= buf + r);
		if (mtlsd_pp2_string(pp, types[i], s, sizeof(s)) == 0)
			assert_true(strlen(s) < sizeof(s));
	}
	(void)mtlsd_pp2_ssl(pp, &client, &verify);
	off = 0;
	while (mtlsd_pp2_tlv_next(pp->tlv, pp->tlv_len, &off, &t, &v, &n) == 1)
		assert_true(off <= pp->tlv_len);
}

/* The fixed 16 bytes and a zeroed address block and TLV area. */
static size_t
raw_header(uint8_t *buf, uint8_t ver_cmd, uint8_t fam, size_t payload)
{
	memcpy(buf, MTLSD_PP2_SIG, MTLSD_PP2_SIG_LEN);
	buf[12] = ver_cmd;
	buf[13] = fam;
	buf[14] = (uint8_t)(payload >> 8);
	buf[15] = (uint8_t)payload;
	memset(buf + MTLSD_PP2_HDR_MIN, 0, payload);
	return MTLSD_PP2_HDR_MIN + payload;
}

static void
test_proxy_v2_roundtrip_v4(void **state)
{
	struct fixture		*f = *state;
	struct mtlsd_pp2	 pp;
	struct sockaddr_in	*sin;

	assert_int_equal(mtlsd_pp2_parse(f->f_hdr, f->f_hdrlen, &pp),
	    (int)f->f_hdrlen);
	assert_int_equal(pp.command, 1);
	assert_int_equal(pp.family, AF_INET);
	assert_int_equal(f->f_hdr[13], MTLSD_PP2_FAM_TCP4);
	sin = (struct sockaddr_in *)&pp.src;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_memory_equal(&sin->sin_addr, &f->f_v4src.sin_addr, 4);
	assert_int_equal(ntohs(sin->sin_port), 5555);
	sin = (struct sockaddr_in *)&pp.dst;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_memory_equal(&sin->sin_addr, &f->f_v4dst.sin_addr, 4);
	assert_int_equal(ntohs(sin->sin_port), 8443);
	/* A trailing byte of the client's data is not part of the header. */
	f->f_hdr[f->f_hdrlen] = 'x';
	assert_int_equal(mtlsd_pp2_parse(f->f_hdr, f->f_hdrlen + 1, &pp),
	    (int)f->f_hdrlen);
}

static void
test_proxy_v2_roundtrip_v6(void **state)
{
	struct fixture		*f = *state;
	struct mtlsd_pp2	 pp;
	struct sockaddr_in6	*sin6;
	uint8_t			 buf[2048];
	ssize_t			 n;

	n = pp2_encode(buf, sizeof(buf), (struct sockaddr *)&f->f_v6src,
	    (struct sockaddr *)&f->f_v6dst, &f->f_info);
	assert_true(n > 0);
	assert_int_equal(buf[13], MTLSD_PP2_FAM_TCP6);
	assert_int_equal(mtlsd_pp2_parse(buf, (size_t)n, &pp), (int)n);
	assert_int_equal(pp.family, AF_INET6);
	sin6 = (struct sockaddr_in6 *)&pp.src;
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_memory_equal(&sin6->sin6_addr, &f->f_v6src.sin6_addr, 16);
	assert_int_equal(ntohs(sin6->sin6_port), 40000);
	sin6 = (struct sockaddr_in6 *)&pp.dst;
	assert_memory_equal(&sin6->sin6_addr, &f->f_v6dst.sin6_addr, 16);
	assert_int_equal(ntohs(sin6->sin6_port), 443);
	assert_int_equal((size_t)n, f->f_hdrlen + 24);
}

static void
test_proxy_v2_roundtrip_mixed(void **state)
{
	struct fixture		*f = *state;
	struct mtlsd_pp2	 pp;
	struct sockaddr_in6	*sin6;
	uint8_t			 buf[2048];
	char			 text[INET6_ADDRSTRLEN];
	ssize_t			 n;

	/* A v4 client seen by a v6 listener: TCP6, the v4 side mapped. */
	n = pp2_encode(buf, sizeof(buf), (struct sockaddr *)&f->f_v4src,
	    (struct sockaddr *)&f->f_v6dst, &f->f_info);
	assert_true(n > 0);
	assert_int_equal(mtlsd_pp2_parse(buf, (size_t)n, &pp), (int)n);
	assert_int_equal(pp.family, AF_INET6);
	sin6 = (struct sockaddr_in6 *)&pp.src;
	inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
	assert_string_equal(text, "::ffff:192.0.2.7");
	assert_int_equal(ntohs(sin6->sin6_port), 5555);
	sin6 = (struct sockaddr_in6 *)&pp.dst;
	assert_memory_equal(&sin6->sin6_addr, &f->f_v6dst.sin6_addr, 16);
	assert_int_equal(ntohs(sin6->sin6_port), 443);

	n = pp2_encode(buf, sizeof(buf), (struct sockaddr *)&f->f_v6src,
	    (struct sockaddr *)&f->f_v4dst, &f->f_info);
	assert_true(n > 0);
	assert_int_equal(mtlsd_pp2_parse(buf, (size_t)n, &pp), (int)n);
	assert_int_equal(pp.family, AF_INET6);
	sin6 = (struct sockaddr_in6 *)&pp.src;
	assert_memory_equal(&sin6->sin6_addr, &f->f_v6src.sin6_addr, 16);
	sin6 = (struct sockaddr_in6 *)&pp.dst;
	inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
	assert_string_equal(text, "::ffff:127.0.0.1");
	assert_int_equal(ntohs(sin6->sin6_port), 8443);
}

static void
test_proxy_v2_roundtrip_unspec(void **state)
{
	struct fixture		*f = *state;
	struct mtlsd_pp2	 pp;
	struct sockaddr_storage	 zero;
	uint8_t			 buf[2048];
	char			 s[ID_LEN + 1];
	ssize_t			 n;

	memset(&zero, 0, sizeof(zero));
	n = pp2_encode(buf, sizeof(buf), (struct sockaddr *)&f->f_unix,
	    (struct sockaddr *)&f->f_v4dst, &f->f_info);
	assert_true(n > 0);
	assert_int_equal(buf[13], MTLSD_PP2_FAM_UNSPEC);
	assert_int_equal((size_t)n, f->f_hdrlen - MTLSD_PP2_ADDR_LEN_INET);
	assert_int_equal(mtlsd_pp2_parse(buf, (size_t)n, &pp), (int)n);
	assert_int_equal(pp.command, 1);
	assert_int_equal(pp.family, AF_UNSPEC);
	assert_memory_equal(&pp.src, &zero, sizeof(zero));
	assert_memory_equal(&pp.dst, &zero, sizeof(zero));
	/* The TLVs still arrive. */
	assert_int_equal(mtlsd_pp2_string(&pp, MTLSD_PP2_TYPE_MTLSD_IDENTITY,
	    s, sizeof(s)), 0);
	assert_string_equal(s, f->f_identity);

	n = pp2_encode(buf, sizeof(buf), NULL, NULL, &f->f_info);
	assert_true(n > 0);
	assert_int_equal(buf[13], MTLSD_PP2_FAM_UNSPEC);
	assert_int_equal(mtlsd_pp2_parse(buf, (size_t)n, &pp), (int)n);
	assert_int_equal(pp.family, AF_UNSPEC);
}

static void
test_proxy_v2_roundtrip_tlvs(void **state)
{
	static const uint8_t	 order[] = { MTLSD_PP2_TYPE_AUTHORITY,
				    MTLSD_PP2_TYPE_ALPN, MTLSD_PP2_TYPE_SSL,
				    MTLSD_PP2_TYPE_MTLSD_IDENTITY,
				    MTLSD_PP2_TYPE_MTLSD_ROUTE,
				    MTLSD_PP2_TYPE_MTLSD_SHA256 };
	static const uint8_t	 suborder[] = { MTLSD_PP2_SUBTYPE_SSL_VERSION,
				    MTLSD_PP2_SUBTYPE_SSL_CIPHER,
				    MTLSD_PP2_SUBTYPE_SSL_CN };
	struct fixture		*f = *state;
	struct mtlsd_pp2	 pp;
	const uint8_t		*v, *sv;
	char			 s[ID_LEN + 1];
	size_t			 n, sn, off, i;
	uint32_t		 verify;
	uint8_t			 client, t;

	assert_int_equal(mtlsd_pp2_parse(f->f_hdr, f->f_hdrlen, &pp),
	    (int)f->f_hdrlen);
	assert_int_equal(mtlsd_pp2_string(&pp, MTLSD_PP2_TYPE_AUTHORITY,
	    s, sizeof(s)), 0);
	assert_string_equal(s, "api.example.org");
	assert_int_equal(mtlsd_pp2_tlv(&pp, MTLSD_PP2_TYPE_ALPN, &v, &n), 1);
	assert_int_equal(n, 2);
	assert_memory_equal(v, "h2", 2);

	assert_int_equal(mtlsd_pp2_ssl(&pp, &client, &verify), 1);
	assert_int_equal(client,
	    MTLSD_PP2_CLIENT_SSL | MTLSD_PP2_CLIENT_CERT_CONN);
	assert_int_equal(verify, 0);
	assert_int_equal(mtlsd_pp2_ssl_sub(&pp, MTLSD_PP2_SUBTYPE_SSL_VERSION,
	    &v, &n), 1);
	assert_int_equal(n, 7);
	assert_memory_equal(v, "TLSv1.3", 7);
	assert_int_equal(mtlsd_pp2_ssl_sub(&pp, MTLSD_PP2_SUBTYPE_SSL_CIPHER,
	    &v, &n), 1);
	assert_int_equal(n, strlen("TLS_AES_256_GCM_SHA384"));
	assert_memory_equal(v, "TLS_AES_256_GCM_SHA384", n);
	assert_int_equal(mtlsd_pp2_ssl_sub(&pp, MTLSD_PP2_SUBTYPE_SSL_CN,
	    &v, &n), 1);
	assert_int_equal(n, strlen("client.example.org"));
	assert_memory_equal(v, "client.example.org", n);
	assert_int_equal(mtlsd_pp2_ssl_sub(&pp, MTLSD_PP2_SUBTYPE_SSL_SIG_ALG,
	    &v, &n), 0);
	assert_null(v);

	/* The identity arrives whole, all 1000 bytes. */
	assert_int_equal(mtlsd_pp2_tlv(&pp, MTLSD_PP2_TYPE_MTLSD_IDENTITY,
	    &v, &n), 1);
	assert_int_equal(n, ID_LEN);
	assert_memory_equal(v, f->f_identity, ID_LEN);
	assert_int_equal(mtlsd_pp2_string(&pp, MTLSD_PP2_TYPE_MTLSD_ROUTE,
	    s, sizeof(s)), 0);
	assert_string_equal(s, "api");
	assert_int_equal(mtlsd_pp2_tlv(&pp, MTLSD_PP2_TYPE_MTLSD_SHA256,
	    &v, &n), 1);
	assert_int_equal(n, MTLSD_PP2_SHA256_LEN);
	assert_memory_equal(v, f->f_sha, MTLSD_PP2_SHA256_LEN);

	/* The exact layout: these TLVs in this order and nothing else. */
	off = 0;
	for (i = 0; i < sizeof(order); i++) {
		assert_int_equal(mtlsd_pp2_tlv_next(pp.tlv, pp.tlv_len, &off,
		    &t, &v, &n), 1);
		assert_int_equal(t, order[i]);
	}
	assert_int_equal(mtlsd_pp2_tlv_next(pp.tlv, pp.tlv_len, &off,
	    &t, &v, &n), 0);
	assert_int_equal(mtlsd_pp2_tlv(&pp, MTLSD_PP2_TYPE_SSL, &v, &n), 1);
	assert_int_equal(v[0], 0x03);
	assert_memory_equal(v + 1, "\0\0\0\0", 4);
	v += MTLSD_PP2_SSL_FIXED_LEN;
	n -= MTLSD_PP2_SSL_FIXED_LEN;
	off = 0;
	for (i = 0; i < sizeof(suborder); i++) {
		assert_int_equal(mtlsd_pp2_tlv_next(v, n, &off, &t,
		    &sv, &sn), 1);
		assert_int_equal(t, suborder[i]);
	}
	assert_int_equal(off, n);
}

static void
test_proxy_v2_absent_fields(void **state)
{
	struct fixture		*f = *state;
	struct pp2_info		 info;
	struct mtlsd_pp2	 pp;
	const uint8_t		*v;
	uint8_t			 buf[256], type, client;
	uint32_t		 verify;
	size_t			 n;
	ssize_t			 len;
	int			 pass;

	/* NULL and empty both mean "absent"; so does a NULL info. */
	for (pass = 0; pass < 3; pass++) {
		memset(&info, 0, sizeof(info));
		if (pass == 1) {
			info.authority = info.ssl_version = "";
			info.ssl_cipher = info.ssl_cn = "";
			info.identity = info.route = "";
			info.alpn = alpn_h2;
			info.alpn_len = 0;
		}
		len = pp2_encode(buf, sizeof(buf),
		    (struct sockaddr *)&f->f_v4src,
		    (struct sockaddr *)&f->f_v4dst, pass == 2 ? NULL : &info);
		/* 16 + 12 addresses + an SSL TLV of 5 bytes. */
		assert_int_equal(len, 16 + 12 + 3 + 5);
		assert_int_equal(mtlsd_pp2_parse(buf, (size_t)len, &pp), len);
		for (type = 0; type < 0xff; type++) {
			if (type == MTLSD_PP2_TYPE_SSL)
				continue;
			assert_int_equal(mtlsd_pp2_tlv(&pp, type, &v, &n), 0);
			assert_null(v);
			assert_int_equal(n, 0);
			assert_int_equal(mtlsd_pp2_ssl_sub(&pp, type, &v, &n),
			    0);
		}
		assert_int_equal(mtlsd_pp2_ssl(&pp, &client, &verify), 1);
		assert_int_equal(client, 0x03);
	}
}

static void
test_proxy_v2_prefix_needs_more(void **state)
{
	struct fixture		*f = *state;
	struct mtlsd_pp2	 pp;
	size_t			 i;

	for (i = 0; i < f->f_hdrlen; i++) {
		assert_int_equal(parse_exact(f->f_hdr, i, &pp), 0);
		/* The hint the read loop uses: never past the header. */
		if (i < MTLSD_PP2_HDR_MIN)
			assert_int_equal(pp.header_len, MTLSD_PP2_HDR_MIN);
		else
			assert_int_equal(pp.header_len, f->f_hdrlen);
	}
	assert_int_equal(parse_exact(f->f_hdr, i, &pp), (int)f->f_hdrlen);
	assert_int_equal(mtlsd_pp2_parse(NULL, 0, &pp), 0);
}

static void
test_proxy_v2_invalid(void **state)
{
	static const char	 v1[] =
	    "PROXY TCP4 192.0.2.7 127.0.0.1 5555 8443\r\n";
	static const uint8_t	 bad_fam[] = { 0x01, 0x10, 0x13, 0x20, 0x23,
				    0x30, 0x33, 0x41, 0xff };
	struct mtlsd_pp2	 pp;
	uint8_t			 buf[512];
	size_t			 n, i;

	(void)state;
	/* A wrong byte is refused as soon as it arrives. */
	assert_int_equal(parse_exact(v1, strlen(v1), &pp), -1);
	assert_int_equal(parse_exact(v1, 1, &pp), -1);
	assert_int_equal(parse_exact("\r\n\r\n\0\r\nQUIT\r", 12, &pp), -1);
	assert_int_equal(parse_exact("GET / HTTP/1.1\r\n\r\n", 18, &pp), -1);
	assert_int_equal(pp.header_len, 0);

	n = raw_header(buf, 0x11, MTLSD_PP2_FAM_TCP4, 12);
	assert_int_equal(parse_exact(buf, 13, &pp), -1);	/* version 1 */
	assert_int_equal(parse_exact(buf, n, &pp), -1);
	buf[12] = 0x31;						/* version 3 */
	assert_int_equal(parse_exact(buf, n, &pp), -1);
	buf[12] = 0x22;						/* command 2 */
	assert_int_equal(parse_exact(buf, 13, &pp), -1);
	buf[12] = 0x2f;
	assert_int_equal(parse_exact(buf, n, &pp), -1);
	buf[12] = 0x21;
	assert_int_equal(parse_exact(buf, n, &pp), (int)n);
	for (i = 0; i < sizeof(bad_fam); i++) {
		buf[13] = bad_fam[i];
		assert_int_equal(parse_exact(buf, 14, &pp), -1);
		assert_int_equal(parse_exact(buf, n, &pp), -1);
	}

	/* Lengths one short of each family's address block. */
	n = raw_header(buf, 0x21, MTLSD_PP2_FAM_TCP4, 11);
	assert_int_equal(parse_exact(buf, 16, &pp), -1);
	n = raw_header(buf, 0x21, MTLSD_PP2_FAM_TCP6, 35);
	assert_int_equal(parse_exact(buf, n, &pp), -1);
	n = raw_header(buf, 0x21, MTLSD_PP2_FAM_UNIX_STREAM, 215);
	assert_int_equal(parse_exact(buf, n, &pp), -1);
	n = raw_header(buf, 0x20, MTLSD_PP2_FAM_TCP6, 0);
	assert_int_equal(parse_exact(buf, n, &pp), -1);

	/* A TLV whose length runs one byte past the header. */
	n = raw_header(buf, 0x21, MTLSD_PP2_FAM_TCP4, 12 + 3 + 4);
	buf[28] = MTLSD_PP2_TYPE_NOOP;
	buf[30] = 4;
	assert_int_equal(parse_exact(buf, n, &pp), (int)n);
	buf[30] = 5;
	assert_int_equal(parse_exact(buf, n, &pp), -1);
	/* Or a TLV cut inside its own type and length. */
	n = raw_header(buf, 0x21, MTLSD_PP2_FAM_TCP4, 12 + 2);
	assert_int_equal(parse_exact(buf, n, &pp), -1);

	/* An SSL TLV of 3 bytes has no room for client and verify. */
	n = raw_header(buf, 0x21, MTLSD_PP2_FAM_TCP4, 12 + 3 + 3);
	buf[28] = MTLSD_PP2_TYPE_SSL;
	buf[30] = 3;
	assert_int_equal(parse_exact(buf, n, &pp), -1);
	/* Or an SSL sub-TLV running past the SSL TLV, inside the header. */
	n = raw_header(buf, 0x21, MTLSD_PP2_FAM_TCP4, 12 + 3 + 5 + 3 + 2 + 3);
	buf[28] = MTLSD_PP2_TYPE_SSL;
	buf[30] = 5 + 3 + 2;
	buf[36] = MTLSD_PP2_SUBTYPE_SSL_CN;
	buf[38] = 2;
	assert_int_equal(parse_exact(buf, n, &pp), (int)n);
	buf[38] = 3;
	assert_int_equal(parse_exact(buf, n, &pp), -1);
	/* A refused header leaves nothing behind to misuse. */
	assert_int_equal(pp.header_len, 0);
	assert_null(pp.tlv);
	assert_int_equal(pp.family, AF_UNSPEC);
}

static void
test_proxy_v2_local_and_unix(void **state)
{
	struct mtlsd_pp2	 pp;
	struct sockaddr_un	*su;
	uint8_t			 buf[512];
	char			 s[16];
	size_t			 n;

	(void)state;
	/* LOCAL: the addresses are dropped, the TLVs are kept. */
	n = raw_header(buf, 0x20, MTLSD_PP2_FAM_TCP4, 12 + 3 + 4);
	memset(buf + 16, 0x7f, 12);
	memcpy(buf + 28, "\xE1\0\4ping", 7);
	assert_int_equal(parse_exact(buf, n, &pp), (int)n);
	assert_int_equal(mtlsd_pp2_parse(buf, n, &pp), (int)n);
	assert_int_equal(pp.command, 0);
	assert_int_equal(pp.family, AF_UNSPEC);
	assert_int_equal(mtlsd_pp2_string(&pp, MTLSD_PP2_TYPE_MTLSD_ROUTE,
	    s, sizeof(s)), 0);
	assert_string_equal(s, "ping");

	n = raw_header(buf, 0x21, MTLSD_PP2_FAM_UNIX_STREAM, 216);
	memcpy(buf + 16, "/run/a.sock", 11);
	memset(buf + 16 + 108, 'b', 108);
	assert_int_equal(mtlsd_pp2_parse(buf, n, &pp), (int)n);
	assert_int_equal(pp.family, AF_UNIX);
	su = (struct sockaddr_un *)&pp.src;
	assert_int_equal(su->sun_family, AF_UNIX);
	assert_string_equal(su->sun_path, "/run/a.sock");
	su = (struct sockaddr_un *)&pp.dst;
	assert_int_equal(su->sun_path[107], 'b');
	assert_int_equal(pp.tlv_len, 0);
}

static void
test_proxy_v2_encode_too_small(void **state)
{
	struct fixture	*f = *state;
	uint8_t		*buf;
	size_t		 len;

	for (len = 0; len < f->f_hdrlen; len++) {
		buf = dup_exact(f->f_hdr, len);
		errno = 0;
		assert_int_equal(pp2_encode(buf, len,
		    (struct sockaddr *)&f->f_v4src,
		    (struct sockaddr *)&f->f_v4dst, &f->f_info), -1);
		assert_int_equal(errno, ENOBUFS);
		free(buf);
	}
	buf = dup_exact(f->f_hdr, len);
	assert_int_equal(pp2_encode(buf, len, (struct sockaddr *)&f->f_v4src,
	    (struct sockaddr *)&f->f_v4dst, &f->f_info), (ssize_t)len);
	assert_memory_equal(buf, f->f_hdr, len);
	free(buf);
	assert_int_equal(pp2_encode(NULL, 0, NULL, NULL, NULL), -1);
}

static void
test_proxy_v2_encode_too_large(void **state)
{
	struct fixture		*f = *state;
	struct pp2_info		 info;
	struct mtlsd_pp2	 pp;
	uint8_t			*buf;
	char			*id;
	size_t			 room;
	ssize_t			 n;

	buf = malloc(MTLSD_PP2_HDR_MAX + 64);
	id = malloc(70000);
	assert_non_null(buf);
	assert_non_null(id);
	/* Room left for the identity once TCP4 and an empty SSL TLV use 20. */
	room = 65535 - 12 - 8 - 3;
	memset(id, 'i', room);
	id[room] = '\0';
	memset(&info, 0, sizeof(info));
	info.identity = id;
	n = pp2_encode(buf, MTLSD_PP2_HDR_MAX + 64,
	    (struct sockaddr *)&f->f_v4src, (struct sockaddr *)&f->f_v4dst,
	    &info);
	assert_int_equal(n, MTLSD_PP2_HDR_MAX);
	assert_int_equal(mtlsd_pp2_parse(buf, (size_t)n, &pp), n);
	memset(id, 'i', room + 1);
	id[room + 1] = '\0';
	errno = 0;
	assert_int_equal(pp2_encode(buf, MTLSD_PP2_HDR_MAX + 64,
	    (struct sockaddr *)&f->f_v4src, (struct sockaddr *)&f->f_v4dst,
	    &info), -1);
	assert_int_equal(errno, EMSGSIZE);
	memset(id, 'i', 69999);
	id[69999] = '\0';
	assert_int_equal(pp2_encode(buf, MTLSD_PP2_HDR_MAX + 64, NULL, NULL,
	    &info), -1);
	assert_int_equal(errno, EMSGSIZE);
	free(id);
	free(buf);
}

static void
test_proxy_v2_string(void **state)
{
	struct mtlsd_pp2	 pp;
	uint8_t			 buf[64];
	char			 s[8];
	size_t			 n;

	(void)state;
	n = raw_header(buf, 0x21, MTLSD_PP2_FAM_UNSPEC, 3 + 4 + 3 + 4);
	memcpy(buf + 16, "\xE0\0\4a\0bc", 7);
	memcpy(buf + 23, "\xE1\0\4abcd", 7);
	assert_int_equal(mtlsd_pp2_parse(buf, n, &pp), (int)n);
	/* "a\0bc" must not pass for "a". */
	s[0] = 'x';
	assert_int_equal(mtlsd_pp2_string(&pp, MTLSD_PP2_TYPE_MTLSD_IDENTITY,
	    s, sizeof(s)), -1);
	assert_string_equal(s, "");
	assert_int_equal(mtlsd_pp2_string(&pp, MTLSD_PP2_TYPE_MTLSD_ROUTE,
	    s, 5), 0);
	assert_string_equal(s, "abcd");
	assert_int_equal(mtlsd_pp2_string(&pp, MTLSD_PP2_TYPE_MTLSD_ROUTE,
	    s, 4), -1);
	assert_string_equal(s, "");
	assert_int_equal(mtlsd_pp2_string(&pp, MTLSD_PP2_TYPE_MTLSD_ROUTE,
	    s, 0), -1);
	assert_int_equal(mtlsd_pp2_string(&pp, MTLSD_PP2_TYPE_AUTHORITY,
	    s, sizeof(s)), -1);
}

/* The loop documented in proxy_v2.h leaves the client's data unread. */
static void
test_proxy_v2_read_loop(void **state)
{
	static uint8_t		 buf[MTLSD_PP2_HDR_MAX];
	struct fixture		*f = *state;
	struct mtlsd_pp2	 pp;
	char			 id[1024], rest[8];
	size_t			 have = 0;
	ssize_t			 n;
	int			 sv[2], r;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[1], f->f_hdr, f->f_hdrlen),
	    (ssize_t)f->f_hdrlen);
	assert_int_equal(write(sv[1], "hello", 5), 5);
	close(sv[1]);
	while ((r = mtlsd_pp2_parse(buf, have, &pp)) == 0) {
		n = recv(sv[0], buf + have, pp.header_len - have, 0);
		if (n <= 0)
			break;
		have += (size_t)n;
	}
	assert_int_equal(r, (int)f->f_hdrlen);
	assert_int_equal(mtlsd_pp2_string(&pp, MTLSD_PP2_TYPE_MTLSD_IDENTITY,
	    id, sizeof(id)), 0);
	assert_string_equal(id, f->f_identity);
	assert_int_equal(recv(sv[0], rest, sizeof(rest), 0), 5);
	assert_memory_equal(rest, "hello", 5);
	close(sv[0]);
}

static void
test_proxy_v2_brute_random(void **state)
{
	static const uint8_t	 fams[] = { 0x00, 0x11, 0x12, 0x21, 0x22,
				    0x31, 0x32 };
	static const size_t	 alens[] = { 0, 12, 12, 36, 36, 216, 216 };
	struct mtlsd_pp2	 pp;
	uint8_t			*buf;
	size_t			 len, i, k, ok = 0;
	uint32_t		 mode;
	int			 r;

	(void)state;
	rnd_state = 0x6d746c73;
	for (i = 0; i < BRUTE_RUNS; i++) {
		mode = rnd() % 4;
		len = rnd() % 320;
		buf = malloc(len == 0 ? 1 : len);
		assert_non_null(buf);
		for (k = 0; k < len; k++)
			buf[k] = (uint8_t)rnd();
		/*
		 * Pure noise dies at the first byte; the other modes get
		 * past the signature, the version and the family, and the
		 * last one sets a length that fits, to reach the TLVs.
		 */
		if (mode >= 1)
			memcpy(buf, MTLSD_PP2_SIG,
			    len < MTLSD_PP2_SIG_LEN ? len : MTLSD_PP2_SIG_LEN);
		if (mode >= 2 && len > 13) {
			k = rnd() % sizeof(fams);
			buf[12] = (uint8_t)(0x20 | (rnd() & 1));
			buf[13] = fams[k];
			if (mode == 3 && len >= 16 + alens[k]) {
				/* Often no TLVs, or a few short ones. */
				k = alens[k] + (rnd() % 2 == 0 ? 0 : rnd() %
				    (len - 16 - alens[k] + 1));
				buf[14] = (uint8_t)(k >> 8);
				buf[15] = (uint8_t)k;
			}
		}
		r = mtlsd_pp2_parse(buf, len, &pp);
		check_sane(buf, len, r, &pp);
		if (r > 0)
			ok++;
		free(buf);
	}
	/* Without valid parses the accessors would go untested. */
	assert_true(ok > 500);
}

static void
test_proxy_v2_brute_mutation(void **state)
{
	struct fixture		*f = *state;
	struct mtlsd_pp2	 pp;
	uint8_t			*buf, old;
	size_t			 i;
	unsigned int		 v;
	int			 r;

	buf = dup_exact(f->f_hdr, f->f_hdrlen);
	for (i = 0; i < f->f_hdrlen; i++) {
		old = buf[i];
		for (v = 0; v < 256; v++) {
			buf[i] = (uint8_t)v;
			r = mtlsd_pp2_parse(buf, f->f_hdrlen, &pp);
			check_sane(buf, f->f_hdrlen, r, &pp);
			if (v == old)
				assert_int_equal(r, (int)f->f_hdrlen);
		}
		buf[i] = old;
	}
	free(buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_proxy_v2_roundtrip_v4),
		cmocka_unit_test(test_proxy_v2_roundtrip_v6),
		cmocka_unit_test(test_proxy_v2_roundtrip_mixed),
		cmocka_unit_test(test_proxy_v2_roundtrip_unspec),
		cmocka_unit_test(test_proxy_v2_roundtrip_tlvs),
		cmocka_unit_test(test_proxy_v2_absent_fields),
		cmocka_unit_test(test_proxy_v2_prefix_needs_more),
		cmocka_unit_test(test_proxy_v2_invalid),
		cmocka_unit_test(test_proxy_v2_local_and_unix),
		cmocka_unit_test(test_proxy_v2_encode_too_small),
		cmocka_unit_test(test_proxy_v2_encode_too_large),
		cmocka_unit_test(test_proxy_v2_string),
		cmocka_unit_test(test_proxy_v2_read_loop),
		cmocka_unit_test(test_proxy_v2_brute_random),
		cmocka_unit_test(test_proxy_v2_brute_mutation),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
