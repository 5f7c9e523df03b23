/*
 * loadgen -- the mtlsd benchmark's load generator: an mTLS (or plaintext)
 * client on one thread, one epoll set and many non-blocking connections.
 *
 *   handshake  a new connection per request: full TLS 1.3 handshake with
 *              our client certificate, REQ bytes, their echo, close_notify,
 *              then wait for the server to close (so no TIME_WAIT here)
 *   resume     the same, resuming with the newest TLS 1.3 ticket
 *   stream     CONNS connections send 'S' (the backend then sinks) and
 *              then SIZE-byte writes as fast as they go
 *   rr         CONNS persistent connections doing SIZE-byte ping-pong
 *   idle       N connections established (handshake + one echo) and held
 *              until SECONDS pass or SIGTERM; prints "ready" when all are
 *
 * The client offers only TLS 1.3, TLS_AES_128_GCM_SHA256 and X25519, and
 * by default does not verify the server's chain (--verify does): the
 * proxy's side of the handshake is what is measured, and the client's
 * CPU is the scarce resource on a two-core machine.
 *
 * Results go to stdout as one line of key=value pairs, counted over the
 * window after WARMUP: ops, rate (ops/s), mbps (MB/s = 1e6 B/s, stream),
 * p50_us/p99_us/p999_us (latency of a request in rr; of connect-to-echo
 * in handshake/resume), reused (resumed handshakes), errors, cpu (this
 * process's CPU use over the window, 1.0 = one core) and, with --watch,
 * cpu_watch (the CPU use of those processes over the same window).
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_WATCH	8
#define HIST_US		200000		/* 1 us buckets up to 200 ms */
#define CONN_DEADLINE	10.0		/* seconds for one handshake cycle */

enum mode { M_HANDSHAKE, M_RESUME, M_STREAM, M_RR, M_IDLE };

enum state {
	ST_FREE,	/* slot unused: start a connection */
	ST_CONNECT,	/* TCP connect in progress */
	ST_HANDSHAKE,
	ST_SEND,
	ST_RECV,
	ST_SHUT,	/* sent close_notify, reading until the server closes */
	ST_SINK,	/* stream: send the 'S' that makes the backend sink */
	ST_STREAM,
	ST_HOLD,	/* idle: established, holding */
	ST_RETRY	/* failed: start again after a pause */
};

struct conn {
	int		 fd;
	SSL		*ssl;
	enum state	 st;
	size_t		 done;		/* bytes of the current step */
	uint64_t	 t0;		/* ns: start of request or connection */
	uint64_t	 deadline;	/* ns, handshake/resume/idle set-up */
	int		 counted;	/* idle: counted as established */
};

static enum mode	 mode = M_HANDSHAKE;
static const char	*host = "127.0.0.1";
static int		 port;
static int		 nconns = 32;
static int		 nidle = 1000;
static double		 seconds = 3.0;
static double		 warmup = 0.5;
static size_t		 size;
static int		 plain;
static int		 verify;
static const char	*certf, *keyf, *caf;
static pid_t		 watch[MAX_WATCH];
static int		 nwatch;

static SSL_CTX		*ctx;
/*
 * Tickets for "resume", newest on top.  OpenSSL's client spends a TLS 1.3
 * ticket once (tls_finish_handshake removes the session it resumed, which
 * marks it not resumable), as RFC 8446 advises; so each connection takes
 * its own ticket and every ticket received goes back on the pile.
 */
#define TICKETS_MAX	256
static SSL_SESSION	*tickets[TICKETS_MAX];
static int		 tick_top, tick_n;
static struct sockaddr_in srv_addr;
static int		 ep;
static struct conn	*conns;
static int		 nslots;
static char		*wbuf, *rbuf;
static volatile sig_atomic_t stop;

/* Counters; those of the window are the difference of two snapshots. */
static uint64_t		 ops, bytes, errors, reused, established, dropped;
static int		 in_window;
static uint32_t		*hist;
static uint64_t		 hist_over, hist_n;
static uint64_t		 lat_max;
static int		 inflight;	/* idle: connections being set up */
static int		 next_idle;	/* idle: next slot to start */

static void	conn_start(struct conn *);
static void	conn_step(struct conn *);
static void	conn_done(struct conn *, int);

