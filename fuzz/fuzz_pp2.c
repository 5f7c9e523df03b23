/*
 * Fuzzes the PROXY v2 encoder (pp2.c) and the header-only reader that
 * services copy (proxy_v2.h).  The first input byte picks the mode.
 *
 * Even: the reader on raw bytes.  The rest of the input is copied to a
 * buffer of exactly its size, so ASan sees any read outside it.  A
 * positive result is a header length <= len equal to header_len; 0 asks
 * for more (header_len > len, within MTLSD_PP2_HDR_MAX); -1 leaves the
 * result zeroed.  A valid header's every prefix is "a valid beginning"
 * (0) and a refusal stays a refusal as bytes arrive.  Every accessor is
 * then run over what was parsed, each pointer checked to be inside it.
 *
 * Odd: the round trip.  The input becomes two addresses (none, IPv4,
 * IPv6 or unix, each in a sockaddr of exactly its size), a struct
 * pp2_info and an output buffer size:
 *	[mode][families][fields][bufsize:2][grow][src 18][dst 18][field]...
 * families: low 2 bits src, next 2 dst (0 none, 1 inet, 2 inet6, 3 unix);
 * fields: one bit per pp2_info member present, in the order of
 * enum fuzz_field; each present field is [len:2][bytes]; bufsize with
 * its high bit clear means a buffer large enough for any header, set the
 * exact size (low 15 bits); grow makes the identity longer by 300 bytes a
 * step, to reach the 65535-byte limit.
 * pp2_encode() must then fail only for the reasons pp2.h gives, never
 * write past the buffer, and what it wrote must parse back to the same
 * family, addresses, ports and TLVs (empty fields left out, the SSL TLV
 * always there).
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtlsd/pp2.h"
#include "mtlsd/proxy_v2.h"

#define FUZZ_NFIELDS	8
#define FUZZ_ADDR_IN	18	/* 16 address bytes, 2 port bytes */
#define FUZZ_PAYLOAD	65535

enum fuzz_field {
	F_AUTHORITY, F_ALPN, F_VERSION, F_CIPHER, F_CN, F_IDENTITY, F_ROUTE,
	F_SHA256
};

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void	fuzz_fail(const char *, ...)
		    __attribute__((__format__(printf, 1, 2), noreturn));
static void	fuzz_inside(const struct mtlsd_pp2 *, const uint8_t *,
		    size_t, const char *);
static void	fuzz_reader(const uint8_t *, size_t);
static struct sockaddr *fuzz_sockaddr(int, const uint8_t *);
static void	fuzz_v6(const struct sockaddr *, uint8_t *, uint16_t *);
static void	fuzz_expect_tlv(const struct mtlsd_pp2 *, int, uint8_t,
		    const void *, size_t);
static void	fuzz_round_trip(const uint8_t *, size_t);

