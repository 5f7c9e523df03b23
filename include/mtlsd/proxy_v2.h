/*
 * proxy_v2.h -- a header-only reader for the PROXY protocol v2 header that
 * mtlsd writes in front of a connection (route option proxy_protocol).
 *
 * Copy this one file into a C or C++ service; it needs nothing else from
 * mtlsd.  It allocates nothing and never reads outside the buffer it is
 * given, whatever the bytes are.  The header carries the client's address
 * and, as TLVs, what mtlsd learnt from the TLS handshake: the SNI
 * (MTLSD_PP2_TYPE_AUTHORITY), the ALPN, the TLS version, cipher and
 * client certificate CN (inside MTLSD_PP2_TYPE_SSL), and three TLVs of its
 * own: the identity that matched the route's allow rule (0xE0, e.g. a
 * SPIFFE ID, never truncated), the route name (0xE1) and the SHA-256 of
 * the client's leaf certificate (0xE2, 32 raw bytes).  A service can
 * authorise on the identity without parsing X.509.
 *
 * A header is 16 bytes plus a 16-bit length, so it is at most
 * MTLSD_PP2_HDR_MAX (16 + 65535) bytes.  Read exactly up to its end and no
 * further, so that the client's first byte is still in the socket for the
 * code that follows.  When mtlsd_pp2_parse() returns 0 it has set
 * header_len to the number of bytes it needs before the next call (16 until
 * the length field has arrived, then the whole header), so the loop below
 * never reads past the header and never spins.  Peeking with MSG_PEEK is
 * only needed by a service that must also accept connections without a
 * header; a peek loop on a partial header returns at once and busy-waits.
 * Here fd is a blocking socket from accept():
 *
 *	static uint8_t		 buf[MTLSD_PP2_HDR_MAX];
 *	struct mtlsd_pp2	 pp;
 *	char			 id[1024];
 *	size_t			 have = 0;
 *	ssize_t			 n;
 *	int			 r;
 *
 *	while ((r = mtlsd_pp2_parse(buf, have, &pp)) == 0) {
 *		n = recv(fd, buf + have, pp.header_len - have, 0);
 *		if (n <= 0)
 *			break;
 *		have += (size_t)n;
 *	}
 *	if (r > 0 && mtlsd_pp2_string(&pp, MTLSD_PP2_TYPE_MTLSD_IDENTITY,
 *	    id, sizeof(id)) == 0)
 *		printf("client %s\n", id);
 *
 * mtlsd_pp2_string() refuses, rather than cuts, an identity longer than
 * id can hold.  Set SO_RCVTIMEO (or poll with a deadline) first, so that a
 * peer that sends half a header cannot hold the service.  Pointers in struct
 * mtlsd_pp2 (tlv) point into the caller's buffer and are valid while it is.
 *
 * The UDP and UNIX_DGRAM families are accepted and reported as AF_INET,
 * AF_INET6 and AF_UNIX.  For the LOCAL command (health checks) the
 * addresses are discarded as the protocol requires, family is AF_UNSPEC,
 * and the TLVs are still available.  A CRC32C TLV is not verified: mtlsd
 * does not send one.
 */
#ifndef MTLSD_PROXY_V2_H
#define MTLSD_PROXY_V2_H

#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MTLSD_PP2_SIG			"\r\n\r\n\0\r\nQUIT\n"
#define MTLSD_PP2_SIG_LEN		12
#define MTLSD_PP2_HDR_MIN		16
#define MTLSD_PP2_HDR_MAX		(16 + 65535)

/* The 13th byte: version in the high nibble, command in the low one. */
#define MTLSD_PP2_VERSION		0x20
#define MTLSD_PP2_CMD_LOCAL		0x00
#define MTLSD_PP2_CMD_PROXY		0x01

/* The 14th byte: address family and transport. */
#define MTLSD_PP2_FAM_UNSPEC		0x00
#define MTLSD_PP2_FAM_TCP4		0x11
#define MTLSD_PP2_FAM_UDP4		0x12
#define MTLSD_PP2_FAM_TCP6		0x21
#define MTLSD_PP2_FAM_UDP6		0x22
#define MTLSD_PP2_FAM_UNIX_STREAM	0x31
#define MTLSD_PP2_FAM_UNIX_DGRAM	0x32

/* Address block sizes: both addresses, then both ports for INET. */
#define MTLSD_PP2_ADDR_LEN_INET		12
#define MTLSD_PP2_ADDR_LEN_INET6	36
#define MTLSD_PP2_ADDR_LEN_UNIX		216

