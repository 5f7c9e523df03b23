/*
 * pp2_backend -- an example backend behind mtlsd with proxy_protocol on,
 * for the tests and the README.
 *
 * usage: pp2_backend PORT
 *
 * Listens on 127.0.0.1:PORT (0 picks a port; the line on stdout names it).
 * On each connection it reads the PROXY v2 header with the header-only
 * reader, answers with one line of JSON saying what the header carried,
 * then echoes everything else the client sends until EOF.  An invalid
 * header, or none complete within 5 s, gets {"error":"..."} and a close.
 *
 *	{"src":"127.0.0.1:5555","dst":"127.0.0.1:8443",
 *	 "identity":"spiffe://...","route":"api","sha256":"<hex>",
 *	 "cn":"...","version":"TLSv1.3","cipher":"...","authority":"...",
 *	 "alpn":"h2","client":3,"verify":0}
 *
 * (one line; absent fields are null).  A poll loop serves many clients at
 * once, so a test may hold several connections open; the 5 s limit is a
 * per-connection deadline rather than SO_RCVTIMEO for the same reason.
 * It includes nothing from mtlsd but proxy_v2.h and also builds as C++,
 * as a legacy C++ service would:
 *	g++ -x c++ -Iinclude -o pp2_backend tests/tools/pp2_backend.c
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mtlsd/proxy_v2.h"

#define BACKEND_CONN_MAX	64
#define BACKEND_HEADER_MS	5000
/* Every TLV byte escaped as \u00XX, plus the addresses and the keys. */
#define BACKEND_JSON_MAX	(6 * MTLSD_PP2_HDR_MAX + 1024)

enum conn_state {
	CONN_HEADER,			/* reading the PROXY v2 header */
	CONN_ECHO,
	CONN_DRAIN			/* error sent, discarding until EOF */
};

struct conn {
	int		 c_fd;		/* -1: slot free */
	enum conn_state	 c_state;
	long long	 c_deadline;	/* ms, CLOCK_MONOTONIC */
	size_t		 c_have;
	uint8_t		*c_buf;		/* the header, until it is done */
};

struct json {
	char		*j_buf;
	size_t		 j_len;
};

static long long	 now_ms(void);
static int		 send_all(int, const void *, size_t);
static void		 json_raw(struct json *, const char *);
static size_t		 utf8_len(const uint8_t *, size_t);
static void		 json_str(struct json *, const uint8_t *, size_t);
static void		 json_key(struct json *, const char *);
static void		 json_tlv(struct json *, const char *, const uint8_t *,
			    size_t, int);
static void		 json_addr(struct json *, const char *,
			    const struct sockaddr_storage *);
static size_t		 describe(const struct mtlsd_pp2 *, char *);
static void		 conn_close(struct conn *);
static void		 conn_error(struct conn *, const char *);
static void		 conn_header(struct conn *);
static void		 conn_echo(struct conn *);
static void		 conn_drain(struct conn *);
static void		 conn_accept(int, struct conn *);
static int		 listen_on(const char *);

static char		 json_out[BACKEND_JSON_MAX];

