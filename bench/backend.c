/*
 * backend -- the plaintext service behind the proxies in the mtlsd
 * benchmark: one thread, epoll, non-blocking, edge-triggered.
 *
 * A connection whose first byte is 'S' is a sink: everything after it is
 * read and dropped.  Any other connection is an echo: every byte comes
 * back.  At end of stream the backend closes (after the echo is out).
 *
 *   backend PORT        listens on 127.0.0.1:PORT until SIGTERM/SIGINT
 */
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUFSZ		(64 * 1024)
#define SINKSZ		(256 * 1024)

enum bmode { B_NEW, B_ECHO, B_SINK };

struct bconn {
	int		 fd;
	enum bmode	 mode;
	int		 eof;
	char		*buf;		/* echo bytes not yet written back */
	size_t		 off, len;
};

static volatile sig_atomic_t	 stop;
static char			 sink[SINKSZ];

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
bconn_free(struct bconn *b)
{
	close(b->fd);
	free(b->buf);
	free(b);
}

/* Writes back what is pending.  Returns 0 done, 1 blocked, -1 error. */
static int
bconn_flush(struct bconn *b)
{
	ssize_t	n;

	while (b->len > 0) {
		n = send(b->fd, b->buf + b->off, b->len, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 1 : -1;
		}
		b->off += (size_t)n;
		b->len -= (size_t)n;
	}
	b->off = 0;
	return 0;
}

/* Runs b until it would block; returns -1 when b is to be freed. */
static int
bconn_step(struct bconn *b)
{
	ssize_t	n;
	int	r;

	for (;;) {
		if (b->mode == B_ECHO && b->len > 0) {
			if ((r = bconn_flush(b)) == -1)
				return -1;
			if (r == 1)
				return 0;
		}
		if (b->eof)
			return -1;
		if (b->mode == B_SINK) {
			n = read(b->fd, sink, sizeof(sink));
		} else {
			if (b->buf == NULL &&
			    (b->buf = malloc(BUFSZ)) == NULL)
				return -1;
			n = read(b->fd, b->buf, BUFSZ);
		}
		if (n == 0) {
			b->eof = 1;
			continue;
		}
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				/* An idle echo holds no buffer. */
				if (b->mode == B_ECHO && b->len == 0) {
					free(b->buf);
					b->buf = NULL;
				}
				return 0;
			}
			return -1;
		}
		if (b->mode == B_NEW) {
			/* The first byte decides; a sink drops it too. */
			if (b->buf[0] == 'S') {
				b->mode = B_SINK;
				free(b->buf);
				b->buf = NULL;
			} else
				b->mode = B_ECHO;
		}
		if (b->mode == B_SINK)
			continue;
		b->off = 0;
		b->len = (size_t)n;
	}
}

int
main(int argc, char *argv[])
{
	struct sockaddr_in	 sin;
	struct epoll_event	 ev, evs[512];
	struct sigaction	 sa;
	struct bconn		*b, lb;
	int			 lfd, ep, fd, one = 1, i, n, port;

	if (argc != 2 || (port = atoi(argv[1])) <= 0 || port > 65535) {
		fprintf(stderr, "usage: backend PORT\n");
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

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
		perror("backend");
		return 1;
	}
	memset(&lb, 0, sizeof(lb));
	lb.fd = lfd;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = &lb;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);

	while (!stop) {
		n = epoll_wait(ep, evs, 512, 200);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			perror("backend: epoll_wait");
			return 1;
		}
		for (i = 0; i < n; i++) {
			b = evs[i].data.ptr;
			if (b != &lb) {
				if (bconn_step(b) == -1)
					bconn_free(b);	/* close: out of epoll */
				continue;
			}
			while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK |
			    SOCK_CLOEXEC)) != -1) {
				if ((b = calloc(1, sizeof(*b))) == NULL) {
					close(fd);
					continue;
				}
				b->fd = fd;
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
				    sizeof(one));
				ev.events = EPOLLIN | EPOLLOUT | EPOLLET |
				    EPOLLRDHUP;
				ev.data.ptr = b;
				if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1)
					bconn_free(b);
			}
		}
	}
	return 0;
}