#define MTLSD_PP2_TYPE_ALPN		0x01
#define MTLSD_PP2_TYPE_AUTHORITY	0x02
#define MTLSD_PP2_TYPE_CRC32C		0x03
#define MTLSD_PP2_TYPE_NOOP		0x04
#define MTLSD_PP2_TYPE_UNIQUE_ID	0x05
#define MTLSD_PP2_TYPE_SSL		0x20
#define MTLSD_PP2_TYPE_NETNS		0x30
#define MTLSD_PP2_TYPE_MIN_CUSTOM	0xE0
#define MTLSD_PP2_TYPE_MAX_CUSTOM	0xEF

/* mtlsd's own TLVs, in the custom range. */
#define MTLSD_PP2_TYPE_MTLSD_IDENTITY	0xE0
#define MTLSD_PP2_TYPE_MTLSD_ROUTE	0xE1
#define MTLSD_PP2_TYPE_MTLSD_SHA256	0xE2
#define MTLSD_PP2_SHA256_LEN		32

/* Sub-TLVs inside MTLSD_PP2_TYPE_SSL, after its 5-byte fixed part. */
#define MTLSD_PP2_SUBTYPE_SSL_VERSION	0x21
#define MTLSD_PP2_SUBTYPE_SSL_CN	0x22
#define MTLSD_PP2_SUBTYPE_SSL_CIPHER	0x23
#define MTLSD_PP2_SUBTYPE_SSL_SIG_ALG	0x24
#define MTLSD_PP2_SUBTYPE_SSL_KEY_ALG	0x25
#define MTLSD_PP2_SSL_FIXED_LEN		5

/* Bits of the SSL TLV's client byte. */
#define MTLSD_PP2_CLIENT_SSL		0x01
#define MTLSD_PP2_CLIENT_CERT_CONN	0x02
#define MTLSD_PP2_CLIENT_CERT_SESS	0x04

struct mtlsd_pp2 {
	int			 command;	/* 0 LOCAL, 1 PROXY */
	int			 family;	/* AF_INET, AF_INET6, AF_UNIX
						   or AF_UNSPEC */
	struct sockaddr_storage	 src, dst;	/* with ports, network order */
	const uint8_t		*tlv;		/* into the caller's buffer */
	size_t			 tlv_len;
	size_t			 header_len;	/* see mtlsd_pp2_parse() */
};

/*
 * Steps over one TLV of the len bytes at p, starting at *off.  Returns 1
 * and sets type, value and vlen, and moves *off past it; 0 at the end;
 * -1 if the TLV runs past len.  Use it to walk every TLV:
 *	off = 0;
 *	while (mtlsd_pp2_tlv_next(pp.tlv, pp.tlv_len, &off, &t, &v, &n) == 1)
 */
static inline int
mtlsd_pp2_tlv_next(const uint8_t *p, size_t len, size_t *off, uint8_t *type,
    const uint8_t **value, size_t *vlen)
{
	size_t	 o, n;

	*type = 0;
	*value = NULL;
	*vlen = 0;
	o = *off;
	if (p == NULL || o >= len)
		return 0;
	if (len - o < 3)
		return -1;
	n = (size_t)p[o + 1] << 8 | (size_t)p[o + 2];
	if (n > len - o - 3)
		return -1;
	*type = p[o];
	*value = p + o + 3;
	*vlen = n;
	*off = o + 3 + n;
	return 1;
}

/*
 * 0 if every TLV of the len bytes at p ends inside them, else -1.  top is
 * 1 for the header's TLVs, 0 for the SSL TLV's sub-TLVs, which nest no
 * further.
 */
static inline int
mtlsd_pp2_tlv_check(const uint8_t *p, size_t len, int top)
{
	const uint8_t	*v;
	size_t		 off, n;
	uint8_t		 t;
	int		 r;

	off = 0;
	while ((r = mtlsd_pp2_tlv_next(p, len, &off, &t, &v, &n)) == 1) {
		if (!top || t != MTLSD_PP2_TYPE_SSL)
			continue;
		/* The SSL TLV nests TLVs after its client and verify fields. */
		if (n < MTLSD_PP2_SSL_FIXED_LEN)
			return -1;
		if (mtlsd_pp2_tlv_check(v + MTLSD_PP2_SSL_FIXED_LEN,
		    n - MTLSD_PP2_SSL_FIXED_LEN, 0) == -1)
			return -1;
	}
	return r;
}

