/*
 * A session is one client connection and its connection to the target:
 *
 *   inbound:  accept -> TLS handshake -> verdict -> connect target -> relay
 *   outbound: accept -> connect remote -> TLS handshake -> verdict -> relay
 *
 * The relay copies both ways through one fixed buffer per direction,
 * taken from a small free list while bytes are in flight and returned
 * when the direction is idle.  A direction reads from its source only
 * while its buffer is empty, so a peer that stops reading stops the other
 * side too: memory per session is bounded whatever the peers do.
 *
 * End of stream travels across: TCP FIN becomes TLS close_notify and the
 * other way round, and the session closes once both directions have
 * ended, so no byte is lost at teardown.  session_close() is the only
 * teardown path and the last thing a callback does when it calls it.
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "mtlsd/addr.h"
#include "mtlsd/conf.h"
#include "mtlsd/log.h"
#include "mtlsd/policy.h"
#include "mtlsd/pp2.h"
#include "mtlsd/proxy.h"
#include "mtlsd/relay.h"
#include "mtlsd/reload.h"
#include "mtlsd/stats.h"
#include "mtlsd/tls.h"


enum session_state {
	SESSION_HANDSHAKE,
	SESSION_CONNECTING,
	SESSION_RELAYING,
	SESSION_CLOSED
};

/* A name lookup in flight; outlives its session if that closes first. */
struct dns_ticket {
	struct session			*dt_s;
	struct evdns_getaddrinfo_request *dt_req;
};

struct session {
	TAILQ_ENTRY(session)	 s_entry;
	struct worker		*s_w;
	struct gen		*s_gen;		/* held while the session is */
	size_t			 s_index;	/* the route's position */
	const struct route	*s_route;
	struct tls_route	*s_tls;
	enum session_state	 s_state;
	struct end		 s_down;	/* the client */
	struct end		 s_up;		/* the target */
	struct end		*s_tlsend;
	struct flow		 s_in;		/* client -> target */
	struct flow		 s_out;		/* target -> client */
	struct event		 s_timer;
	struct event		 s_kick;
	struct timespec		 s_start;
	struct timespec		 s_last;	/* last byte either way */
	double			 s_hs_seconds;
	struct dns_ticket	*s_dns;
	struct evutil_addrinfo	*s_ai;		/* from the resolver */
	struct evutil_addrinfo	*s_ai_next;
	int			 s_dns_err;
	int			 s_dns_done;
	int			 s_attempts;	/* connects tried */
	struct timespec		 s_hs_start;
	/* The verdict, while it matters: freed once the session relays. */
	struct tls_judgement	*s_j;
	char			*s_identity;	/* kept for the close line */
	const char		*s_tls_version;	/* static strings of libssl */
	const char		*s_cipher;
	size_t			 s_pp2_len;	/* PROXY header bytes sent */
	struct sockaddr_storage	 s_peer_ss;
	char			 s_peer[ADDR_STR_MAX];
};

static void	session_io(evutil_socket_t, short, void *);
static void	session_timer(evutil_socket_t, short, void *);
static void	session_kick(evutil_socket_t, short, void *);
static void	session_handshake(struct session *);
static void	session_connect(struct session *);
static void	session_connect_next(struct session *);
static void	session_connected(struct session *);
static void	session_relay(struct session *);
static int	session_pp2(struct session *);
static void	session_settle(struct session *);
static void	session_trim(struct worker *);
static void	session_close(struct session *, enum stats_result,
		    const char *);
static void	session_dns_cb(int, struct evutil_addrinfo *, void *);
static void	timer_arm(struct session *, double);
static double	elapsed(const struct timespec *, const struct timespec *);