static uint64_t
now_ns(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static double
cpu_self(void)
{
	struct rusage	ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* utime + stime of the watched processes, in seconds (all threads). */
static double
cpu_watched(void)
{
	char		 path[64], buf[1024], *p;
	unsigned long	 ut, st;
	double		 sum = 0;
	long		 hz = sysconf(_SC_CLK_TCK);
	FILE		*f;
	int		 i;

	for (i = 0; i < nwatch; i++) {
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)watch[i]);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(buf, sizeof(buf), f) != NULL &&
		    (p = strrchr(buf, ')')) != NULL &&
		    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
		    "%*u %lu %lu", &ut, &st) == 2)
			sum += (double)(ut + st) / (double)hz;
		fclose(f);
	}
	return sum;
}

/*
 * Busy jiffies (everything but idle and iowait) of each CPU, from
 * /proc/stat: with the watched processes' own time, this tells how much
 * of the proxy's core somebody else took during the window.
 */
#define MAX_CPUS	16
static int
cpu_busy(unsigned long long *busy, unsigned long long *total)
{
	unsigned long long	 v[10];
	char			 line[512];
	FILE			*f;
	int			 n = 0, cpu, i;

	if ((f = fopen("/proc/stat", "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL && n < MAX_CPUS) {
		if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' ||
		    line[3] > '9')
			continue;
		memset(v, 0, sizeof(v));
		if (sscanf(line + 3, "%d %llu %llu %llu %llu %llu %llu %llu "
		    "%llu", &cpu, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		    &v[6], &v[7]) < 5)
			continue;
		total[n] = 0;
		for (i = 0; i < 8; i++)
			total[n] += v[i];
		busy[n] = total[n] - v[3] - v[4];
		n++;
	}
	fclose(f);
	return n;
}

static void
lat_record(uint64_t ns)
{
	uint64_t	us = ns / 1000;

	if (!in_window)
		return;
	if (us > lat_max)
		lat_max = us;
	hist_n++;
	if (us >= HIST_US)
		hist_over++;
	else
		hist[us]++;
}

static double
lat_pct(double q)
{
	uint64_t	want, sum = 0;
	size_t		i;

	if (hist_n == 0)
		return 0;
	want = (uint64_t)(q * (double)hist_n);
	if (want >= hist_n)
		want = hist_n - 1;
	for (i = 0; i < HIST_US; i++) {
		sum += hist[i];
		if (sum > want)
			return (double)i + 0.5;
	}
	return (double)lat_max;
}

static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	tick_top = (tick_top + 1) % TICKETS_MAX;
	if (tick_n == TICKETS_MAX)
		SSL_SESSION_free(tickets[tick_top]);	/* the oldest */
	else
		tick_n++;
	tickets[tick_top] = sess;
	return 1;	/* we keep the reference */
}

/* The newest unspent ticket, or NULL: the caller owns the reference. */
static SSL_SESSION *
ticket_take(void)
{
	SSL_SESSION	*sess;

	while (tick_n > 0) {
		sess = tickets[tick_top];
		tick_top = (tick_top + TICKETS_MAX - 1) % TICKETS_MAX;
		tick_n--;
		if (SSL_SESSION_is_resumable(sess))
			return sess;
		SSL_SESSION_free(sess);
	}
	return NULL;
}

static void
tls_setup(void)
{
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL ||
	    !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256") ||
	    !SSL_CTX_set1_groups_list(ctx, "X25519")) {
		ERR_print_errors_fp(stderr);
		exit(2);
	}
	if (certf != NULL &&
	    (SSL_CTX_use_certificate_chain_file(ctx, certf) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, keyf, SSL_FILETYPE_PEM) != 1)) {
		ERR_print_errors_fp(stderr);
		exit(2);
	}
	if (verify) {
		if (caf == NULL ||
		    SSL_CTX_load_verify_locations(ctx, caf, NULL) != 1) {
			ERR_print_errors_fp(stderr);
			exit(2);
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (mode == M_RESUME) {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
		    SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	} else
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
}

static void
conn_close(struct conn *c)
{
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd != -1) {
		close(c->fd);
		c->fd = -1;
	}
}