/*
 * Parses the PROXY v2 header at the start of the len bytes at buf into out.
 * Returns the header's length (> 0) when a complete, valid header is there;
 * 0 when the bytes are a valid beginning of a header but more are needed,
 * and then out->header_len is how many bytes to have before calling again;
 * -1 when the bytes cannot start a valid header (bad signature, version
 * not 2, unknown command or family, a length too short for the family's
 * addresses, a TLV or SSL sub-TLV running past its end, an SSL TLV shorter
 * than 5 bytes).  A header is rejected as soon as its first wrong byte has
 * arrived, so a client speaking anything else is refused at once.
 */
static inline int
mtlsd_pp2_parse(const void *buf, size_t len, struct mtlsd_pp2 *out)
{
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	struct sockaddr_un	 su;
	const uint8_t		*p;
	size_t			 n, total, alen;
	int			 family;

	memset(out, 0, sizeof(*out));
	out->header_len = MTLSD_PP2_HDR_MIN;
	p = (const uint8_t *)buf;
	if (p == NULL)
		return len == 0 ? 0 : -1;
	n = len < MTLSD_PP2_SIG_LEN ? len : MTLSD_PP2_SIG_LEN;
	/* cppcheck-suppress knownConditionTrueFalse ; n is len, up to 12 */
	if (n > 0 && memcmp(p, MTLSD_PP2_SIG, n) != 0)
		goto fail;
	if (len > 12 && ((p[12] & 0xf0) != MTLSD_PP2_VERSION ||
	    (p[12] & 0x0f) > MTLSD_PP2_CMD_PROXY))
		goto fail;
	family = AF_UNSPEC;
	alen = 0;
	if (len > 13) {
		switch (p[13]) {
		case MTLSD_PP2_FAM_UNSPEC:
			break;
		case MTLSD_PP2_FAM_TCP4:
		case MTLSD_PP2_FAM_UDP4:
			family = AF_INET;
			alen = MTLSD_PP2_ADDR_LEN_INET;
			break;
		case MTLSD_PP2_FAM_TCP6:
		case MTLSD_PP2_FAM_UDP6:
			family = AF_INET6;
			alen = MTLSD_PP2_ADDR_LEN_INET6;
			break;
		case MTLSD_PP2_FAM_UNIX_STREAM:
		case MTLSD_PP2_FAM_UNIX_DGRAM:
			family = AF_UNIX;
			alen = MTLSD_PP2_ADDR_LEN_UNIX;
			break;
		default:
			goto fail;
		}
	}
	if (len < MTLSD_PP2_HDR_MIN)
		return 0;
	total = MTLSD_PP2_HDR_MIN + ((size_t)p[14] << 8 | (size_t)p[15]);
	if (total - MTLSD_PP2_HDR_MIN < alen)
		goto fail;
	out->header_len = total;
	if (len < total)
		return 0;
	if (mtlsd_pp2_tlv_check(p + MTLSD_PP2_HDR_MIN + alen,
	    total - MTLSD_PP2_HDR_MIN - alen, 1) == -1)
		goto fail;

	out->command = p[12] & 0x0f;
	out->tlv = p + MTLSD_PP2_HDR_MIN + alen;
	out->tlv_len = total - MTLSD_PP2_HDR_MIN - alen;
	/* LOCAL: the receiver must use the real endpoints (the spec). */
	if (out->command == MTLSD_PP2_CMD_LOCAL)
		family = AF_UNSPEC;
	out->family = family;
	p += MTLSD_PP2_HDR_MIN;
	switch (family) {
	case AF_INET:
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		memcpy(&sin.sin_addr, p, 4);
		memcpy(&sin.sin_port, p + 8, 2);
		memcpy(&out->src, &sin, sizeof(sin));
		memcpy(&sin.sin_addr, p + 4, 4);
		memcpy(&sin.sin_port, p + 10, 2);
		memcpy(&out->dst, &sin, sizeof(sin));
		break;
	case AF_INET6:
		memset(&sin6, 0, sizeof(sin6));
		sin6.sin6_family = AF_INET6;
		memcpy(&sin6.sin6_addr, p, 16);
		memcpy(&sin6.sin6_port, p + 32, 2);
		memcpy(&out->src, &sin6, sizeof(sin6));
		memcpy(&sin6.sin6_addr, p + 16, 16);
		memcpy(&sin6.sin6_port, p + 34, 2);
		memcpy(&out->dst, &sin6, sizeof(sin6));
		break;
	case AF_UNIX:
		/*
		 * 108 bytes each, as on Linux; a path that fills them all
		 * has no NUL, and an abstract socket's begins with one.
		 */
		n = sizeof(su.sun_path) < 108 ? sizeof(su.sun_path) : 108;
		memset(&su, 0, sizeof(su));
		su.sun_family = AF_UNIX;
		memcpy(su.sun_path, p, n);
		memcpy(&out->src, &su, sizeof(su));
		memset(su.sun_path, 0, sizeof(su.sun_path));
		memcpy(su.sun_path, p + 108, n);
		memcpy(&out->dst, &su, sizeof(su));
		break;
	default:
		break;
	}
	return (int)total;

fail:
	memset(out, 0, sizeof(*out));
	return -1;
}

