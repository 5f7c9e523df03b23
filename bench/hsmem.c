/*
 * hsmem -- what libssl alone costs a server per mTLS 1.3 handshake, with
 * no sockets, no event loop and no proxy: a client and a server SSL
 * joined by a BIO pair in memory, on one thread.  Only the server's calls
 * are timed (CLOCK_THREAD_CPUTIME_ID around each), so the result is the
 * server-side ceiling of one core: SSL_new, the handshake (1 ECDSA sign,
 * 3 ECDSA verifies: the client's CertificateVerify, its leaf and its
 * intermediate, X25519), TICKETS NewSessionTickets, a 64-byte echo,
 * close_notify and SSL_free -- the same configuration as the benchmark's
 * proxies (TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, client certificate
 * required and verified against the CA).
 *
 *   hsmem --cert F --key F --ca F --client-cert F --client-key F
 *         [-t SECONDS] [-T TICKETS] [--resume] [--stateful] [--hold N]
 *
 * Prints: tickets=T resume=0|1 handshakes=N server_cpu_s=S rate=N/S
 *
 * --stateful makes the server issue stateful TLS 1.3 tickets
 * (SSL_OP_NO_TICKET: the session stays in the server's cache and the
 * ticket is its id) instead of stateless ones (the session encrypted into
 * the ticket, which OpenSSL 3.0 serialises, parses back and serialises
 * again, re-parsing the client's certificate each time).
 *
 * With --hold N it measures memory instead: N full handshakes whose
 * server SSL objects are kept (as a proxy keeps an idle connection's,
 * with SSL_MODE_RELEASE_BUFFERS) while the clients' are freed, and
 * prints the growth of VmRSS divided by N: what libssl alone holds per
 * idle mTLS connection.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static double	srv_cpu;	/* seconds spent in the server's calls */

