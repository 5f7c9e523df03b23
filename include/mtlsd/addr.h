/*
 * Listen and target addresses: "HOST:PORT", "[v6]:PORT" and "unix:/path".
 *
 * Parsing is pure; only addr_resolve() may consult the resolver, and it is
 * called at start-up, never from an event loop.
 */
#ifndef MTLSD_ADDR_H
#define MTLSD_ADDR_H

#include <sys/socket.h>
#include <sys/un.h>

#include <stddef.h>
#include <stdint.h>

#define ADDR_HOST_MAX	256
#define ADDR_STR_MAX	(sizeof(((struct sockaddr_un *)0)->sun_path) + 8)

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

/* Resolves an ADDR_NAME with getaddrinfo (blocking: start-up only). */
int	 addr_resolve(struct addr *a, char *err, size_t errlen);

/* The canonical text form, as addr_parse reads it back. */
const char *addr_str(const struct addr *a, char *buf, size_t len);

/* Text form of a socket address: "1.2.3.4:5", "[::1]:5", "unix:/p". */
const char *addr_sockaddr_str(const struct sockaddr *sa, socklen_t salen,
	    char *buf, size_t len);

#endif
