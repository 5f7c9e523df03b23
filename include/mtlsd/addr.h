/*
 * Listen and target addresses: "HOST:PORT", "[v6]:PORT" and "unix:/path".
 *
 * Parsing is pure: it never consults the resolver.  Outbound targets that
 * are host names are resolved per connection by the event loop's
 * asynchronous resolver (session.c).
 */
#ifndef MTLSD_ADDR_H
#define MTLSD_ADDR_H

#include <sys/socket.h>
#include <sys/un.h>

#include <stddef.h>
#include <stdint.h>

#define ADDR_HOST_MAX	256
#define ADDR_STR_MAX	(ADDR_HOST_MAX + 8)	/* "[host]:65535" or unix:path */

enum addr_kind {
	ADDR_INET,		/* numeric IPv4 or IPv6, a_ss is valid */
	ADDR_NAME,		/* host name, resolved when used */
	ADDR_UNIX		/* a_path is valid, a_ss holds a sockaddr_un */
};

struct addr {
	enum addr_kind		 a_kind;
	char			 a_host[ADDR_HOST_MAX];	/* no brackets */
	uint16_t		 a_port;
	char			 a_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct sockaddr_storage	 a_ss;
	socklen_t		 a_sslen;
};

/*
 * Parses s into a.  "localhost" is taken as 127.0.0.1 at once (a_host
 * keeps the name), so that a loopback check never depends on
 * /etc/hosts.  On error returns -1 and writes a sentence for the user
 * into err.
 */
int	 addr_parse(const char *s, struct addr *a, char *err, size_t errlen);

/* 1 if a is in 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104 or a unix socket. */
int	 addr_is_local(const struct addr *a);

/* The canonical text form, as addr_parse reads it back. */
const char *addr_str(const struct addr *a, char *buf, size_t len);

/* Text form of a socket address: "1.2.3.4:5", "[::1]:5", "unix:/p". */
const char *addr_sockaddr_str(const struct sockaddr *sa, socklen_t salen,
	    char *buf, size_t len);

#endif
