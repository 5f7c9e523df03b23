/*
 * The PROXY protocol v2 encoder.  Pure: no I/O, no allocation, so the
 * session code decides when the header goes out and the tests can check
 * every byte against the reader in proxy_v2.h.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <errno.h>
#include <string.h>

#include "mtlsd/pp2.h"
#include "mtlsd/proxy_v2.h"

#define PP2_TLV_HDR		3
#define PP2_PAYLOAD_MAX		65535

static size_t	 pp2_tlv_size(size_t);
static int	 pp2_family(const struct sockaddr *, const struct sockaddr *);
static void	 pp2_addr4(const struct sockaddr *, uint8_t *, uint8_t *);
static void	 pp2_addr6(const struct sockaddr *, uint8_t *, uint8_t *);
static uint8_t	*pp2_tlv_hdr(uint8_t *, uint8_t, size_t);
static uint8_t	*pp2_tlv(uint8_t *, uint8_t, const void *, size_t);

/* A TLV with an empty value is left out, so it costs nothing. */
static size_t
pp2_tlv_size(size_t vlen)
{
	return vlen == 0 ? 0 : PP2_TLV_HDR + vlen;
}

/* The family byte; see pp2_encode() in pp2.h for the rule. */
static int
pp2_family(const struct sockaddr *src, const struct sockaddr *dst)
{
	if (src == NULL || dst == NULL)
		return MTLSD_PP2_FAM_UNSPEC;
	if (src->sa_family == AF_INET && dst->sa_family == AF_INET)
		return MTLSD_PP2_FAM_TCP4;
	if ((src->sa_family == AF_INET || src->sa_family == AF_INET6) &&
	    (dst->sa_family == AF_INET || dst->sa_family == AF_INET6))
		return MTLSD_PP2_FAM_TCP6;
	return MTLSD_PP2_FAM_UNSPEC;
}

/* Copies an AF_INET address and port, both already in network order. */
static void
pp2_addr4(const struct sockaddr *sa, uint8_t *addr, uint8_t *port)
{
	struct sockaddr_in	 sin;

	memcpy(&sin, sa, sizeof(sin));
	memcpy(addr, &sin.sin_addr, 4);
	memcpy(port, &sin.sin_port, 2);
}

/* As pp2_addr4() for TCP6, mapping an AF_INET address to ::ffff:a.b.c.d. */
static void
pp2_addr6(const struct sockaddr *sa, uint8_t *addr, uint8_t *port)
{
	struct sockaddr_in6	 sin6;

	if (sa->sa_family == AF_INET) {
		memset(addr, 0, 10);
		addr[10] = 0xff;
		addr[11] = 0xff;
		pp2_addr4(sa, addr + 12, port);
		return;
	}
	memcpy(&sin6, sa, sizeof(sin6));
	memcpy(addr, &sin6.sin6_addr, 16);
	memcpy(port, &sin6.sin6_port, 2);
}

static uint8_t *
pp2_tlv_hdr(uint8_t *p, uint8_t type, size_t vlen)
{
	p[0] = type;
	p[1] = (uint8_t)(vlen >> 8);
	p[2] = (uint8_t)vlen;
	return p + PP2_TLV_HDR;
}

/* Writes one TLV unless the value is empty; returns the end. */
static uint8_t *
pp2_tlv(uint8_t *p, uint8_t type, const void *value, size_t vlen)
{
	if (vlen == 0)
		return p;
	p = pp2_tlv_hdr(p, type, vlen);
	memcpy(p, value, vlen);
	return p + vlen;
}