static double
elapsed(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) +
	    (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void
timer_arm(struct session *s, double seconds)
{
	struct timeval	tv;

	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	evtimer_add(&s->s_timer, &tv);
}

/* One turn of the relay: both directions, then wait for what they need. */
static void
session_relay(struct session *s)
{
	struct end	*d = &s->s_down, *u = &s->s_up, *bad;
	int		 which = 0;
	char		 why[512], tlserr[256];

	/* What libssl wrote by itself (a key update, say) goes out first. */
	if (d->e_olen > 0 && d->e_wr_wait == WANT_NOTHING &&
	    end_flush(d) == -1) {
		bad = d;
		goto fail;
	}
	if (u->e_olen > 0 && u->e_wr_wait == WANT_NOTHING &&
	    end_flush(u) == -1) {
		bad = u;
		goto fail;
	}
	if (flow_run(&s->s_in, s->s_w, &s->s_last, &s->s_kick, &which) == -1) {
		bad = which ? u : d;
		goto fail;
	}
	if (flow_run(&s->s_out, s->s_w, &s->s_last, &s->s_kick, &which) == -1) {
		bad = which ? d : u;
		goto fail;
	}
	if (flow_done(&s->s_in) && flow_done(&s->s_out)) {
		session_close(s, RESULT_OK, NULL);
		return;
	}
	end_arm(d, d->e_rd_want == WANT_READ || d->e_wr_want == WANT_READ,
	    d->e_rd_want == WANT_WRITE || d->e_wr_want == WANT_WRITE ||
	    d->e_olen > 0);
	end_arm(u, u->e_rd_want == WANT_READ || u->e_wr_want == WANT_READ,
	    u->e_rd_want == WANT_WRITE || u->e_wr_want == WANT_WRITE ||
	    u->e_olen > 0);
	return;

fail:
	log_tls_errors(tlserr, sizeof(tlserr));
	snprintf(why, sizeof(why), "%s %s: %s", bad == d ? "client" : "target",
	    bad->e_errno == ECONNRESET ? "reset the connection" :
	    bad->e_errno == EPIPE ? "closed the connection" : "failed",
	    bad->e_errno != 0 ? strerror(bad->e_errno) :
	    (*tlserr != '\0' ? tlserr : "TLS error"));
	session_close(s, bad == d ? RESULT_ERROR : RESULT_TARGET_FAILED, why);
}

static void
session_io(evutil_socket_t fd, short what, void *arg)
{
	struct end	*e = arg;
	struct session	*s = e->e_s;
	int		 err = 0;
	socklen_t	 len = sizeof(err);

	(void)fd;
	end_ready(e, what);
	switch (s->s_state) {
	case SESSION_HANDSHAKE:
		session_handshake(s);
		break;
	case SESSION_CONNECTING:
		if (e != &s->s_up)
			break;
		if (getsockopt(s->s_up.e_fd, SOL_SOCKET, SO_ERROR, &err,
		    &len) == -1)
			err = errno;
		if (err != 0) {
			s->s_up.e_errno = err;
			session_connect_next(s);
			break;
		}
		session_connected(s);
		break;
	case SESSION_RELAYING:
		session_relay(s);
		break;
	case SESSION_CLOSED:
		break;
	}
}

static void
session_kick(evutil_socket_t fd, short what, void *arg)
{
	struct session	*s = arg;

	(void)fd;
	(void)what;
	if (s->s_state == SESSION_RELAYING)
		session_relay(s);
	else if (s->s_state == SESSION_CONNECTING && s->s_dns_done &&
	    s->s_up.e_fd == -1)
		session_connect_next(s);
}

static void
session_timer(evutil_socket_t fd, short what, void *arg)
{
	struct session		*s = arg;
	const struct limits	*lim = &s->s_gen->g_conf->c_limits;
	struct timespec		 now;
	double			 idle;
	char			 why[128];

	(void)fd;
	(void)what;
	switch (s->s_state) {
	case SESSION_HANDSHAKE:
		snprintf(why, sizeof(why), "TLS handshake not finished within "
		    "%.1f s", lim->l_handshake_timeout);
		s->s_j->tj_stage = STAGE_HANDSHAKE;
		s->s_j->tj_reason = REASON_PROTOCOL;
		session_close(s, RESULT_TIMEOUT, why);
		break;
	case SESSION_CONNECTING:
		snprintf(why, sizeof(why), "target not reached within %.1f s",
		    lim->l_connect_timeout);
		session_close(s, RESULT_TIMEOUT, why);
		break;
	case SESSION_RELAYING:
		clock_gettime(CLOCK_MONOTONIC, &now);
		idle = elapsed(&s->s_last, &now);
		if (idle + 0.001 < lim->l_idle_timeout) {
			timer_arm(s, lim->l_idle_timeout - idle);
			break;
		}
		snprintf(why, sizeof(why), "idle for %.1f s",
		    lim->l_idle_timeout);
		session_close(s, RESULT_TIMEOUT, why);
		break;
	case SESSION_CLOSED:
		break;
	}
}

void
session_accept(struct listener *l, int fd, const struct sockaddr *sa,
    socklen_t salen)
{
	struct worker		*w = l->l_worker;
	struct gen		*g = w->w_gen;
	const struct route	*r = &g->g_conf->c_routes[l->l_index];
	const struct limits	*lim = &g->g_conf->c_limits;
	struct session		*s;
	int			 one = 1;

	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->s_j = calloc(1, sizeof(*s->s_j))) == NULL) {
		log_warnx("route %s: out of memory, connection dropped",
		    r->r_name);
		free(s);
		close(fd);
		atomic_fetch_sub(&w->w_proxy->p_active, 1);
		return;
	}
	gen_ref(g);
	s->s_w = w;
	s->s_gen = g;
	s->s_index = l->l_index;
	s->s_route = r;
	s->s_tls = g->g_tls[l->l_index];
	stats_conn_open(&w->w_proxy->p_stats, s->s_index);
	s->s_down.e_fd = -1;
	s->s_up.e_fd = -1;
	s->s_in.f_src = &s->s_down;
	s->s_in.f_dst = &s->s_up;
	s->s_out.f_src = &s->s_up;
	s->s_out.f_dst = &s->s_down;
	tls_judgement_clear(s->s_j);
	clock_gettime(CLOCK_MONOTONIC, &s->s_start);
	s->s_last = s->s_start;
	s->s_hs_start = s->s_start;
	if (salen <= sizeof(s->s_peer_ss))
		memcpy(&s->s_peer_ss, sa, salen);
	addr_sockaddr_str(sa, salen, s->s_peer, sizeof(s->s_peer));
	if (sa->sa_family == AF_UNIX && r->r_listen.a_kind == ADDR_UNIX)
		snprintf(s->s_peer, sizeof(s->s_peer), "unix:%s",
		    r->r_listen.a_path);
	if (sa->sa_family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evtimer_assign(&s->s_timer, w->w_base, session_timer, s);
	event_assign(&s->s_kick, w->w_base, -1, 0, session_kick, s);
	TAILQ_INSERT_TAIL(&w->w_sessions, s, s_entry);
	end_init(&s->s_down, s, s->s_w->w_base, fd, session_io);

	if (s->s_route->r_dir == ROUTE_OUTBOUND) {
		session_connect(s);
		return;
	}
	s->s_tlsend = &s->s_down;
	if ((s->s_down.e_ssl = tls_ssl_new(s->s_tls, s->s_j)) == NULL ||
	    end_tls_attach(&s->s_down) == -1) {
		session_close(s, RESULT_HANDSHAKE_FAILED, "cannot create TLS state");
		return;
	}
	s->s_state = SESSION_HANDSHAKE;
	timer_arm(s, lim->l_handshake_timeout);
	session_handshake(s);
}

