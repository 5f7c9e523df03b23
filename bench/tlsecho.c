/*
 * tlsecho -- a minimal mTLS echo server for the mtlsd benchmark: what a
 * proxy would cost if it had no target to talk to.  One thread, epoll,
 * non-blocking, edge-triggered, libssl only.  It serves the same
 * configuration as the proxies (TLS 1.3, X25519, client certificate
 * required and verified against the CA) and echoes what it reads (or,
 * like bench/backend, drops it when the first byte is 'S'); at the
 * client's close_notify or EOF it sends close_notify and closes.
 *
 * It answers one question of the benchmark: can the load generator go
 * faster than the proxies it measures?  Against tlsecho, on the proxies'
 * core, the load generator meets a server that does strictly less work
 * per connection than any proxy.
 *
 *   tlsecho -p PORT --cert F --key F --ca F [-T TICKETS] [-a] [-k]
 *
 * -a turns on read-ahead (one read() takes a whole record, or several,
 * instead of its 5-byte header and then its body); -k keeps the record
 * buffers (no SSL_MODE_RELEASE_BUFFERS).  They are there to measure what
 * those choices cost a relay, e.g. in the rr scenario.
 */
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define BUFSZ	(16 * 1024)

struct tconn {
	int	 fd;
	SSL	*ssl;
	int	 hs_done;
	int	 mode;		/* 0 unknown, 1 echo, 2 sink */
	char	*buf;
	size_t	 off, len;
};

static volatile sig_atomic_t	 stop;
static char			 rbuf[BUFSZ];

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
tconn_free(struct tconn *t)
{
	SSL_free(t->ssl);
	close(t->fd);
	free(t->buf);
	free(t);
}

/* Returns -1 when t is finished. */
static int
tconn_step(struct tconn *t)
{
	int	n, e;

	ERR_clear_error();
	if (!t->hs_done) {
		if ((n = SSL_do_handshake(t->ssl)) != 1) {
			e = SSL_get_error(t->ssl, n);
			return (e == SSL_ERROR_WANT_READ ||
			    e == SSL_ERROR_WANT_WRITE) ? 0 : -1;
		}
		t->hs_done = 1;
	}
	for (;;) {
		while (t->len > 0) {
			n = SSL_write(t->ssl, t->buf + t->off, (int)t->len);
			if (n <= 0) {
				e = SSL_get_error(t->ssl, n);
				return (e == SSL_ERROR_WANT_READ ||
				    e == SSL_ERROR_WANT_WRITE) ? 0 : -1;
			}
			t->off += (size_t)n;
			t->len -= (size_t)n;
		}
		n = SSL_read(t->ssl, rbuf, sizeof(rbuf));
		if (n <= 0) {
			e = SSL_get_error(t->ssl, n);
			if (e == SSL_ERROR_WANT_READ ||
			    e == SSL_ERROR_WANT_WRITE) {
				free(t->buf);
				t->buf = NULL;
				return 0;
			}
			if (e == SSL_ERROR_ZERO_RETURN)
				SSL_shutdown(t->ssl);
			return -1;
		}
		if (t->mode == 0)
			t->mode = rbuf[0] == 'S' ? 2 : 1;
		if (t->mode == 2)
			continue;	/* a sink, as the backend's */
		/* Echo straight from rbuf; keep only what did not fit. */
		e = SSL_write(t->ssl, rbuf, n);
		if (e == n)
			continue;
		if (e <= 0) {
			int	err = SSL_get_error(t->ssl, e);

			if (err != SSL_ERROR_WANT_WRITE &&
			    err != SSL_ERROR_WANT_READ)
				return -1;
			e = 0;
		}
		if (t->buf == NULL && (t->buf = malloc(BUFSZ)) == NULL)
			return -1;
		memcpy(t->buf, rbuf + e, (size_t)(n - e));
		t->off = 0;
		t->len = (size_t)(n - e);
	}
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "cert", required_argument, NULL, 'C' },
		{ "key", required_argument, NULL, 'K' },
		{ "ca", required_argument, NULL, 'A' },
		{ NULL, 0, NULL, 0 }
	};
	const char		*certf = NULL, *keyf = NULL, *caf = NULL;
	struct sockaddr_in	 sin;
	struct epoll_event	 ev, evs[512];
	struct sigaction	 sa;
	struct tconn		*t;
	SSL_CTX			*ctx;
	int			 lfd, ep, fd, one = 1, i, n, port = 0;
	int			 tickets = 2, ch, ahead = 0, keep = 0;
	static const unsigned char sid[] = "tlsecho";

	while ((ch = getopt_long(argc, argv, "p:T:ak", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'a':
			ahead = 1;
			break;
		case 'k':
			keep = 1;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'T':
			tickets = atoi(optarg);
			break;
		case 'C':
			certf = optarg;
			break;
		case 'K':
			keyf = optarg;
			break;
		case 'A':
			caf = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (port <= 0 || port > 65535 || certf == NULL || keyf == NULL ||
	    caf == NULL) {
usage:
		fprintf(stderr, "usage: tlsecho -p PORT --cert F --key F "
		    "--ca F [-T TICKETS] [-a] [-k]\n");
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL ||
	    !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set1_groups_list(ctx, "X25519") ||
	    SSL_CTX_use_certificate_chain_file(ctx, certf) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, keyf, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_load_verify_locations(ctx, caf, NULL) != 1 ||
	    !SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1) ||
	    !SSL_CTX_set_num_tickets(ctx, (size_t)tickets)) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
	    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	    (keep ? 0 : SSL_MODE_RELEASE_BUFFERS));
	if (ahead)
		SSL_CTX_set_read_ahead(ctx, 1);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd == -1 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(lfd, 4096) == -1 ||
	    (ep = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		perror("tlsecho");
		return 1;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);

	while (!stop) {
		n = epoll_wait(ep, evs, 512, 200);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			perror("tlsecho: epoll_wait");
			return 1;
		}
		for (i = 0; i < n; i++) {
			if ((t = evs[i].data.ptr) != NULL) {
				if (tconn_step(t) == -1)
					tconn_free(t);
				continue;
			}
			while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK |
			    SOCK_CLOEXEC)) != -1) {
				if ((t = calloc(1, sizeof(*t))) == NULL ||
				    (t->ssl = SSL_new(ctx)) == NULL) {
					free(t);
					close(fd);
					continue;
				}
				t->fd = fd;
				SSL_set_fd(t->ssl, fd);
				SSL_set_accept_state(t->ssl);
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
				    sizeof(one));
				ev.events = EPOLLIN | EPOLLOUT | EPOLLET |
				    EPOLLRDHUP;
				ev.data.ptr = t;
				if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1 ||
				    tconn_step(t) == -1)
					tconn_free(t);
			}
		}
	}
	SSL_CTX_free(ctx);
	return 0;
}