/*
 * Finds the first top-level TLV of the given type.  Returns 1 and points
 * value at its len bytes, or 0 (value NULL, len 0) if there is none.
 */
static inline int
mtlsd_pp2_tlv(const struct mtlsd_pp2 *pp, uint8_t type,
    const uint8_t **value, size_t *len)
{
	const uint8_t	*v;
	size_t		 off, n;
	uint8_t		 t;

	*value = NULL;
	*len = 0;
	off = 0;
	while (mtlsd_pp2_tlv_next(pp->tlv, pp->tlv_len, &off, &t, &v,
	    &n) == 1) {
		if (t == type) {
			*value = v;
			*len = n;
			return 1;
		}
	}
	return 0;
}

/*
 * Reads the SSL TLV's fixed part: client (MTLSD_PP2_CLIENT_* bits) and
 * verify (0 when the client certificate was verified).  Returns 1, or 0
 * with both set to 0 when there is no SSL TLV.
 */
static inline int
mtlsd_pp2_ssl(const struct mtlsd_pp2 *pp, uint8_t *client, uint32_t *verify)
{
	const uint8_t	*v;
	size_t		 n;

	*client = 0;
	*verify = 0;
	if (!mtlsd_pp2_tlv(pp, MTLSD_PP2_TYPE_SSL, &v, &n) ||
	    n < MTLSD_PP2_SSL_FIXED_LEN)
		return 0;
	*client = v[0];
	*verify = (uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 |
	    (uint32_t)v[3] << 8 | (uint32_t)v[4];
	return 1;
}

/* As mtlsd_pp2_tlv(), for a sub-TLV of the SSL TLV. */
static inline int
mtlsd_pp2_ssl_sub(const struct mtlsd_pp2 *pp, uint8_t subtype,
    const uint8_t **value, size_t *len)
{
	const uint8_t	*ssl, *v;
	size_t		 ssl_len, off, n;
	uint8_t		 t;

	*value = NULL;
	*len = 0;
	if (!mtlsd_pp2_tlv(pp, MTLSD_PP2_TYPE_SSL, &ssl, &ssl_len) ||
	    ssl_len < MTLSD_PP2_SSL_FIXED_LEN)
		return 0;
	ssl += MTLSD_PP2_SSL_FIXED_LEN;
	ssl_len -= MTLSD_PP2_SSL_FIXED_LEN;
	off = 0;
	while (mtlsd_pp2_tlv_next(ssl, ssl_len, &off, &t, &v, &n) == 1) {
		if (t == subtype) {
			*value = v;
			*len = n;
			return 1;
		}
	}
	return 0;
}

/*
 * Copies the value of the top-level TLV of the given type into buf as a
 * NUL-terminated string.  Returns 0, or -1 (buf "" if buflen > 0) when
 * the TLV is missing, does not fit with its NUL, or contains a NUL: a
 * value with an embedded NUL would compare equal to a shorter identity.
 */
static inline int
mtlsd_pp2_string(const struct mtlsd_pp2 *pp, uint8_t type, char *buf,
    size_t buflen)
{
	const uint8_t	*v;
	size_t		 n;

	if (buf != NULL && buflen > 0)
		buf[0] = '\0';
	if (buf == NULL || buflen == 0 || !mtlsd_pp2_tlv(pp, type, &v, &n) ||
	    n >= buflen || (n > 0 && memchr(v, '\0', n) != NULL))
		return -1;
	if (n > 0)
		memcpy(buf, v, n);
	buf[n] = '\0';
	return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* MTLSD_PROXY_V2_H */