static void
fuzz_fail(const char *fmt, ...)
{
	va_list	 ap;

	fprintf(stderr, "fuzz_pp2: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* A value the reader hands out lies inside the header it parsed. */
static void
fuzz_inside(const struct mtlsd_pp2 *pp, const uint8_t *v, size_t n,
    const char *what)
{
	if (v == NULL) {
		if (n != 0)
			fuzz_fail("%s: NULL value of length %zu", what, n);
		return;
	}
	if (v < pp->tlv || n > pp->tlv_len ||
	    (size_t)(v - pp->tlv) > pp->tlv_len - n)
		fuzz_fail("%s: value outside the TLVs", what);
}

static void
fuzz_reader(const uint8_t *data, size_t size)
{
	static const size_t	 bufsizes[] = { 0, 1, 2, 16, 33, 256, 4096 };
	struct mtlsd_pp2	 pp, zero, pp2;
	const uint8_t		*v;
	uint8_t			*buf, t, client;
	uint32_t		 verify;
	size_t			 off, n, k, i;
	char			*str;
	int			 r, r2;

	/* Exactly size bytes: one byte too far is an ASan report. */
	if ((buf = malloc(size > 0 ? size : 1)) == NULL)
		return;
	memcpy(buf, data, size);
	memset(&zero, 0, sizeof(zero));
	r = mtlsd_pp2_parse(size > 0 ? buf : NULL, size, &pp);

	if (r == -1) {
		if (memcmp(&pp, &zero, sizeof(pp)) != 0)
			fuzz_fail("refused, but the result is not cleared");
		/* Refused for good: more bytes never make it valid. */
		if (size > 16 && mtlsd_pp2_parse(buf, size - 1, &pp2) > 0)
			fuzz_fail("a prefix parsed, the whole refused");
		free(buf);
		return;
	}
	if (r == 0) {
		if (pp.header_len <= size ||
		    pp.header_len < MTLSD_PP2_HDR_MIN ||
		    pp.header_len > MTLSD_PP2_HDR_MAX)
			fuzz_fail("wants more, header_len %zu with %zu bytes",
			    pp.header_len, size);
		if (size > 0 && mtlsd_pp2_parse(buf, size - 1, &pp2) != 0)
			fuzz_fail("a valid beginning has a prefix that is not");
		free(buf);
		return;
	}
	if ((size_t)r > size || (size_t)r != pp.header_len ||
	    (size_t)r < MTLSD_PP2_HDR_MIN)
		fuzz_fail("returned %d for %zu bytes, header_len %zu", r,
		    size, pp.header_len);
	if (pp.tlv_len > (size_t)r || (pp.tlv_len > 0 &&
	    (pp.tlv < buf || pp.tlv + pp.tlv_len > buf + r)))
		fuzz_fail("TLVs outside the header");
	if (pp.command != MTLSD_PP2_CMD_LOCAL &&
	    pp.command != MTLSD_PP2_CMD_PROXY)
		fuzz_fail("command %d", pp.command);
	if (pp.family != AF_UNSPEC && pp.family != AF_INET &&
	    pp.family != AF_INET6 && pp.family != AF_UNIX)
		fuzz_fail("family %d", pp.family);
	if (mtlsd_pp2_parse(buf, (size_t)r, &pp2) != r ||
	    memcmp(&pp, &pp2, sizeof(pp)) != 0)
		fuzz_fail("the header alone parses differently");
	/* Its prefixes are valid beginnings, asking for the right length. */
	for (k = 0; k < (size_t)r; k += k < 20 ? 1 : 97) {
		if ((r2 = mtlsd_pp2_parse(buf, k, &pp2)) != 0)
			fuzz_fail("prefix of %zu bytes of a %d-byte header "
			    "gave %d", k, r, r2);
		if (pp2.header_len != (k < MTLSD_PP2_HDR_MIN ?
		    MTLSD_PP2_HDR_MIN : (size_t)r))
			fuzz_fail("prefix of %zu bytes: header_len %zu", k,
			    pp2.header_len);
	}

	/* Every accessor, over everything that was parsed. */
	off = 0;
	while ((r2 = mtlsd_pp2_tlv_next(pp.tlv, pp.tlv_len, &off, &t, &v,
	    &n)) == 1) {
		fuzz_inside(&pp, v, n, "tlv_next");
		if (off > pp.tlv_len)
			fuzz_fail("tlv_next moved past the end");
	}
	if (r2 == -1)
		fuzz_fail("a TLV runs past the end of a valid header");
	for (i = 0; i < 256; i++) {
		if (mtlsd_pp2_tlv(&pp, (uint8_t)i, &v, &n) == 1)
			fuzz_inside(&pp, v, n, "tlv");
		if (mtlsd_pp2_ssl_sub(&pp, (uint8_t)i, &v, &n) == 1)
			fuzz_inside(&pp, v, n, "ssl_sub");
	}
	mtlsd_pp2_ssl(&pp, &client, &verify);
	for (i = 0; i < sizeof(bufsizes) / sizeof(bufsizes[0]); i++) {
		if ((str = malloc(bufsizes[i] > 0 ? bufsizes[i] : 1)) == NULL)
			break;
		for (t = MTLSD_PP2_TYPE_MIN_CUSTOM; t <= 0xe2; t++)
			if (mtlsd_pp2_string(&pp, t, bufsizes[i] > 0 ? str :
			    NULL, bufsizes[i]) == 0 &&
			    strlen(str) >= bufsizes[i])
				fuzz_fail("pp2_string overran %zu bytes",
				    bufsizes[i]);
		free(str);
	}
	free(buf);
}

/*
 * A socket address of exactly its type's size (ASan sees an over-read):
 * kind 1 AF_INET, 2 AF_INET6, 3 AF_UNIX, else NULL.
 */
static struct sockaddr *
fuzz_sockaddr(int kind, const uint8_t *in)
{
	struct sockaddr_in	*sin;
	struct sockaddr_in6	*sin6;
	struct sockaddr_un	*sun;

	switch (kind) {
	case 1:
		if ((sin = calloc(1, sizeof(*sin))) == NULL)
			return NULL;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, in, 4);
		memcpy(&sin->sin_port, in + 16, 2);
		return (struct sockaddr *)sin;
	case 2:
		if ((sin6 = calloc(1, sizeof(*sin6))) == NULL)
			return NULL;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, in, 16);
		memcpy(&sin6->sin6_port, in + 16, 2);
		return (struct sockaddr *)sin6;
	case 3:
		if ((sun = calloc(1, sizeof(*sun))) == NULL)
			return NULL;
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, in, 16);
		sun->sun_path[16] = '\0';
		return (struct sockaddr *)sun;
	default:
		return NULL;
	}
}