static long long
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Blocking send; SO_SNDTIMEO bounds a client that never reads. */
static int
send_all(int fd, const void *buf, size_t len)
{
	const char	*p = (const char *)buf;
	ssize_t		 n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* BACKEND_JSON_MAX leaves room for anything one header can hold. */
static void
json_raw(struct json *j, const char *s)
{
	size_t	 n;

	n = strlen(s);
	if (n > BACKEND_JSON_MAX - j->j_len)
		n = BACKEND_JSON_MAX - j->j_len;
	memcpy(j->j_buf + j->j_len, s, n);
	j->j_len += n;
}

/* The length of the valid UTF-8 sequence at p, or 0 if it is not one. */
static size_t
utf8_len(const uint8_t *p, size_t left)
{
	size_t	 n, i;
	uint8_t	 lo = 0x80, hi = 0xbf;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		/* No overlong forms and no UTF-16 surrogates. */
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (left < n || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/*
 * A JSON string of the bytes as they came: quotes, backslashes and
 * control bytes (NUL included) escaped, so nothing a client put in its
 * certificate can end the line or the string early, and a byte that is
 * not UTF-8 shown as U+FFFD, so the line stays valid JSON.
 */
static void
json_str(struct json *j, const uint8_t *p, size_t len)
{
	char	 e[8];
	size_t	 i, n;

	json_raw(j, "\"");
	for (i = 0; i < len; i += n) {
		n = utf8_len(p + i, len - i);
		if (n == 0) {
			json_raw(j, "\\ufffd");
			n = 1;
			continue;
		}
		if (n > 1) {
			memcpy(e, p + i, n);
			e[n] = '\0';
		} else if (p[i] == '"' || p[i] == '\\') {
			e[0] = '\\';
			e[1] = (char)p[i];
			e[2] = '\0';
		} else if (p[i] < 0x20 || p[i] == 0x7f)
			snprintf(e, sizeof(e), "\\u%04x", p[i]);
		else {
			e[0] = (char)p[i];
			e[1] = '\0';
		}
		json_raw(j, e);
	}
	json_raw(j, "\"");
}

static void
json_key(struct json *j, const char *key)
{
	json_raw(j, j->j_len > 1 ? ",\"" : "\"");
	json_raw(j, key);
	json_raw(j, "\":");
}

/* A TLV value as a string, or in hex, or null when it was not sent. */
static void
json_tlv(struct json *j, const char *key, const uint8_t *v, size_t len,
    int hex)
{
	char	 h[3];
	size_t	 i;

	json_key(j, key);
	if (v == NULL)
		json_raw(j, "null");
	else if (!hex)
		json_str(j, v, len);
	else {
		json_raw(j, "\"");
		for (i = 0; i < len; i++) {
			snprintf(h, sizeof(h), "%02x", v[i]);
			json_raw(j, h);
		}
		json_raw(j, "\"");
	}
}

static void
json_addr(struct json *j, const char *key, const struct sockaddr_storage *ss)
{
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	struct sockaddr_un	 su;
	char			 host[INET6_ADDRSTRLEN], s[160];

	json_key(j, key);
	switch (ss->ss_family) {
	case AF_INET:
		memcpy(&sin, ss, sizeof(sin));
		inet_ntop(AF_INET, &sin.sin_addr, host, sizeof(host));
		snprintf(s, sizeof(s), "%s:%u", host, ntohs(sin.sin_port));
		json_str(j, (const uint8_t *)s, strlen(s));
		break;
	case AF_INET6:
		memcpy(&sin6, ss, sizeof(sin6));
		inet_ntop(AF_INET6, &sin6.sin6_addr, host, sizeof(host));
		snprintf(s, sizeof(s), "[%s]:%u", host, ntohs(sin6.sin6_port));
		json_str(j, (const uint8_t *)s, strlen(s));
		break;
	case AF_UNIX:
		/* sun_path need not end in a NUL when the header fills it. */
		memcpy(&su, ss, sizeof(su));
		memcpy(s, "unix:", 5);
		memcpy(s + 5, su.sun_path, sizeof(su.sun_path));
		json_str(j, (const uint8_t *)s,
		    5 + strnlen(su.sun_path, sizeof(su.sun_path)));
		break;
	default:
		json_raw(j, "null");
		break;
	}
}

/* Writes the JSON line for a parsed header to out; returns its length. */
static size_t
describe(const struct mtlsd_pp2 *pp, char *out)
{
	struct json	 j;
	const uint8_t	*v;
	size_t		 n;
	uint32_t	 verify;
	uint8_t		 client;
	char		 num[16];

	j.j_buf = out;
	j.j_len = 0;
	json_raw(&j, "{");
	json_addr(&j, "src", &pp->src);
	json_addr(&j, "dst", &pp->dst);
	mtlsd_pp2_tlv(pp, MTLSD_PP2_TYPE_MTLSD_IDENTITY, &v, &n);
	json_tlv(&j, "identity", v, n, 0);
	mtlsd_pp2_tlv(pp, MTLSD_PP2_TYPE_MTLSD_ROUTE, &v, &n);
	json_tlv(&j, "route", v, n, 0);
	mtlsd_pp2_tlv(pp, MTLSD_PP2_TYPE_MTLSD_SHA256, &v, &n);
	json_tlv(&j, "sha256", v, n, 1);
	mtlsd_pp2_ssl_sub(pp, MTLSD_PP2_SUBTYPE_SSL_CN, &v, &n);
	json_tlv(&j, "cn", v, n, 0);
	mtlsd_pp2_ssl_sub(pp, MTLSD_PP2_SUBTYPE_SSL_VERSION, &v, &n);
	json_tlv(&j, "version", v, n, 0);
	mtlsd_pp2_ssl_sub(pp, MTLSD_PP2_SUBTYPE_SSL_CIPHER, &v, &n);
	json_tlv(&j, "cipher", v, n, 0);
	mtlsd_pp2_tlv(pp, MTLSD_PP2_TYPE_AUTHORITY, &v, &n);
	json_tlv(&j, "authority", v, n, 0);
	mtlsd_pp2_tlv(pp, MTLSD_PP2_TYPE_ALPN, &v, &n);
	json_tlv(&j, "alpn", v, n, 0);
	if (mtlsd_pp2_ssl(pp, &client, &verify)) {
		snprintf(num, sizeof(num), "%u", (unsigned int)client);
		json_key(&j, "client");
		json_raw(&j, num);
		snprintf(num, sizeof(num), "%lu", (unsigned long)verify);
		json_key(&j, "verify");
		json_raw(&j, num);
	} else {
		json_key(&j, "client");
		json_raw(&j, "null");
		json_key(&j, "verify");
		json_raw(&j, "null");
	}
	json_raw(&j, "}\n");
	return j.j_len;
}

static void
conn_close(struct conn *c)
{
	close(c->c_fd);
	free(c->c_buf);
	c->c_buf = NULL;
	c->c_fd = -1;
}

static void
conn_error(struct conn *c, const char *why)
{
	struct json	 j;

	j.j_buf = json_out;
	j.j_len = 0;
	json_raw(&j, "{\"error\":");
	json_str(&j, (const uint8_t *)why, strlen(why));
	json_raw(&j, "}\n");
	free(c->c_buf);
	c->c_buf = NULL;
	if (send_all(c->c_fd, j.j_buf, j.j_len) == -1 ||
	    shutdown(c->c_fd, SHUT_WR) == -1) {
		conn_close(c);
		return;
	}
	/*
	 * Closing with unread bytes queued would send a reset, which can
	 * overtake the error line; read until EOF or a new deadline instead.
	 */
	c->c_state = CONN_DRAIN;
	c->c_deadline = now_ms() + BACKEND_HEADER_MS;
}

/*
 * Reads no further than the header (pp.header_len says how far), so
 * whatever follows it stays in the socket for the echo.
 */
static void
conn_header(struct conn *c)
{
	struct mtlsd_pp2	 pp;
	ssize_t			 n;
	size_t			 len;
	int			 r;

	while ((r = mtlsd_pp2_parse(c->c_buf, c->c_have, &pp)) == 0) {
		n = recv(c->c_fd, c->c_buf + c->c_have,
		    pp.header_len - c->c_have, MSG_DONTWAIT);
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == EINTR))
			return;
		if (n == 0) {
			conn_error(c, "connection closed before the PROXY "
			    "v2 header was complete");
			return;
		}
		if (n == -1) {
			conn_close(c);
			return;
		}
		c->c_have += (size_t)n;
	}
	if (r == -1) {
		conn_error(c, "invalid PROXY v2 header");
		return;
	}
	len = describe(&pp, json_out);
	free(c->c_buf);
	c->c_buf = NULL;
	c->c_state = CONN_ECHO;
	if (send_all(c->c_fd, json_out, len) == -1)
		conn_close(c);
}

static void
conn_echo(struct conn *c)
{
	char	 buf[16384];
	ssize_t	 n;

	n = recv(c->c_fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR))
		return;
	if (n <= 0 || send_all(c->c_fd, buf, (size_t)n) == -1)
		conn_close(c);
}