ssize_t
pp2_encode(uint8_t *buf, size_t len, const struct sockaddr *src,
    const struct sockaddr *dst, const struct pp2_info *info)
{
	static const struct pp2_info	 none;
	size_t				 auth, alpn, ver, ciph, cn, id, route;
	size_t				 sha, alen, ssl, payload;
	uint8_t				*p;
	int				 fam;

	if (info == NULL)
		info = &none;
	auth = info->authority == NULL ? 0 : strlen(info->authority);
	alpn = info->alpn == NULL ? 0 : info->alpn_len;
	ver = info->ssl_version == NULL ? 0 : strlen(info->ssl_version);
	ciph = info->ssl_cipher == NULL ? 0 : strlen(info->ssl_cipher);
	cn = info->ssl_cn == NULL ? 0 : strlen(info->ssl_cn);
	id = info->identity == NULL ? 0 : strlen(info->identity);
	route = info->route == NULL ? 0 : strlen(info->route);
	sha = info->sha256 == NULL ? 0 : MTLSD_PP2_SHA256_LEN;

	/* Bounding each part first keeps the sums below from wrapping. */
	if (auth > PP2_PAYLOAD_MAX || alpn > PP2_PAYLOAD_MAX ||
	    ver > PP2_PAYLOAD_MAX || ciph > PP2_PAYLOAD_MAX ||
	    cn > PP2_PAYLOAD_MAX || id > PP2_PAYLOAD_MAX ||
	    route > PP2_PAYLOAD_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	fam = pp2_family(src, dst);
	if (fam == MTLSD_PP2_FAM_TCP4)
		alen = MTLSD_PP2_ADDR_LEN_INET;
	else if (fam == MTLSD_PP2_FAM_TCP6)
		alen = MTLSD_PP2_ADDR_LEN_INET6;
	else
		alen = 0;
	ssl = MTLSD_PP2_SSL_FIXED_LEN + pp2_tlv_size(ver) +
	    pp2_tlv_size(ciph) + pp2_tlv_size(cn);
	payload = alen + pp2_tlv_size(auth) + pp2_tlv_size(alpn) +
	    PP2_TLV_HDR + ssl + pp2_tlv_size(id) + pp2_tlv_size(route) +
	    pp2_tlv_size(sha);
	if (payload > PP2_PAYLOAD_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	if (buf == NULL || len < MTLSD_PP2_HDR_MIN + payload) {
		errno = ENOBUFS;
		return -1;
	}

	p = buf;
	/* The signature is 12 bytes of binary, not a string. */
	memcpy(p, MTLSD_PP2_SIG, MTLSD_PP2_SIG_LEN); /* NOLINT */
	p[12] = MTLSD_PP2_VERSION | MTLSD_PP2_CMD_PROXY;
	p[13] = (uint8_t)fam;
	p[14] = (uint8_t)(payload >> 8);
	p[15] = (uint8_t)payload;
	p += MTLSD_PP2_HDR_MIN;
	if (fam == MTLSD_PP2_FAM_TCP4) {
		pp2_addr4(src, p, p + 8);
		pp2_addr4(dst, p + 4, p + 10);
	} else if (fam == MTLSD_PP2_FAM_TCP6) {
		pp2_addr6(src, p, p + 32);
		pp2_addr6(dst, p + 16, p + 34);
	}
	p += alen;

	p = pp2_tlv(p, MTLSD_PP2_TYPE_AUTHORITY, info->authority, auth);
	p = pp2_tlv(p, MTLSD_PP2_TYPE_ALPN, info->alpn, alpn);
	p = pp2_tlv_hdr(p, MTLSD_PP2_TYPE_SSL, ssl);
	/* Only verified peers reach a target, hence CERT_CONN and 0. */
	*p++ = MTLSD_PP2_CLIENT_SSL | MTLSD_PP2_CLIENT_CERT_CONN;
	memset(p, 0, 4);
	p += 4;
	p = pp2_tlv(p, MTLSD_PP2_SUBTYPE_SSL_VERSION, info->ssl_version, ver);
	p = pp2_tlv(p, MTLSD_PP2_SUBTYPE_SSL_CIPHER, info->ssl_cipher, ciph);
	p = pp2_tlv(p, MTLSD_PP2_SUBTYPE_SSL_CN, info->ssl_cn, cn);
	p = pp2_tlv(p, MTLSD_PP2_TYPE_MTLSD_IDENTITY, info->identity, id);
	p = pp2_tlv(p, MTLSD_PP2_TYPE_MTLSD_ROUTE, info->route, route);
	p = pp2_tlv(p, MTLSD_PP2_TYPE_MTLSD_SHA256, info->sha256, sha);
	return p - buf;
}
