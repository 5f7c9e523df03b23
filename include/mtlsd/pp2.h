/*
 * The PROXY protocol v2 header that mtlsd writes to a target before the
 * first byte of the client's data (route option proxy_protocol).  Services
 * read it with the header-only proxy_v2.h.
 */
#ifndef MTLSD_PP2_H
#define MTLSD_PP2_H

#include <sys/types.h>
#include <sys/socket.h>

#include <stddef.h>
#include <stdint.h>

/*
 * What the handshake and the policy learnt about the client.  A NULL or
 * empty field is left out of the header.  Nothing is copied: the strings
 * need only live until pp2_encode() returns.
 */
struct pp2_info {
	const char	*authority;	/* SNI or NULL */
	const uint8_t	*alpn;		/* the protocol, not a TLS list */
	size_t		 alpn_len;
	const char	*ssl_version;	/* SSL_get_version(): "TLSv1.3" */
	const char	*ssl_cipher;
	const char	*ssl_cn;	/* the client certificate's CN */
	const char	*identity;	/* matched the route's allow rule */
	const char	*route;
	const uint8_t	*sha256;	/* 32 bytes or NULL */
};

/*
 * Writes a PROXY command header for a connection from src to dst into the
 * len bytes at buf and returns its length, or -1 with errno ENOBUFS when
 * buf is too small or EMSGSIZE when the TLVs would not fit the 65535-byte
 * payload the protocol allows.  Two AF_INET addresses make TCP4; an
 * AF_INET6 one makes TCP6, with an AF_INET partner mapped to
 * ::ffff:a.b.c.d; anything else (AF_UNIX, NULL) makes UNSPEC with no
 * address block, and the target then sees only the TLVs.  info may be
 * NULL.  The TLVs, in this order: AUTHORITY, ALPN, SSL (client
 * PP2_CLIENT_SSL|PP2_CLIENT_CERT_CONN, verify 0, then the sub-TLVs
 * SSL_VERSION, SSL_CIPHER, SSL_CN), 0xE0 identity, 0xE1 route, 0xE2
 * sha256.  The SSL TLV is always there: mtlsd only relays verified TLS.
 */
ssize_t	 pp2_encode(uint8_t *buf, size_t len, const struct sockaddr *src,
	    const struct sockaddr *dst, const struct pp2_info *info);

#endif