static void
conn_drain(struct conn *c)
{
	char	 buf[16384];
	ssize_t	 n;

	n = recv(c->c_fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR))
		return;
	if (n <= 0)
		conn_close(c);
}

/* The listener is polled only while a slot is free, so one is. */
static void
conn_accept(int lfd, struct conn *conns)
{
	struct timeval	 tv;
	size_t		 i;
	int		 fd;

	if ((fd = accept(lfd, NULL, NULL)) == -1) {
		if (errno != EINTR && errno != ECONNABORTED)
			perror("pp2_backend: accept");
		return;
	}
	for (i = 0; i < BACKEND_CONN_MAX; i++)
		if (conns[i].c_fd == -1)
			break;
	if (i == BACKEND_CONN_MAX ||
	    (conns[i].c_buf = (uint8_t *)malloc(MTLSD_PP2_HDR_MAX)) == NULL) {
		close(fd);
		return;
	}
	tv.tv_sec = BACKEND_HEADER_MS / 1000;
	tv.tv_usec = 0;
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	conns[i].c_fd = fd;
	conns[i].c_state = CONN_HEADER;
	conns[i].c_have = 0;
	conns[i].c_deadline = now_ms() + BACKEND_HEADER_MS;
}

static int
listen_on(const char *arg)
{
	struct sockaddr_in	 sin;
	socklen_t		 slen;
	char			*end;
	long			 port;
	int			 fd, one = 1;

	errno = 0;
	port = strtol(arg, &end, 10);
	if (errno != 0 || *arg == '\0' || *end != '\0' || port < 0 ||
	    port > 65535) {
		fprintf(stderr, "pp2_backend: bad port \"%s\"\n", arg);
		return -1;
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ==
	    -1 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(fd, 64) == -1) {
		perror("pp2_backend: listen");
		return -1;
	}
	slen = sizeof(sin);
	if (getsockname(fd, (struct sockaddr *)&sin, &slen) == -1) {
		perror("pp2_backend: getsockname");
		return -1;
	}
	printf("pp2 backend listening on 127.0.0.1:%u\n",
	    (unsigned int)ntohs(sin.sin_port));
	fflush(stdout);
	return fd;
}