static double
tcpu(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
wall(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
	fprintf(stderr, "hsmem: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static int
want(SSL *ssl, int r)
{
	int	e = SSL_get_error(ssl, r);

	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

static long
vmrss_kib(void)
{
	char	 line[256];
	long	 kib = 0;
	FILE	*f;

	if ((f = fopen("/proc/self/status", "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0)
			kib = atol(line + 6);
	fclose(f);
	return kib;
}

static SSL	*held = (SSL *)1;	/* --hold: NULL asks one() to keep s */

/* One connection; returns 1 when the session was resumed. */
static int
one(SSL_CTX *cctx, SSL_CTX *sctx, SSL_SESSION **sess)
{
	SSL		*c, *s;
	BIO		*bc, *bs;
	char		 buf[256], msg[64];
	double		 t0;
	int		 r, cdone = 0, sdone = 0, i, n, reused;

	memset(msg, 'x', sizeof(msg));
	if ((c = SSL_new(cctx)) == NULL)
		die("SSL_new client");
	t0 = tcpu();
	s = SSL_new(sctx);
	srv_cpu += tcpu() - t0;
	if (s == NULL || !BIO_new_bio_pair(&bc, 0, &bs, 0))
		die("SSL_new server");
	SSL_set_bio(c, bc, bc);
	SSL_set_bio(s, bs, bs);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	if (*sess != NULL)
		SSL_set_session(c, *sess);
	for (i = 0; i < 100 && !(cdone && sdone); i++) {
		if (!cdone) {
			r = SSL_do_handshake(c);
			if (r == 1)
				cdone = 1;
			else if (!want(c, r))
				die("client handshake");
		}
		if (!sdone) {
			t0 = tcpu();
			r = SSL_do_handshake(s);
			srv_cpu += tcpu() - t0;
			if (r == 1)
				sdone = 1;
			else if (!want(s, r))
				die("server handshake");
		}
	}
	if (!(cdone && sdone))
		die("handshake did not finish");
	if (SSL_write(c, msg, sizeof(msg)) != (int)sizeof(msg))
		die("client write");
	t0 = tcpu();
	n = SSL_read(s, buf, sizeof(buf));
	if (n > 0)
		SSL_write(s, buf, n);
	srv_cpu += tcpu() - t0;
	if (n != (int)sizeof(msg))
		die("server read");
	/* The client reads the tickets, then the echo. */
	if (SSL_read(c, buf, sizeof(buf)) != (int)sizeof(msg))
		die("client read");
	reused = SSL_session_reused(c);
	if (*sess == NULL || reused) {
		SSL_SESSION	*ns = SSL_get1_session(c);

		if (ns != NULL && SSL_SESSION_is_resumable(ns)) {
			SSL_SESSION_free(*sess);
			*sess = ns;
		} else
			SSL_SESSION_free(ns);
	}
	if (held == NULL) {
		/*
		 * The server keeps its SSL, idle, like a proxy does; the
		 * in-memory pipe (and its buffers) go, as a socket's would
		 * not count in a process's RSS.
		 */
		BIO	*nb = BIO_new(BIO_s_null());

		if (nb == NULL)
			die("BIO_new");
		SSL_set_bio(s, nb, nb);
		held = s;
		SSL_free(c);
		ERR_clear_error();
		return reused;
	}
	SSL_shutdown(c);
	t0 = tcpu();
	SSL_read(s, buf, sizeof(buf));	/* the close_notify */
	SSL_shutdown(s);
	SSL_free(s);
	srv_cpu += tcpu() - t0;
	SSL_free(c);
	ERR_clear_error();
	return reused;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "cert", required_argument, NULL, 'C' },
		{ "key", required_argument, NULL, 'K' },
		{ "ca", required_argument, NULL, 'A' },
		{ "client-cert", required_argument, NULL, 'c' },
		{ "client-key", required_argument, NULL, 'k' },
		{ "resume", no_argument, NULL, 'R' },
		{ "hold", required_argument, NULL, 'H' },
		{ "stateful", no_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 }
	};
	static const unsigned char sid[] = "hsmem";
	const char	*certf = NULL, *keyf = NULL, *caf = NULL;
	const char	*ccertf = NULL, *ckeyf = NULL;
	SSL_CTX		*sctx, *cctx;
	SSL_SESSION	*sess = NULL;
	double		 seconds = 2.0, end;
	long		 n = 0, nreused = 0, hold = 0, i, rss0;
	size_t		 heap0;
	SSL		**kept;
	int		 ch, tickets = 1, resume = 0, stateful = 0;

	while ((ch = getopt_long(argc, argv, "t:T:", longopts, NULL)) != -1) {
		switch (ch) {
		case 't':
			seconds = atof(optarg);
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
		case 'c':
			ccertf = optarg;
			break;
		case 'k':
			ckeyf = optarg;
			break;
		case 'R':
			resume = 1;
			break;
		case 'H':
			hold = atol(optarg);
			break;
		case 'S':
			stateful = 1;
			break;
		default:
			goto usage;
		}
	}
	if (certf == NULL || keyf == NULL || caf == NULL || ccertf == NULL ||
	    ckeyf == NULL) {
usage:
		fprintf(stderr, "usage: hsmem --cert F --key F --ca F "
		    "--client-cert F --client-key F [-t S] [-T N] "
		    "[--resume]\n");
		return 2;
	}
	if (resume && tickets < 1)
		tickets = 1;

	sctx = SSL_CTX_new(TLS_server_method());
	if (sctx == NULL ||
	    !SSL_CTX_set_min_proto_version(sctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set1_groups_list(sctx, "X25519") ||
	    SSL_CTX_use_certificate_chain_file(sctx, certf) != 1 ||
	    SSL_CTX_use_PrivateKey_file(sctx, keyf, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_load_verify_locations(sctx, caf, NULL) != 1 ||
	    !SSL_CTX_set_session_id_context(sctx, sid, sizeof(sid) - 1) ||
	    !SSL_CTX_set_num_tickets(sctx, (size_t)tickets))
		die("server context");
	SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER |
	    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_mode(sctx, SSL_MODE_RELEASE_BUFFERS);
	if (stateful)
		SSL_CTX_set_options(sctx, SSL_OP_NO_TICKET);

	cctx = SSL_CTX_new(TLS_client_method());
	if (cctx == NULL ||
	    !SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(cctx, "TLS_AES_128_GCM_SHA256") ||
	    !SSL_CTX_set1_groups_list(cctx, "X25519") ||
	    SSL_CTX_use_certificate_chain_file(cctx, ccertf) != 1 ||
	    SSL_CTX_use_PrivateKey_file(cctx, ckeyf, SSL_FILETYPE_PEM) != 1)
		die("client context");
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_OFF);

	/* Warm up: first-use costs (provider fetches, tables) are not ours. */
	for (n = 0; n < 20; n++)
		one(cctx, sctx, &sess);
	if (!resume) {
		SSL_SESSION_free(sess);
		sess = NULL;
	}
	if (hold > 0) {
		if ((kept = calloc((size_t)hold, sizeof(*kept))) == NULL)
			die("calloc");
		malloc_trim(0);
		rss0 = vmrss_kib();
		heap0 = mallinfo2().uordblks;
		for (i = 0; i < hold; i++) {
			held = NULL;
			SSL_SESSION_free(sess);
			sess = NULL;
			one(cctx, sctx, &sess);
			kept[i] = held;
		}
		printf("tickets=%d held=%ld rss_before_kib=%ld "
		    "rss_after_kib=%ld per_conn_kib=%.1f heap_per_conn_kib=%.1f"
		    "\n", tickets, hold, rss0, vmrss_kib(),
		    (double)(vmrss_kib() - rss0) / (double)hold,
		    (double)(mallinfo2().uordblks - heap0) / 1024.0 /
		    (double)hold);
		return 0;
	}
	srv_cpu = 0;
	n = 0;
	end = wall() + seconds;
	while (wall() < end) {
		nreused += one(cctx, sctx, &sess);
		if (!resume) {
			SSL_SESSION_free(sess);
			sess = NULL;
		}
		n++;
	}
	printf("tickets=%d stateful=%d resume=%d handshakes=%ld reused=%ld "
	    "server_cpu_s=%.3f rate=%.1f\n", tickets, stateful, resume, n,
	    nreused,
	    srv_cpu, srv_cpu > 0 ? (double)n / srv_cpu : 0.0);
	SSL_SESSION_free(sess);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	return 0;
}