/* A connection failed: count it and start again later. */
static void
conn_fail(struct conn *c, const char *why)
{
	static int	said;

	if (said++ < 5) {
		fprintf(stderr, "loadgen: connection failed: %s", why);
		if (errno != 0)
			fprintf(stderr, " (%s)", strerror(errno));
		fprintf(stderr, "\n");
		ERR_print_errors_fp(stderr);
	}
	ERR_clear_error();
	errors++;
	if (mode == M_IDLE && c->counted) {
		dropped++;
		c->counted = 0;
		established--;
	}
	if (mode == M_IDLE && c->st != ST_HOLD)
		inflight--;
	conn_close(c);
	c->st = ST_RETRY;
}

static void
conn_start(struct conn *c)
{
	struct epoll_event	ev;
	int			one = 1;

	c->done = 0;
	c->t0 = now_ns();
	c->deadline = c->t0 + (uint64_t)(CONN_DEADLINE * 1e9);
	c->st = ST_CONNECT;
	if (mode == M_IDLE)
		inflight++;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		conn_fail(c, "socket");
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&srv_addr, sizeof(srv_addr)) == -1 &&
	    errno != EINPROGRESS) {
		conn_fail(c, "connect");
		return;
	}
	/* Edge-triggered: the first poll of the ADD sees a finished connect. */
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP;
	ev.data.ptr = c;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) == -1) {
		conn_fail(c, "epoll_ctl");
		return;
	}
}

/* Returns 1 when connected, 0 when not yet, -1 on error. */
static int
conn_connected(struct conn *c)
{
	int		err = 0;
	socklen_t	len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		return -1;
	if (err == EINPROGRESS || err == EALREADY)
		return 0;
	if (err != 0) {
		errno = err;
		return -1;
	}
	/* Still in progress shows as no error and not writable: peek. */
	{
		struct sockaddr_in	peer;
		socklen_t		plen = sizeof(peer);

		if (getpeername(c->fd, (struct sockaddr *)&peer, &plen) == -1)
			return errno == ENOTCONN ? 0 : -1;
	}
	return 1;
}

/*
 * I/O on either kind of connection.  Returns bytes, 0 when it would
 * block, -1 at end of stream, -2 on error.
 */
static ssize_t
io_read(struct conn *c, char *buf, size_t len)
{
	ssize_t	n;
	int	e;

	if (plain) {
		n = read(c->fd, buf, len);
		if (n > 0)
			return n;
		if (n == 0)
			return -1;
		return (errno == EAGAIN || errno == EINTR) ? 0 : -2;
	}
	n = SSL_read(c->ssl, buf, (int)len);
	if (n > 0)
		return n;
	e = SSL_get_error(c->ssl, (int)n);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	if (e == SSL_ERROR_ZERO_RETURN)
		return -1;
	if (e == SSL_ERROR_SYSCALL && (errno == 0 || errno == ECONNRESET))
		return -1;
	if (ERR_GET_REASON(ERR_peek_error()) ==
	    SSL_R_UNEXPECTED_EOF_WHILE_READING) {
		ERR_clear_error();
		return -1;
	}
	return -2;
}

static ssize_t
io_write(struct conn *c, const char *buf, size_t len)
{
	ssize_t	n;
	int	e;

	if (plain) {
		n = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		return (errno == EAGAIN || errno == EINTR) ? 0 : -2;
	}
	n = SSL_write(c->ssl, buf, (int)len);
	if (n > 0)
		return n;
	e = SSL_get_error(c->ssl, (int)n);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	return -2;
}

/* The request/connection cycle ended well (handshake, resume). */
static void
conn_done(struct conn *c, int ok)
{
	conn_close(c);
	c->st = ST_FREE;
	(void)ok;
}

