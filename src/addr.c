/*
 * Address parsing and the loopback rule.
 */
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtlsd/addr.h"

static int	addr_port(const char *s, uint16_t *port);
static int	addr_numeric(struct addr *a);

/* Ports are decimal 1..65535, nothing else: "080" is fine, "+80" is not. */
static int
addr_port(const char *s, uint16_t *port)
{
	unsigned long	 v = 0;
	const char	*p;

	if (*s == '\0' || strlen(s) > 5)
		return -1;
	for (p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v == 0 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* Fills a_ss when a_host is an IP literal; returns 0 then, else -1. */
static int
addr_numeric(struct addr *a)
{
	struct sockaddr_in	*sin;
	struct sockaddr_in6	*sin6;

	memset(&a->a_ss, 0, sizeof(a->a_ss));
	sin = (struct sockaddr_in *)&a->a_ss;
	if (inet_pton(AF_INET, a->a_host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(a->a_port);
		a->a_sslen = sizeof(*sin);
		return 0;
	}
	sin6 = (struct sockaddr_in6 *)&a->a_ss;
	if (inet_pton(AF_INET6, a->a_host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(a->a_port);
		a->a_sslen = sizeof(*sin6);
		return 0;
	}
	return -1;
}

int
addr_parse(const char *s, struct addr *a, char *err, size_t errlen)
{
	struct sockaddr_un	*sun;
	const char		*host, *port, *end;
	size_t			 hostlen;

	memset(a, 0, sizeof(*a));
	if (s == NULL || *s == '\0') {
		snprintf(err, errlen, "empty address");
		return -1;
	}
	if (strncmp(s, "unix:", 5) == 0) {
		if (s[5] != '/') {
			snprintf(err, errlen, "\"%s\": a unix socket needs an "
			    "absolute path (unix:/path)", s);
			return -1;
		}
		if (strlen(s + 5) >= sizeof(a->a_path)) {
			snprintf(err, errlen, "\"%s\": unix socket path longer "
			    "than %zu bytes", s, sizeof(a->a_path) - 1);
			return -1;
		}
		a->a_kind = ADDR_UNIX;
		snprintf(a->a_path, sizeof(a->a_path), "%s", s + 5);
		sun = (struct sockaddr_un *)&a->a_ss;
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, a->a_path, sizeof(sun->sun_path));
		a->a_sslen = (socklen_t)sizeof(*sun);
		return 0;
	}

	if (*s == '[') {
		host = s + 1;
		if ((end = strchr(host, ']')) == NULL) {
			snprintf(err, errlen, "\"%s\": missing ']' after the "
			    "IPv6 address", s);
			return -1;
		}
		if (end[1] != ':') {
			snprintf(err, errlen, "\"%s\": expected [IPv6]:PORT", s);
			return -1;
		}
		hostlen = (size_t)(end - host);
		port = end + 2;
	} else {
		if ((end = strrchr(s, ':')) == NULL) {
			snprintf(err, errlen, "\"%s\": expected HOST:PORT, "
			    "[IPv6]:PORT or unix:/path", s);
			return -1;
		}
		if (memchr(s, ':', (size_t)(end - s)) != NULL) {
			snprintf(err, errlen, "\"%s\": write an IPv6 address "
			    "in brackets, as [::1]:PORT", s);
			return -1;
		}
		host = s;
		hostlen = (size_t)(end - s);
		port = end + 1;
	}
	if (hostlen == 0 || hostlen >= sizeof(a->a_host)) {
		snprintf(err, errlen, "\"%s\": %s host", s,
		    hostlen == 0 ? "missing" : "overlong");
		return -1;
	}
	if (addr_port(port, &a->a_port) == -1) {
		snprintf(err, errlen, "\"%s\": port must be a number from 1 "
		    "to 65535", s);
		return -1;
	}
	memcpy(a->a_host, host, hostlen);
	a->a_host[hostlen] = '\0';

	/*
	 * "localhost" is 127.0.0.1 without a lookup, but keeps its name:
	 * an outbound route's default server_name is the target's host.
	 */
	if (strcasecmp(a->a_host, "localhost") == 0) {
		snprintf(a->a_host, sizeof(a->a_host), "127.0.0.1");
		addr_numeric(a);
		snprintf(a->a_host, sizeof(a->a_host), "localhost");
		a->a_kind = ADDR_INET;
		return 0;
	}
	if (addr_numeric(a) == 0) {
		a->a_kind = ADDR_INET;
		return 0;
	}
	if (*s == '[') {
		snprintf(err, errlen, "\"%s\": not an IPv6 address", s);
		return -1;
	}
	if (strspn(a->a_host, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") != hostlen) {
		snprintf(err, errlen, "\"%s\": not a valid host name", s);
		return -1;
	}
	a->a_kind = ADDR_NAME;
	return 0;
}

int
addr_is_local(const struct addr *a)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	const uint8_t			*b;

	switch (a->a_kind) {
	case ADDR_UNIX:
		return 1;
	case ADDR_NAME:
		/* A name could resolve anywhere: never local by rule. */
		return 0;
	case ADDR_INET:
		break;
	}
	if (a->a_ss.ss_family == AF_INET) {
		sin = (const struct sockaddr_in *)&a->a_ss;
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	}
	sin6 = (const struct sockaddr_in6 *)&a->a_ss;
	if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
		return 1;
	b = sin6->sin6_addr.s6_addr;
	return IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && b[12] == 127;
}

const char *
addr_str(const struct addr *a, char *buf, size_t len)
{
	switch (a->a_kind) {
	case ADDR_UNIX:
		snprintf(buf, len, "unix:%s", a->a_path);
		break;
	case ADDR_NAME:
		snprintf(buf, len, "%s:%u", a->a_host, a->a_port);
		break;
	case ADDR_INET:
		addr_sockaddr_str((const struct sockaddr *)&a->a_ss,
		    a->a_sslen, buf, len);
		break;
	}
	return buf;
}

const char *
addr_sockaddr_str(const struct sockaddr *sa, socklen_t salen, char *buf,
    size_t len)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	const struct sockaddr_un	*sun;
	char				 host[INET6_ADDRSTRLEN];

	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
		break;
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
		break;
	case AF_UNIX:
		sun = (const struct sockaddr_un *)sa;
		if (salen <= offsetof(struct sockaddr_un, sun_path) ||
		    sun->sun_path[0] == '\0')
			snprintf(buf, len, "unix");
		else
			snprintf(buf, len, "unix:%.*s",
			    (int)(salen - offsetof(struct sockaddr_un,
			    sun_path)), sun->sun_path);
		break;
	default:
		snprintf(buf, len, "?");
		break;
	}
	return buf;
}