static void
session_handshake(struct session *s)
{
	struct end		*e = s->s_tlsend;
	const struct limits	*lim = &s->s_gen->g_conf->c_limits;
	struct timespec		 now;
	char			 errs[512];
	int			 r;

	/* A flight the socket did not take at once goes before all else. */
	if (e->e_olen > 0 && end_flush(e) == -1) {
		snprintf(errs, sizeof(errs), "TLS handshake: %s",
		    strerror(e->e_errno));
		tls_handshake_failed(e->e_ssl, s->s_j, errs);
		session_close(s, RESULT_HANDSHAKE_FAILED, s->s_j->tj_error);
		return;
	}
	ERR_clear_error();
	if ((r = SSL_do_handshake(e->e_ssl)) == 1) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		s->s_hs_seconds = elapsed(&s->s_hs_start, &now);
		s->s_tls_version = SSL_get_version(e->e_ssl);
		s->s_cipher = SSL_get_cipher_name(e->e_ssl);
		stats_handshake(&s->s_w->w_proxy->p_stats, s->s_hs_seconds);
		if (!tls_handshake_done(s->s_tls, e->e_ssl, s->s_j)) {
			session_close(s, RESULT_IDENTITY_REJECTED, s->s_j->tj_error);
			return;
		}
		end_tls_established(e);
		end_arm(e, 0, 0);
		if (s->s_route->r_dir == ROUTE_INBOUND) {
			session_connect(s);
			return;
		}
		session_settle(s);
		s->s_state = SESSION_RELAYING;
		s->s_last = now;
		timer_arm(s, lim->l_idle_timeout);
		session_relay(s);
		return;
	}
	switch (SSL_get_error(e->e_ssl, r)) {
	case SSL_ERROR_WANT_READ:
		end_arm(e, 1, e->e_olen > 0);
		return;
	case SSL_ERROR_WANT_WRITE:
		end_arm(e, 0, 1);
		return;
	default:
		break;
	}
	log_tls_errors(errs, sizeof(errs));
	tls_handshake_failed(e->e_ssl, s->s_j, errs);
	session_close(s, s->s_j->tj_stage == STAGE_IDENTITY ?
	    RESULT_IDENTITY_REJECTED : RESULT_HANDSHAKE_FAILED,
	    s->s_j->tj_error);
}