int
main(int argc, char *argv[])
{
	struct conn	 conns[BACKEND_CONN_MAX];
	struct pollfd	 pfd[BACKEND_CONN_MAX + 1];
	struct conn	*slot[BACKEND_CONN_MAX + 1], *c;
	long long	 now, wait;
	size_t		 i, npfd, nconn;
	int		 lfd, lidx, timeout;

	if (argc != 2) {
		fprintf(stderr, "usage: pp2_backend PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if ((lfd = listen_on(argv[1])) == -1)
		return 1;
	for (i = 0; i < BACKEND_CONN_MAX; i++) {
		conns[i].c_fd = -1;
		conns[i].c_buf = NULL;
	}

	for (;;) {
		now = now_ms();
		timeout = -1;
		npfd = 0;
		nconn = 0;
		for (i = 0; i < BACKEND_CONN_MAX; i++) {
			c = &conns[i];
			if (c->c_fd != -1 && c->c_state != CONN_ECHO &&
			    now >= c->c_deadline) {
				if (c->c_state == CONN_HEADER)
					conn_error(c, "no complete PROXY v2 "
					    "header within 5 s");
				else
					conn_close(c);
			}
			if (c->c_fd == -1)
				continue;
			nconn++;
			if (c->c_state != CONN_ECHO) {
				wait = c->c_deadline - now;
				if (timeout == -1 || wait < timeout)
					timeout = (int)wait;
			}
			pfd[npfd].fd = c->c_fd;
			pfd[npfd].events = POLLIN;
			slot[npfd++] = c;
		}
		/* When full, the kernel's backlog holds the next clients. */
		lidx = -1;
		if (nconn < BACKEND_CONN_MAX) {
			lidx = (int)npfd;
			pfd[npfd].fd = lfd;
			pfd[npfd].events = POLLIN;
			slot[npfd++] = NULL;
		}
		if (poll(pfd, (nfds_t)npfd, timeout) == -1) {
			if (errno == EINTR)
				continue;
			perror("pp2_backend: poll");
			return 1;
		}
		for (i = 0; i < npfd; i++) {
			if (pfd[i].revents == 0 || slot[i] == NULL)
				continue;
			if (slot[i]->c_state == CONN_ECHO)
				conn_echo(slot[i]);
			else if (slot[i]->c_state == CONN_DRAIN)
				conn_drain(slot[i]);
			else
				conn_header(slot[i]);
		}
		if (lidx != -1 && pfd[lidx].revents != 0)
			conn_accept(lfd, conns);
	}
	/* NOTREACHED */
}