/* A top-level (ssl 0) or SSL sub-TLV (ssl 1): there with v, or absent. */
static void
fuzz_expect_tlv(const struct mtlsd_pp2 *pp, int ssl, uint8_t type,
    const void *v, size_t n)
{
	const uint8_t	*got;
	size_t		 len;
	int		 found;

	found = ssl ? mtlsd_pp2_ssl_sub(pp, type, &got, &len) :
	    mtlsd_pp2_tlv(pp, type, &got, &len);
	if (n == 0) {
		if (found)
			fuzz_fail("TLV 0x%02x written for an empty value",
			    type);
		return;
	}
	if (!found || len != n || memcmp(got, v, n) != 0)
		fuzz_fail("TLV 0x%02x (%zu bytes) did not come back intact",
		    type, n);
}

/* The mapped form of sa in a TCP6 header: ::ffff:a.b.c.d for IPv4. */
static void
fuzz_v6(const struct sockaddr *sa, uint8_t *addr, uint16_t *port)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;

	if (sa->sa_family == AF_INET) {
		sin = (const struct sockaddr_in *)sa;
		memset(addr, 0, 10);
		addr[10] = addr[11] = 0xff;
		memcpy(addr + 12, &sin->sin_addr, 4);
		*port = sin->sin_port;
		return;
	}
	sin6 = (const struct sockaddr_in6 *)sa;
	memcpy(addr, &sin6->sin6_addr, 16);
	*port = sin6->sin6_port;
}