static void
session_dns_cb(int result, struct evutil_addrinfo *ai, void *arg)
{
	struct dns_ticket	*t = arg;
	struct session		*s = t->dt_s;

	if (s == NULL) {	/* the session closed meanwhile */
		if (ai != NULL)
			evutil_freeaddrinfo(ai);
		free(t);
		return;
	}
	s->s_dns = NULL;
	free(t);
	s->s_ai = ai;
	s->s_ai_next = ai;
	s->s_dns_err = result;
	s->s_dns_done = 1;
	/* Go on from the loop, never from inside the resolver. */
	event_active(&s->s_kick, EV_TIMEOUT, 0);
}

static void
session_connect(struct session *s)
{
	const struct route	*r = s->s_route;
	const struct limits	*lim = &s->s_gen->g_conf->c_limits;
	struct evutil_addrinfo	 hints;
	struct dns_ticket	*t;
	struct evdns_getaddrinfo_request *req;
	char			 port[8];

	s->s_state = SESSION_CONNECTING;
	evtimer_del(&s->s_timer);
	timer_arm(s, lim->l_connect_timeout);
	if (r->r_target.a_kind != ADDR_NAME) {
		s->s_dns_done = 1;
		session_connect_next(s);
		return;
	}
	if (s->s_w->w_dns == NULL || (t = calloc(1, sizeof(*t))) == NULL) {
		session_close(s, RESULT_TARGET_FAILED, "no resolver");
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	snprintf(port, sizeof(port), "%u", r->r_target.a_port);
	t->dt_s = s;
	s->s_dns = t;
	req = evdns_getaddrinfo(s->s_w->w_dns, r->r_target.a_host, port,
	    &hints, session_dns_cb, t);
	/* The answer may have come at once: then t is freed already. */
	if (s->s_dns == t)
		t->dt_req = req;
}

/* Tries the next address of the target, or gives up. */
static void
session_connect_next(struct session *s)
{
	const struct route	*r = s->s_route;
	const struct sockaddr	*sa;
	socklen_t		 salen;
	char			 why[512], a[ADDR_STR_MAX];
	int			 fd, one = 1, err;

	if (s->s_up.e_fd != -1)
		end_close(&s->s_up, 0);
	if (r->r_target.a_kind != ADDR_NAME) {
		if (s->s_attempts++ > 0)
			goto fail;	/* the one address was tried */
		sa = (const struct sockaddr *)&r->r_target.a_ss;
		salen = r->r_target.a_sslen;
	} else {
		if (s->s_dns_err != 0 || s->s_ai_next == NULL)
			goto fail;
		sa = s->s_ai_next->ai_addr;
		salen = (socklen_t)s->s_ai_next->ai_addrlen;
		s->s_ai_next = s->s_ai_next->ai_next;
	}
	if ((fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1) {
		s->s_up.e_errno = errno;
		goto fail;
	}
	if (sa->sa_family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	end_init(&s->s_up, s, s->s_w->w_base, fd, session_io);
	if (connect(fd, sa, salen) == 0) {
		session_connected(s);
		return;
	}
	if (errno == EINPROGRESS) {
		end_arm(&s->s_up, 0, 1);
		return;
	}
	err = errno;
	s->s_up.e_errno = err;
	end_close(&s->s_up, 0);
	/* Next address, if any: the kick runs it from the loop. */
	if (r->r_target.a_kind == ADDR_NAME && s->s_ai_next != NULL) {
		event_active(&s->s_kick, EV_TIMEOUT, 0);
		return;
	}
fail:
	if (r->r_target.a_kind == ADDR_NAME && s->s_dns_err != 0)
		snprintf(why, sizeof(why), "cannot resolve %s: %s",
		    r->r_target.a_host, evutil_gai_strerror(s->s_dns_err));
	else
		snprintf(why, sizeof(why), "cannot connect to %s: %s",
		    addr_str(&r->r_target, a, sizeof(a)),
		    s->s_up.e_errno != 0 ? strerror(s->s_up.e_errno) :
		    "no address");
	session_close(s, RESULT_TARGET_FAILED, why);
}

static void
session_connected(struct session *s)
{
	const struct limits	*lim = &s->s_gen->g_conf->c_limits;

	end_arm(&s->s_up, 0, 0);
	evtimer_del(&s->s_timer);
	if (s->s_route->r_dir == ROUTE_OUTBOUND) {
		s->s_tlsend = &s->s_up;
		if ((s->s_up.e_ssl = tls_ssl_new(s->s_tls, s->s_j)) == NULL ||
		    end_tls_attach(&s->s_up) == -1) {
			session_close(s, RESULT_HANDSHAKE_FAILED,
			    "cannot create TLS state");
			return;
		}
		clock_gettime(CLOCK_MONOTONIC, &s->s_hs_start);
		s->s_state = SESSION_HANDSHAKE;
		timer_arm(s, lim->l_handshake_timeout);
		session_handshake(s);
		return;
	}
	if (s->s_route->r_proxy_protocol && session_pp2(s) == -1) {
		session_close(s, RESULT_TARGET_FAILED,
		    "cannot build the PROXY v2 header");
		return;
	}
	session_settle(s);
	s->s_state = SESSION_RELAYING;
	clock_gettime(CLOCK_MONOTONIC, &s->s_last);
	timer_arm(s, lim->l_idle_timeout);
	session_relay(s);
}

/*
 * Puts the PROXY v2 header at the head of the client-to-target buffer,
 * so that it goes out before the first byte of the peer's data.
 */
static int
session_pp2(struct session *s)
{
	struct pp2_info		 info;
	struct sockaddr_storage	 local;
	socklen_t		 len = sizeof(local);
	const struct identities	*ids = &s->s_j->tj_ids;
	SSL			*ssl = s->s_down.e_ssl;
	const unsigned char	*alpn = NULL;
	unsigned int		 alpn_len = 0;
	size_t			 i;
	ssize_t			 n;

	memset(&info, 0, sizeof(info));
	memset(&local, 0, sizeof(local));
	if (getsockname(s->s_down.e_fd, (struct sockaddr *)&local,
	    &len) == -1)
		local.ss_family = AF_UNSPEC;
	info.authority = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
	info.alpn = alpn;
	info.alpn_len = alpn_len;
	info.ssl_version = s->s_tls_version;
	info.ssl_cipher = s->s_cipher;
	for (i = 0; i < ids->ids_count; i++)
		if (ids->ids_list[i].id_kind == RULE_CN) {
			info.ssl_cn = ids->ids_list[i].id_value;
			break;
		}
	info.identity = s->s_j->tj_verdict.v_match;
	info.route = s->s_route->r_name;
	info.sha256 = s->s_j->tj_sha256;
	if (s->s_in.f_buf == NULL &&
	    (s->s_in.f_buf = malloc(PROXY_BUFSZ)) == NULL)
		return -1;
	n = pp2_encode((uint8_t *)s->s_in.f_buf, PROXY_BUFSZ,
	    (struct sockaddr *)&s->s_peer_ss, (struct sockaddr *)&local,
	    &info);
	if (n <= 0)
		return -1;
	s->s_in.f_off = 0;
	s->s_in.f_len = (size_t)n;
	s->s_pp2_len = (size_t)n;
	return 0;
}

/*
 * The verdict has served its purpose (the handshake, the PROXY header):
 * keep only the identity for the close line.  An idle connection then
 * costs ~1.7 KiB less.
 */
static void
session_settle(struct session *s)
{
	if (s->s_j == NULL)
		return;
	s->s_identity = strdup(policy_primary(&s->s_j->tj_ids));
	tls_ssl_forget(s->s_tlsend->e_ssl);
	tls_judgement_clear(s->s_j);
	free(s->s_j);
	s->s_j = NULL;
}

/* Bytes of the client's own data that reached the target. */
static uint64_t
session_bytes_in(const struct session *s)
{
	return s->s_in.f_bytes > s->s_pp2_len ?
	    s->s_in.f_bytes - s->s_pp2_len : 0;
}

/*
 * Writes the one line of a finished session: at info for a served
 * connection, at warn with the full explanation for a rejected peer.
 */
static void
session_log(struct session *s, enum stats_result res, const char *reason)
{
	struct log_field	 f[24];
	struct timespec		 now;
	char			 in[32], out[32], dur[32], hs[32];
	char			 scratch[1024];
	const char		*ident, *ver, *cipher;
	size_t			 n = 0;
	int			 reject;

	const char		*result = stats_result_name(res);

	reject = (res == RESULT_HANDSHAKE_FAILED ||
	    res == RESULT_IDENTITY_REJECTED) && s->s_j != NULL;
	if (!log_enabled(reject ? LOG_LEVEL_WARN : LOG_LEVEL_INFO))
		return;
	if (reject && !log_reject_allowed())
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ver = s->s_tls_version != NULL ? s->s_tls_version : "-";
	cipher = s->s_cipher != NULL ? s->s_cipher : "-";
	if (s->s_j != NULL)
		ident = policy_primary(&s->s_j->tj_ids);
	else
		ident = s->s_identity != NULL ? s->s_identity : "-";
	snprintf(in, sizeof(in), "%llu",
	    (unsigned long long)session_bytes_in(s));
	snprintf(out, sizeof(out), "%llu",
	    (unsigned long long)s->s_out.f_bytes);
	snprintf(dur, sizeof(dur), "%.3f", elapsed(&s->s_start, &now));
	snprintf(hs, sizeof(hs), "%.3f", s->s_hs_seconds);

	f[n++] = (struct log_field){ "route", s->s_route->r_name, 0 };
	f[n++] = (struct log_field){ "peer", s->s_peer, 0 };
	f[n++] = (struct log_field){ "identity", ident, 0 };
	f[n++] = (struct log_field){ "tls", ver, 0 };
	f[n++] = (struct log_field){ "cipher", cipher, 0 };
	f[n++] = (struct log_field){ "bytes_in", in, 1 };
	f[n++] = (struct log_field){ "bytes_out", out, 1 };
	f[n++] = (struct log_field){ "duration", dur, 1 };
	f[n++] = (struct log_field){ "result", result, 0 };
	if (reject) {
		n += tls_judgement_fields(s->s_j, f + n,
		    sizeof(f) / sizeof(f[0]) - n, scratch, sizeof(scratch));
		log_fields(LOG_LEVEL_WARN, "reject", f, n);
		return;
	}
	if (reason != NULL)
		f[n++] = (struct log_field){ "reason", reason, 0 };
	if (s->s_hs_seconds > 0)
		f[n++] = (struct log_field){ "handshake", hs, 1 };
	log_fields(LOG_LEVEL_INFO, "conn", f, n);
}

static void
session_close(struct session *s, enum stats_result res, const char *reason)
{
	struct worker	*w = s->s_w;
	int		 abort = res != RESULT_OK, reject;

	s->s_state = SESSION_CLOSED;
	reject = res == RESULT_HANDSHAKE_FAILED ||
	    res == RESULT_IDENTITY_REJECTED;
	if (reject && s->s_j == NULL)
		reject = 0;	/* cannot happen: rejections precede settling */
	if (reject && reason != NULL && s->s_j->tj_error[0] == '\0' &&
	    res == RESULT_HANDSHAKE_FAILED)
		snprintf(s->s_j->tj_error, sizeof(s->s_j->tj_error), "%s",
		    reason);
	if (reject && s->s_j->tj_reason == REASON_NONE)
		s->s_j->tj_reason = REASON_OTHER;
	session_log(s, res, reason);
	stats_conn_close(&w->w_proxy->p_stats, s->s_index, res,
	    reject ? s->s_j->tj_reason : REASON_NONE, 1,
	    (unsigned long)session_bytes_in(s),
	    (unsigned long)s->s_out.f_bytes);

	if (s->s_dns != NULL) {
		s->s_dns->dt_s = NULL;
		evdns_getaddrinfo_cancel(s->s_dns->dt_req);
		s->s_dns = NULL;
	}
	if (s->s_ai != NULL)
		evutil_freeaddrinfo(s->s_ai);
	evtimer_del(&s->s_timer);
	event_del(&s->s_kick);
	end_close(&s->s_down, abort);
	end_close(&s->s_up, abort);
	free(s->s_in.f_buf);
	free(s->s_out.f_buf);
	if (s->s_j != NULL) {
		tls_judgement_clear(s->s_j);
		free(s->s_j);
	}
	free(s->s_identity);
	TAILQ_REMOVE(&w->w_sessions, s, s_entry);
	gen_unref(s->s_gen);
	free(s);
	atomic_fetch_sub(&w->w_proxy->p_active, 1);
	if (TAILQ_EMPTY(&w->w_sessions)) {
		if (w->w_draining)
			event_base_loopexit(w->w_base, NULL);
		session_trim(w);
	}
}

/*
 * A worker with no session left gives the memory its arena holds back
 * to the system, at most once a minute: after a burst, RSS returns.
 */
static void
session_trim(struct worker *w)
{
	struct timespec	now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec - w->w_trimmed < 60)
		return;
	w->w_trimmed = now.tv_sec;
	malloc_trim(0);
}

void
session_close_all(struct worker *w, const char *reason)
{
	struct session	*s;

	/* session_close() unlinks s: the head moves on each turn. */
	while ((s = TAILQ_FIRST(&w->w_sessions)) != NULL)
		session_close(s, RESULT_TIMEOUT, reason); /* NOLINT */
}