/* Runs c's state machine until it would block. */
static void
conn_step(struct conn *c)
{
	ssize_t	n;
	int	r;

	for (;;) {
		switch (c->st) {
		case ST_FREE:
		case ST_RETRY:
			return;
		case ST_CONNECT:
			if ((r = conn_connected(c)) == 0)
				return;
			if (r == -1) {
				conn_fail(c, "connect");
				return;
			}
			if (plain) {
				c->st = mode == M_STREAM ? ST_SINK : ST_SEND;
				c->done = 0;
				c->t0 = now_ns();
				continue;
			}
			if ((c->ssl = SSL_new(ctx)) == NULL ||
			    SSL_set_fd(c->ssl, c->fd) != 1) {
				conn_fail(c, "SSL_new");
				return;
			}
			if (mode == M_RESUME) {
				SSL_SESSION	*sess = ticket_take();

				if (sess != NULL) {
					SSL_set_session(c->ssl, sess);
					SSL_SESSION_free(sess);
				}
			}
			SSL_set_connect_state(c->ssl);
			c->st = ST_HANDSHAKE;
			continue;
		case ST_HANDSHAKE:
			ERR_clear_error();
			errno = 0;
			r = SSL_do_handshake(c->ssl);
			if (r != 1) {
				r = SSL_get_error(c->ssl, r);
				if (r == SSL_ERROR_WANT_READ ||
				    r == SSL_ERROR_WANT_WRITE)
					return;
				conn_fail(c, "handshake");
				return;
			}
			c->done = 0;
			c->st = mode == M_STREAM ? ST_SINK : ST_SEND;
			if (mode == M_RR)
				c->t0 = now_ns();
			continue;
		case ST_SINK:
			n = io_write(c, "S", 1);
			if (n == 0)
				return;
			if (n < 0) {
				conn_fail(c, "write");
				return;
			}
			c->st = ST_STREAM;
			continue;
		case ST_SEND:
			n = io_write(c, wbuf + c->done, size - c->done);
			if (n == 0)
				return;
			if (n < 0) {
				conn_fail(c, "write");
				return;
			}
			if ((c->done += (size_t)n) < size)
				continue;
			c->done = 0;
			c->st = ST_RECV;
			continue;
		case ST_RECV:
			n = io_read(c, rbuf, size - c->done);
			if (n == 0)
				return;
			if (n < 0) {
				conn_fail(c, n == -1 ? "closed early" : "read");
				return;
			}
			if ((c->done += (size_t)n) < size)
				continue;
			c->done = 0;
			if (mode == M_RR) {
				uint64_t	t = now_ns();

				lat_record(t - c->t0);
				ops++;
				c->t0 = t;
				c->st = ST_SEND;
				continue;
			}
			if (mode == M_IDLE) {
				c->st = ST_HOLD;
				c->counted = 1;
				established++;
				inflight--;
				return;
			}
			/* handshake, resume: the cycle's work is done. */
			lat_record(now_ns() - c->t0);
			ops++;
			if (!plain && SSL_session_reused(c->ssl))
				reused++;
			if (plain) {
				conn_done(c, 1);
				return;
			}
			ERR_clear_error();
			if (SSL_shutdown(c->ssl) < 0) {
				r = SSL_get_error(c->ssl, -1);
				if (r != SSL_ERROR_WANT_WRITE &&
				    r != SSL_ERROR_WANT_READ) {
					conn_done(c, 0);
					return;
				}
			}
			c->st = ST_SHUT;
			continue;
		case ST_SHUT:
			/* Wait for the server to close: it ends first. */
			n = io_read(c, rbuf, 4096);
			if (n == 0)
				return;
			conn_done(c, 1);
			return;
		case ST_STREAM:
			n = io_write(c, wbuf, size);
			if (n == 0)
				return;
			if (n < 0) {
				conn_fail(c, "write");
				return;
			}
			bytes += (uint64_t)n;
			continue;
		case ST_HOLD:
			/* Anything arriving on a held connection is an end. */
			n = io_read(c, rbuf, 4096);
			if (n == 0)
				return;
			if (n > 0)
				continue;
			conn_fail(c, "held connection closed");
			return;
		}
	}
}

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: loadgen -m handshake|resume|stream|rr|idle -p PORT\n"
	    "    [-H HOST] [-c CONNS] [-n IDLE_CONNS] [-t SECONDS] "
	    "[-w WARMUP]\n"
	    "    [-s SIZE] [--plain] [--cert F --key F] [--ca F --verify]\n"
	    "    [--watch PID]...\n");
	exit(2);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "cert", required_argument, NULL, 'C' },
		{ "key", required_argument, NULL, 'K' },
		{ "ca", required_argument, NULL, 'A' },
		{ "verify", no_argument, NULL, 'V' },
		{ "plain", no_argument, NULL, 'P' },
		{ "watch", required_argument, NULL, 'W' },
		{ NULL, 0, NULL, 0 }
	};
	struct epoll_event	*evs;
	struct sigaction	 sa;
	uint64_t		 t_begin, t_start, t_end, t, ops0 = 0;
	uint64_t		 bytes0 = 0, err0 = 0, reused0 = 0;
	double			 cpu0 = 0, cpu1, wcpu0 = 0, wcpu1, win;
	unsigned long long	 b0[MAX_CPUS], t0[MAX_CPUS], b1[MAX_CPUS];
	unsigned long long	 t1[MAX_CPUS];
	int			 ncpu = 0;
	uint64_t		 last_est = 0, t_progress;
	int			 ch, i, n, ready = 0;

	while ((ch = getopt_long(argc, argv, "hm:H:p:c:n:t:w:s:", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'm':
			if (strcmp(optarg, "handshake") == 0)
				mode = M_HANDSHAKE;
			else if (strcmp(optarg, "resume") == 0)
				mode = M_RESUME;
			else if (strcmp(optarg, "stream") == 0)
				mode = M_STREAM;
			else if (strcmp(optarg, "rr") == 0)
				mode = M_RR;
			else if (strcmp(optarg, "idle") == 0)
				mode = M_IDLE;
			else
				usage();
			break;
		case 'H':
			host = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'c':
			nconns = atoi(optarg);
			break;
		case 'n':
			nidle = atoi(optarg);
			break;
		case 't':
			seconds = atof(optarg);
			break;
		case 'w':
			warmup = atof(optarg);
			break;
		case 's':
			size = (size_t)strtoul(optarg, NULL, 10);
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
		case 'V':
			verify = 1;
			break;
		case 'P':
			plain = 1;
			break;
		case 'W':
			if (nwatch < MAX_WATCH)
				watch[nwatch++] = (pid_t)atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (port <= 0 || port > 65535 || nconns < 1 || nidle < 1 ||
	    seconds <= 0 || warmup < 0)
		usage();
	if (size == 0)
		size = mode == M_STREAM ? 65536 : mode == M_RR ? 1024 :
		    mode == M_IDLE ? 16 : 64;
	if (plain && (mode == M_RESUME))
		usage();
	if (!plain && (certf == NULL || keyf == NULL)) {
		fprintf(stderr, "loadgen: --cert and --key are required\n");
		exit(2);
	}
	memset(&srv_addr, 0, sizeof(srv_addr));
	srv_addr.sin_family = AF_INET;
	srv_addr.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &srv_addr.sin_addr) != 1) {
		fprintf(stderr, "loadgen: %s: not an IPv4 address\n", host);
		exit(2);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!plain)
		tls_setup();
	wbuf = malloc(size);
	rbuf = malloc(size > 4096 ? size : 4096);
	hist = calloc(HIST_US, sizeof(*hist));
	nslots = mode == M_IDLE ? nidle : nconns;
	conns = calloc((size_t)nslots, sizeof(*conns));
	evs = calloc(1024, sizeof(*evs));
	if (wbuf == NULL || rbuf == NULL || hist == NULL || conns == NULL ||
	    evs == NULL || (ep = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		perror("loadgen");
		exit(1);
	}
	memset(wbuf, 'x', size);
	for (i = 0; i < nslots; i++) {
		conns[i].fd = -1;
		conns[i].st = ST_FREE;
	}

	t_begin = t_progress = now_ns();
	t_start = t_begin + (uint64_t)(warmup * 1e9);
	t_end = t_start + (uint64_t)(seconds * 1e9);
	if (mode == M_IDLE) {
		/* Set-up has its own bound; SECONDS is the hold after it. */
		t_start = t_end = UINT64_MAX;
		in_window = 1;
	}
	while (!stop) {
		t = now_ns();
		if (!in_window && t >= t_start) {
			in_window = 1;
			ops0 = ops;
			bytes0 = bytes;
			err0 = errors;
			reused0 = reused;
			cpu0 = cpu_self();
			wcpu0 = cpu_watched();
			ncpu = cpu_busy(b0, t0);
		}
		if (t >= t_end)
			break;
		if (mode == M_IDLE) {
			if (!ready && established == (uint64_t)nidle) {
				ready = 1;
				printf("ready established=%llu seconds=%.2f "
				    "errors=%llu\n",
				    (unsigned long long)established,
				    (double)(t - t_begin) / 1e9,
				    (unsigned long long)errors);
				fflush(stdout);
				t_end = t + (uint64_t)(seconds * 1e9);
			}
			if (established != last_est) {
				last_est = established;
				t_progress = t;
			}
			if (!ready && (t - t_begin > 300ULL * 1000000000ULL ||
			    t - t_progress > 15ULL * 1000000000ULL)) {
				fprintf(stderr, "loadgen: idle set-up stalled "
				    "or took over 300 s; giving up at %llu "
				    "connections\n",
				    (unsigned long long)established);
				break;
			}
			while (inflight < nconns && next_idle < nslots) {
				conn_start(&conns[next_idle++]);
				conn_step(&conns[next_idle - 1]);
			}
		}
		for (i = 0; i < nslots; i++) {
			struct conn	*c = &conns[i];

			if (mode == M_IDLE) {
				if (c->st == ST_RETRY && !ready) {
					c->st = ST_FREE;
					conn_start(c);
					conn_step(c);
				}
				if (c->st != ST_HOLD && c->st != ST_FREE &&
				    c->st != ST_RETRY && t > c->deadline) {
					errno = 0;
					conn_fail(c, "set-up timed out");
				}
				continue;
			}
			if (c->st == ST_FREE || c->st == ST_RETRY) {
				if (c->st == ST_RETRY && errors > 10000 &&
				    errors > 10 * ops) {
					fprintf(stderr, "loadgen: too many "
					    "errors, stopping\n");
					stop = 1;
					break;
				}
				conn_start(c);
				conn_step(c);
			} else if (c->st != ST_STREAM && mode != M_RR &&
			    t > c->deadline) {
				errno = 0;
				conn_fail(c, "cycle timed out");
			}
		}
		n = epoll_wait(ep, evs, 1024, 5);
		if (n == -1 && errno != EINTR) {
			perror("loadgen: epoll_wait");
			exit(1);
		}
		for (i = 0; i < n; i++)
			conn_step(evs[i].data.ptr);
		/* Slots freed by these events restart at the loop's top. */
	}
	if (mode == M_IDLE) {
		printf("mode=idle established=%llu target=%d dropped=%llu "
		    "errors=%llu\n", (unsigned long long)established, nidle,
		    (unsigned long long)dropped, (unsigned long long)errors);
		return established == (uint64_t)nidle && dropped == 0 ? 0 : 1;
	}
	if (!in_window) {
		fprintf(stderr, "loadgen: stopped before the window\n");
		return 1;
	}
	t = now_ns();
	cpu1 = cpu_self();
	wcpu1 = cpu_watched();
	win = (double)(t - t_start) / 1e9;
	if (win > seconds)
		win = seconds;
	if (cpu_busy(b1, t1) != ncpu)
		ncpu = 0;
	printf("mode=%s ops=%llu seconds=%.3f rate=%.1f mbps=%.1f "
	    "p50_us=%.1f p99_us=%.1f p999_us=%.1f reused=%llu errors=%llu "
	    "cpu=%.3f cpu_watch=%.3f",
	    mode == M_HANDSHAKE ? "handshake" : mode == M_RESUME ? "resume" :
	    mode == M_STREAM ? "stream" : "rr",
	    (unsigned long long)(ops - ops0), win,
	    (double)(ops - ops0) / win,
	    (double)(bytes - bytes0) / 1e6 / win,
	    lat_pct(0.50), lat_pct(0.99), lat_pct(0.999),
	    (unsigned long long)(reused - reused0),
	    (unsigned long long)(errors - err0),
	    (cpu1 - cpu0) / win,
	    nwatch > 0 ? (wcpu1 - wcpu0) / win : 0.0);
	for (i = 0; i < ncpu; i++)
		printf(" busy%d=%.3f", i, t1[i] > t0[i] ?
		    (double)(b1[i] - b0[i]) / (double)(t1[i] - t0[i]) : 0.0);
	printf("\n");
	return 0;
}