static void
fuzz_round_trip(const uint8_t *data, size_t size)
{
	struct pp2_info		 info;
	struct mtlsd_pp2	 pp;
	struct sockaddr		*src = NULL, *dst = NULL;
	const struct sockaddr_in *a4, *b4;
	const struct sockaddr_in6 *p6;
	char			*str[FUZZ_NFIELDS];
	size_t			 flen[FUZZ_NFIELDS];
	uint8_t			 hdr[6 + 2 * FUZZ_ADDR_IN], *buf = NULL, client;
	uint8_t			 sha[32], want6[16];
	uint32_t		 verify;
	uint16_t		 port6;
	size_t			 off, bufsize, len, need, tlvsize, sslsize;
	size_t			 i, grow;
	ssize_t			 n;
	int			 fam, want;

	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr, data, size < sizeof(hdr) ? size : sizeof(hdr));
	off = size < sizeof(hdr) ? size : sizeof(hdr);
	/* High bit clear: room for any header; set: exactly this many. */
	bufsize = hdr[3] & 0x80 ? ((size_t)(hdr[3] & 0x7f) << 8 | hdr[4]) :
	    MTLSD_PP2_HDR_MAX;
	grow = hdr[5];
	src = fuzz_sockaddr(hdr[1] & 3, hdr + 6);
	dst = fuzz_sockaddr((hdr[1] >> 2) & 3, hdr + 6 + FUZZ_ADDR_IN);

	/* The fields, each a malloc'd copy: NUL-terminated strings. */
	memset(str, 0, sizeof(str));
	memset(flen, 0, sizeof(flen));
	for (i = 0; i < FUZZ_NFIELDS; i++) {
		if (!(hdr[2] & (1 << i)))
			continue;
		len = 0;
		if (off + 2 <= size) {
			len = (size_t)data[off] << 8 | data[off + 1];
			off += 2;
		}
		if (len > size - off)
			len = size - off;
		if (i == F_IDENTITY)
			len += grow * 300;
		if ((str[i] = malloc(len + 1)) == NULL)
			goto out;
		memset(str[i], 'i', len);
		memcpy(str[i], data + off, len - (i == F_IDENTITY ?
		    grow * 300 : 0));
		str[i][len] = '\0';
		off += len - (i == F_IDENTITY ? grow * 300 : 0);
		/* What pp2_encode() will see: strlen, or ALPN's length. */
		flen[i] = i == F_ALPN ? len : strlen(str[i]);
	}
	memset(&info, 0, sizeof(info));
	info.authority = str[F_AUTHORITY];
	info.alpn = (const uint8_t *)str[F_ALPN];
	info.alpn_len = flen[F_ALPN];
	info.ssl_version = str[F_VERSION];
	info.ssl_cipher = str[F_CIPHER];
	info.ssl_cn = str[F_CN];
	info.identity = str[F_IDENTITY];
	info.route = str[F_ROUTE];
	if (str[F_SHA256] != NULL) {
		memset(sha, 0, sizeof(sha));
		memcpy(sha, str[F_SHA256], flen[F_SHA256] < sizeof(sha) ?
		    flen[F_SHA256] : sizeof(sha));
		info.sha256 = sha;
	}

	/* What pp2.h says the header must be. */
	fam = MTLSD_PP2_FAM_UNSPEC;
	if (src != NULL && dst != NULL) {
		if (src->sa_family == AF_INET && dst->sa_family == AF_INET)
			fam = MTLSD_PP2_FAM_TCP4;
		else if (src->sa_family != AF_UNIX &&
		    dst->sa_family != AF_UNIX)
			fam = MTLSD_PP2_FAM_TCP6;
	}
	tlvsize = 0;
	for (i = 0; i < FUZZ_NFIELDS; i++)
		if (i != F_VERSION && i != F_CIPHER && i != F_CN &&
		    i != F_SHA256 && flen[i] > 0)
			tlvsize += 3 + flen[i];
	sslsize = 5;
	for (i = F_VERSION; i <= F_CN; i++)
		if (flen[i] > 0)
			sslsize += 3 + flen[i];
	need = (fam == MTLSD_PP2_FAM_TCP4 ? 12 : fam == MTLSD_PP2_FAM_TCP6 ?
	    36 : 0) + tlvsize + 3 + sslsize + (info.sha256 != NULL ? 35 : 0);

	/* Exactly bufsize bytes, so a write past them is an ASan report. */
	if ((buf = malloc(bufsize > 0 ? bufsize : 1)) == NULL)
		goto out;
	errno = 0;
	n = pp2_encode(bufsize > 0 ? buf : NULL, bufsize, src, dst, &info);
	if (n == -1) {
		want = need > FUZZ_PAYLOAD ? EMSGSIZE : ENOBUFS;
		if (errno != want)
			fuzz_fail("failed with errno %d, expected %d (need "
			    "%zu, buffer %zu)", errno, want, need, bufsize);
		if (want == ENOBUFS && bufsize >= 16 + need)
			fuzz_fail("ENOBUFS, but %zu bytes fit %zu", bufsize,
			    16 + need);
		goto out;
	}
	if (need > FUZZ_PAYLOAD || (size_t)n != 16 + need)
		fuzz_fail("wrote %zd bytes, expected 16 + %zu", n, need);

	if (mtlsd_pp2_parse(buf, (size_t)n, &pp) != n)
		fuzz_fail("its own header does not parse");
	if (pp.command != MTLSD_PP2_CMD_PROXY || buf[13] != fam)
		fuzz_fail("command %d, family byte 0x%02x, expected 0x%02x",
		    pp.command, buf[13], fam);
	switch (fam) {
	case MTLSD_PP2_FAM_TCP4:
		a4 = (const struct sockaddr_in *)&pp.src;
		b4 = (const struct sockaddr_in *)src;
		if (pp.family != AF_INET || a4->sin_port != b4->sin_port ||
		    memcmp(&a4->sin_addr, &b4->sin_addr, 4) != 0)
			fuzz_fail("source address changed");
		a4 = (const struct sockaddr_in *)&pp.dst;
		b4 = (const struct sockaddr_in *)dst;
		if (a4->sin_port != b4->sin_port ||
		    memcmp(&a4->sin_addr, &b4->sin_addr, 4) != 0)
			fuzz_fail("destination address changed");
		break;
	case MTLSD_PP2_FAM_TCP6:
		if (pp.family != AF_INET6)
			fuzz_fail("TCP6 read as family %d", pp.family);
		fuzz_v6(src, want6, &port6);
		p6 = (const struct sockaddr_in6 *)&pp.src;
		if (p6->sin6_port != port6 ||
		    memcmp(&p6->sin6_addr, want6, 16) != 0)
			fuzz_fail("source address changed");
		fuzz_v6(dst, want6, &port6);
		p6 = (const struct sockaddr_in6 *)&pp.dst;
		if (p6->sin6_port != port6 ||
		    memcmp(&p6->sin6_addr, want6, 16) != 0)
			fuzz_fail("destination address changed");
		break;
	default:
		if (pp.family != AF_UNSPEC)
			fuzz_fail("UNSPEC read as family %d", pp.family);
		break;
	}

	fuzz_expect_tlv(&pp, 0, MTLSD_PP2_TYPE_AUTHORITY, str[F_AUTHORITY],
	    flen[F_AUTHORITY]);
	fuzz_expect_tlv(&pp, 0, MTLSD_PP2_TYPE_ALPN, str[F_ALPN], flen[F_ALPN]);
	if (!mtlsd_pp2_ssl(&pp, &client, &verify) ||
	    client != (MTLSD_PP2_CLIENT_SSL | MTLSD_PP2_CLIENT_CERT_CONN) ||
	    verify != 0)
		fuzz_fail("SSL TLV missing or wrong");
	fuzz_expect_tlv(&pp, 1, MTLSD_PP2_SUBTYPE_SSL_VERSION, str[F_VERSION],
	    flen[F_VERSION]);
	fuzz_expect_tlv(&pp, 1, MTLSD_PP2_SUBTYPE_SSL_CIPHER, str[F_CIPHER],
	    flen[F_CIPHER]);
	fuzz_expect_tlv(&pp, 1, MTLSD_PP2_SUBTYPE_SSL_CN, str[F_CN],
	    flen[F_CN]);
	fuzz_expect_tlv(&pp, 0, MTLSD_PP2_TYPE_MTLSD_IDENTITY, str[F_IDENTITY],
	    flen[F_IDENTITY]);
	fuzz_expect_tlv(&pp, 0, MTLSD_PP2_TYPE_MTLSD_ROUTE, str[F_ROUTE],
	    flen[F_ROUTE]);
	fuzz_expect_tlv(&pp, 0, MTLSD_PP2_TYPE_MTLSD_SHA256, info.sha256,
	    info.sha256 != NULL ? sizeof(sha) : 0);
	/* And the reader's own checks hold for what the encoder wrote. */
	fuzz_reader(buf, (size_t)n);
out:
	free(buf);
	for (i = 0; i < FUZZ_NFIELDS; i++)
		free(str[i]);
	free(src);
	free(dst);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 1)
		fuzz_round_trip(data, size);
	else
		fuzz_reader(data + 1, size - 1);
	return 0;
}
