/*
 * Workers, listeners, signals, reload and drain.
 *
 * Each worker is one thread with its own event_base; a TCP listener has
 * one socket per worker (SO_REUSEPORT, the kernel spreads connections),
 * a unix listener one socket that every worker watches.  Workers share
 * nothing on the hot path but the read-only, reference-counted
 * generation of configuration and TLS contexts, the connection count and
 * the counters.  The main thread keeps its own event_base for signals,
 * reloads, the drain and the admin endpoint.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "mtlsd/addr.h"
#include "mtlsd/admin.h"
#include "mtlsd/conf.h"
#include "mtlsd/log.h"
#include "mtlsd/proxy.h"
#include "mtlsd/reload.h"
#include "mtlsd/stats.h"
#include "mtlsd/tls.h"

#define ACCEPT_BATCH		32
#define LISTEN_BACKLOG		1024
#define MAX_WORKERS		64

static void	proxy_accept(evutil_socket_t, short, void *);
static int	proxy_refuse_one(struct listener *, int);
static void	proxy_resume(evutil_socket_t, short, void *);
static void	proxy_wake(evutil_socket_t, short, void *);
static void	proxy_signal(evutil_socket_t, short, void *);
static void	proxy_drain_timeout(evutil_socket_t, short, void *);
static void	proxy_workers_done(evutil_socket_t, short, void *);
static void	proxy_reload_tick(evutil_socket_t, short, void *);
static void	proxy_unlisten(evutil_socket_t, short, void *);
static void	proxy_close_listeners(struct proxy *);
static void	*proxy_worker_main(void *);
static int	proxy_listen_one(const struct route *, int, int);

static struct event	*main_done;
static struct event	*main_drain;
static atomic_uint	 workers_running;

/*
 * gcc's analyzer loses track of the worker arrays that proxy_free()
 * releases through p on the failure path, and reports them as leaks.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
#endif
struct proxy *
proxy_new(struct gen *g, const char *path)
{
	const struct conf	*conf = g->g_conf;
	struct proxy		*p;
	struct worker		*w;
	struct listener		*l;
	long			 ncpu;
	size_t			 i, k;
	int			 need_dns = 0;

	if (conf->c_nroutes == 0)	/* conf_load refuses that already */
		return NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	gen_ref(g);
	p->p_gen = g;
	p->p_path = path;
	p->p_nroutes = conf->c_nroutes;
	p->p_started_at = time(NULL);
	p->p_reload_ok = 1;
	watch_snapshot(g, &p->p_watch);
	p->p_watch_seen = p->p_watch;
	if (conf->c_workers > 0)
		p->p_nworkers = (unsigned int)conf->c_workers;
	else {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		p->p_nworkers = ncpu < 1 ? 1 : (unsigned int)ncpu;
	}
	if (p->p_nworkers > MAX_WORKERS)
		p->p_nworkers = MAX_WORKERS;
	atomic_init(&p->p_active, 0);
	atomic_init(&p->p_stopping, 0);
	pthread_mutex_init(&p->p_go_mtx, NULL);
	pthread_cond_init(&p->p_go_cond, NULL);
	if (stats_init(&p->p_stats, conf->c_nroutes) == -1)
		goto fail;
	if ((p->p_base = event_base_new()) == NULL)
		goto fail;

	if ((p->p_fds = calloc(conf->c_nroutes * p->p_nworkers,
	    sizeof(int))) == NULL)
		goto fail;
	for (i = 0; i < conf->c_nroutes * p->p_nworkers; i++)
		p->p_fds[i] = -1;
	for (i = 0; i < conf->c_nroutes; i++)
		if (conf->c_routes[i].r_target.a_kind == ADDR_NAME)
			need_dns = 1;

	if ((p->p_workers = calloc(p->p_nworkers, sizeof(*w))) == NULL)
		goto fail;
	for (k = 0; k < p->p_nworkers; k++)
		p->p_workers[k].w_spare_fd = -1;
	for (k = 0; k < p->p_nworkers; k++) {
		w = &p->p_workers[k];
		w->w_proxy = p;
		w->w_id = (unsigned int)k;
		TAILQ_INIT(&w->w_sessions);
		pthread_mutex_init(&w->w_mtx, NULL);
		/* Kept in reserve for refusing clients when out of fds. */
		w->w_spare_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		gen_ref(g);
		w->w_gen = g;
		if ((w->w_base = event_base_new()) == NULL)
			goto fail;
		/*
		 * Resolver state is read now, before the sandbox: a reload
		 * that adds a host-name target needs a restart for DNS.
		 */
		if (need_dns && (w->w_dns = evdns_base_new(w->w_base,
		    EVDNS_BASE_INITIALIZE_NAMESERVERS |
		    EVDNS_BASE_DISABLE_WHEN_INACTIVE)) == NULL) {
			log_warnx("cannot set up the resolver for host-name "
			    "targets: /etc/resolv.conf unreadable or without "
			    "a nameserver");
			goto fail_quiet;
		}
		if ((w->w_wake = event_new(w->w_base, -1, 0, proxy_wake,
		    w)) == NULL)
			goto fail;
		if ((w->w_listeners = calloc(conf->c_nroutes,
		    sizeof(*l))) == NULL)
			goto fail;
		w->w_nlisteners = conf->c_nroutes;
		for (i = 0; i < conf->c_nroutes; i++) {
			l = &w->w_listeners[i];
			l->l_worker = w;
			l->l_index = i;
			l->l_fd = -1;
		}
	}
	return p;
fail:
	log_warnx("cannot set up the event loops: out of memory");
fail_quiet:
	proxy_free(p);
	return NULL;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* One listening socket for route r; reuseport when workers share it. */
static int
proxy_listen_one(const struct route *r, int reuseport, int probe)
{
	const struct addr	*a = &r->r_listen;
	struct stat		 st;
	char			 as[ADDR_STR_MAX];
	int			 fd, one = 1;

	if (a->a_kind == ADDR_UNIX && lstat(a->a_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_warnx("route %s: %s exists and is not a socket",
			    r->r_name, a->a_path);
			return -1;
		}
		/* A socket left by an earlier run. */
		unlink(a->a_path);
	}
	fd = socket(a->a_ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("route %s: socket", r->r_name);
		return -1;
	}
	if (a->a_kind != ADDR_UNIX) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT,
		    &one, sizeof(one)) == -1) {
			log_warn("route %s: SO_REUSEPORT", r->r_name);
			close(fd);
			return -1;
		}
	}
	if (bind(fd, (const struct sockaddr *)&a->a_ss, a->a_sslen) == -1) {
		log_warn("route %s: cannot listen on %s", r->r_name,
		    addr_str(a, as, sizeof(as)));
		close(fd);
		return -1;
	}
	if (probe) {
		close(fd);
		return 0;
	}
	if (listen(fd, LISTEN_BACKLOG) == -1) {
		log_warn("route %s: listen on %s", r->r_name,
		    addr_str(a, as, sizeof(as)));
		close(fd);
		return -1;
	}
	return fd;
}

int
proxy_bind(struct proxy *p)
{
	const struct conf	*conf = p->p_gen->g_conf;
	const struct route	*r;
	struct listener		*l;
	size_t			 i, k, nw = p->p_nworkers;
	int			 fd, reuse;
	char			 as[ADDR_STR_MAX];

	for (i = 0; i < conf->c_nroutes; i++) {
		r = &conf->c_routes[i];
		reuse = nw > 1 && r->r_listen.a_kind != ADDR_UNIX;
		/*
		 * SO_REUSEPORT would let us share a port with a stale
		 * instance by mistake: a plain bind first proves it free.
		 */
		if (reuse && proxy_listen_one(r, 0, 1) == -1)
			return -1;
		for (k = 0; k < nw; k++) {
			if (k > 0 && !reuse)
				fd = p->p_fds[i * nw];
			else if ((fd = proxy_listen_one(r, reuse, 0)) == -1)
				return -1;
			p->p_fds[i * nw + k] = fd;
			l = &p->p_workers[k].w_listeners[i];
			l->l_fd = fd;
			event_assign(&l->l_ev, p->p_workers[k].w_base, fd,
			    EV_READ | EV_PERSIST, proxy_accept, l);
			evtimer_assign(&l->l_pause, p->p_workers[k].w_base,
			    proxy_resume, l);
		}
		log_info("route %s: %s listening on %s", r->r_name,
		    conf_route_dir_name(r->r_dir),
		    addr_str(&r->r_listen, as, sizeof(as)));
	}
	if (conf->c_admin_enabled && (p->p_admin = admin_new(p)) == NULL)
		return -1;
	return 0;
}

static void
proxy_resume(evutil_socket_t fd, short what, void *arg)
{
	struct listener	*l = arg;

	(void)fd;
	(void)what;
	if (!l->l_worker->w_draining)
		event_add(&l->l_ev, NULL);
}

/*
 * Out of descriptors: give the worker's spare one up for a moment to
 * accept the waiting client and reset it at once, so that it is refused
 * instead of left hanging in the backlog.  0 when one was refused.
 */
static int
proxy_refuse_one(struct listener *l, int lfd)
{
	struct worker	*w = l->l_worker;
	struct linger	 lg = { 1, 0 };
	int		 fd, saved = errno;

	if (w->w_spare_fd == -1)
		return -1;
	close(w->w_spare_fd);
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd != -1) {
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
	}
	w->w_spare_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd != -1 && log_reject_allowed())
		log_warnx("route %s: a client was refused: out of file "
		    "descriptors (RLIMIT_NOFILE)",
		    w->w_gen->g_conf->c_routes[l->l_index].r_name);
	errno = saved;
	return fd == -1 ? -1 : 0;
}

static void
proxy_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct listener		*l = arg;
	struct worker		*w = l->l_worker;
	struct proxy		*p = w->w_proxy;
	const struct route	*r;
	struct sockaddr_storage	 ss;
	struct timeval		 pause = { 1, 0 };
	struct linger		 lg = { 1, 0 };
	socklen_t		 len;
	unsigned int		 n, max;
	char			 peer[ADDR_STR_MAX];
	int			 fd, i;

	(void)what;
	r = &w->w_gen->g_conf->c_routes[l->l_index];
	max = w->w_gen->g_conf->c_limits.l_max_connections;
	for (i = 0; i < ACCEPT_BATCH; i++) {
		len = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if ((errno == EMFILE || errno == ENFILE) &&
			    proxy_refuse_one(l, lfd) == 0)
				continue;
			/*
			 * Out of descriptors or memory, with no spare one:
			 * stop accepting for a moment instead of spinning on
			 * a ready listener.
			 */
			log_warn("route %s: accept (pausing 1 s)", r->r_name);
			event_del(&l->l_ev);
			evtimer_add(&l->l_pause, &pause);
			return;
		}
		n = atomic_fetch_add(&p->p_active, 1) + 1;
		if (n > max) {
			atomic_fetch_sub(&p->p_active, 1);
			stats_conn_close(&p->p_stats, l->l_index, RESULT_LIMIT,
			    REASON_NONE, 0, 0, 0);
			if (log_reject_allowed()) {
				addr_sockaddr_str((struct sockaddr *)&ss, len,
				    peer, sizeof(peer));
				log_warnx("route %s: peer %s refused: "
				    "max_connections (%u) reached; result=limit",
				    r->r_name, peer, max);
			}
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(fd);
			continue;
		}
		session_accept(l, fd, (struct sockaddr *)&ss, len);
	}
}

/* The main thread has news for this worker: a generation, or the end. */
static void
proxy_wake(evutil_socket_t fd, short what, void *arg)
{
	struct worker	*w = arg;
	struct proxy	*p = w->w_proxy;
	struct gen	*next;
	size_t		 i;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&w->w_mtx);
	next = w->w_gen_next;
	w->w_gen_next = NULL;
	pthread_mutex_unlock(&w->w_mtx);
	if (next != NULL) {
		/* Open sessions keep their own reference to the old one. */
		gen_unref(w->w_gen);
		w->w_gen = next;
	}
	if (atomic_load(&p->p_stopping) == 0)
		return;
	if (!w->w_draining) {
		w->w_draining = 1;
		for (i = 0; i < w->w_nlisteners; i++) {
			event_del(&w->w_listeners[i].l_ev);
			evtimer_del(&w->w_listeners[i].l_pause);
		}
		/*
		 * The last worker to let go asks the main thread to close
		 * the sockets, so new clients are refused, not left waiting.
		 */
		if (atomic_fetch_add(&p->p_released, 1) + 1 == p->p_nworkers)
			event_active(p->p_unlisten, EV_READ, 0);
	}
	if (atomic_load(&p->p_stopping) >= 2)
		session_close_all(w, "closed by shutdown (drain_timeout)");
	if (TAILQ_EMPTY(&w->w_sessions))
		event_base_loopexit(w->w_base, NULL);
}

static void *
proxy_worker_main(void *arg)
{
	struct worker	*w = arg;
	struct proxy	*p = w->w_proxy;
	sigset_t	 all;
	size_t		 i;
	int		 go;

	/* Signals are the main thread's. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_mutex_lock(&p->p_go_mtx);
	while (p->p_go == 0)
		pthread_cond_wait(&p->p_go_cond, &p->p_go_mtx);
	go = p->p_go;
	pthread_mutex_unlock(&p->p_go_mtx);
	if (go != 1)
		goto done;
	for (i = 0; i < w->w_nlisteners; i++)
		event_add(&w->w_listeners[i].l_ev, NULL);
	event_base_loop(w->w_base, EVLOOP_NO_EXIT_ON_EMPTY);
done:
	if (atomic_fetch_sub(&workers_running, 1) == 1)
		event_active(main_done, EV_READ, 0);
	return NULL;
}

static void
proxy_wake_all(struct proxy *p)
{
	unsigned int	k;

	for (k = 0; k < p->p_nworkers; k++)
		event_active(p->p_workers[k].w_wake, EV_READ, 0);
}

int
proxy_reload(struct proxy *p, const char *why)
{
	struct gen	*next;
	struct worker	*w;
	struct watch	 seen;
	char		*errs = NULL, *nl;
	size_t		 errlen = 0, i;
	unsigned int	 k;
	FILE		*errf;

	p->p_reload_time = time(NULL);
	if ((errf = open_memstream(&errs, &errlen)) == NULL) {
		log_warn("reload (%s)", why);
		return -1;
	}
	next = gen_load(p->p_path, p->p_gen->g_id + 1, errf);
	if (next != NULL && gen_compatible(p->p_gen, next,
	    p->p_reload_error, sizeof(p->p_reload_error)) == -1) {
		gen_unref(next);
		next = NULL;
		fprintf(errf, "%s\n", p->p_reload_error);
	}
	for (i = 0; next != NULL && i < next->g_conf->c_nroutes; i++)
		if (tls_route_check_own(next->g_tls[i], p->p_reload_error,
		    sizeof(p->p_reload_error)) == -1) {
			gen_unref(next);
			next = NULL;
			fprintf(errf, "%s\n", p->p_reload_error);
		}
	fclose(errf);
	if (next == NULL) {
		/* The first error says enough; the log line stays one line. */
		if ((nl = strchr(errs, '\n')) != NULL)
			*nl = '\0';
		snprintf(p->p_reload_error, sizeof(p->p_reload_error), "%s",
		    *errs != '\0' ? errs : "unknown error");
		free(errs);
		p->p_reload_ok = 0;
		atomic_fetch_add(&p->p_stats.st_reloads_failed, 1);
		log_warnx("reload (%s) failed, still serving generation %u: "
		    "%s", why, p->p_gen->g_id, p->p_reload_error);
		return -1;
	}
	free(errs);
	watch_snapshot(next, &seen);
	p->p_watch = seen;
	p->p_watch_seen = seen;
	for (k = 0; k < p->p_nworkers; k++) {
		w = &p->p_workers[k];
		gen_ref(next);
		pthread_mutex_lock(&w->w_mtx);
		if (w->w_gen_next != NULL)
			gen_unref(w->w_gen_next);
		w->w_gen_next = next;
		pthread_mutex_unlock(&w->w_mtx);
	}
	gen_unref(p->p_gen);
	p->p_gen = next;
	proxy_wake_all(p);
	p->p_reload_ok = 1;
	p->p_reload_error[0] = '\0';
	atomic_fetch_add(&p->p_stats.st_reloads_ok, 1);
	log_info("reload (%s): generation %u in service", why, next->g_id);
	return 0;
}

/*
 * reload_interval: reload when a file changed and has then stayed the
 * same for one more tick, so that a writer is not caught half-way.  A
 * key that does not match its certificate fails the reload; the next
 * change (the certificate arriving) tries again.
 */
static void
proxy_reload_tick(evutil_socket_t fd, short what, void *arg)
{
	struct proxy	*p = arg;
	struct watch	 now;

	(void)fd;
	(void)what;
	if (atomic_load(&p->p_stopping) != 0)
		return;
	watch_snapshot(p->p_gen, &now);
	/* Unchanged, or still changing: wait a tick. */
	if (watch_equal(&now, &p->p_watch) ||
	    !watch_equal(&now, &p->p_watch_seen))
		p->p_watch_seen = now;
	else if (proxy_reload(p, "files changed") == -1)
		p->p_watch = now;	/* tried: wait for the next change */
}

static void
proxy_signal(evutil_socket_t sig, short what, void *arg)
{
	struct proxy	*p = arg;
	struct timeval	 tv;
	double		 d = p->p_gen->g_conf->c_limits.l_drain_timeout;

	(void)what;
	if (sig == SIGHUP) {
		if (atomic_load(&p->p_stopping) == 0)
			proxy_reload(p, "SIGHUP");
		return;
	}
	if (atomic_load(&p->p_stopping) == 0) {
		log_info("%s: draining %u open connections for up to %.1f s",
		    strsignal((int)sig), atomic_load(&p->p_active), d);
		atomic_store(&p->p_stopping, 1);
		tv.tv_sec = (time_t)d;
		tv.tv_usec = (suseconds_t)((d - (double)tv.tv_sec) * 1e6);
		evtimer_add(main_drain, &tv);
	} else {
		log_info("%s again: closing every connection now",
		    strsignal((int)sig));
		atomic_store(&p->p_stopping, 2);
	}
	proxy_wake_all(p);
}

static void
proxy_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct proxy	*p = arg;

	(void)fd;
	(void)what;
	log_info("drain_timeout reached: closing %u connections",
	    atomic_load(&p->p_active));
	atomic_store(&p->p_stopping, 2);
	proxy_wake_all(p);
}

/* Closes every listening socket once; shared unix ones are in each row. */
static void
proxy_close_listeners(struct proxy *p)
{
	size_t	i, k, nw = p->p_nworkers;
	int	lfd;

	for (i = 0; p->p_fds != NULL && i < p->p_nroutes; i++) {
		for (k = 0; k < nw; k++) {
			lfd = p->p_fds[i * nw + k];
			if (lfd != -1 && (k == 0 || lfd != p->p_fds[i * nw]))
				close(lfd);
		}
		for (k = 0; k < nw; k++)
			p->p_fds[i * nw + k] = -1;
	}
}

/* Every worker has stopped watching the listeners: close them. */
static void
proxy_unlisten(evutil_socket_t fd, short what, void *arg)
{
	struct proxy	*p = arg;
	size_t		 i, k;

	(void)fd;
	(void)what;
	proxy_close_listeners(p);
	for (k = 0; k < p->p_nworkers; k++)
		for (i = 0; i < p->p_nroutes; i++)
			p->p_workers[k].w_listeners[i].l_fd = -1;
	log_info("listeners closed: new connections are refused");
}

static void
proxy_workers_done(evutil_socket_t fd, short what, void *arg)
{
	struct proxy	*p = arg;

	(void)fd;
	(void)what;
	event_base_loopexit(p->p_base, NULL);
}

int
proxy_run(struct proxy *p)
{
	struct event	*sig[3] = { NULL, NULL, NULL };
	const int	 signos[3] = { SIGTERM, SIGINT, SIGHUP };
	struct timeval	 tv;
	sigset_t	 late;
	unsigned int	 k, started = 0;
	double		 ri = gen_reload_interval(p->p_gen);
	int		 rc = 1, i;

	if ((main_done = event_new(p->p_base, -1, 0, proxy_workers_done,
	    p)) == NULL || (main_drain = evtimer_new(p->p_base,
	    proxy_drain_timeout, p)) == NULL ||
	    (p->p_unlisten = event_new(p->p_base, -1, 0, proxy_unlisten,
	    p)) == NULL)
		goto out;
	for (i = 0; i < 3; i++) {
		sig[i] = evsignal_new(p->p_base, signos[i], proxy_signal, p);
		if (sig[i] == NULL || evsignal_add(sig[i], NULL) == -1)
			goto out;
	}
	/* Handled from here on: what main() held back may arrive now. */
	sigemptyset(&late);
	for (i = 0; i < 3; i++)
		sigaddset(&late, signos[i]);
	sigprocmask(SIG_UNBLOCK, &late, NULL);
	if (ri > 0) {
		tv.tv_sec = (time_t)ri;
		tv.tv_usec = (suseconds_t)((ri - (double)tv.tv_sec) * 1e6);
		if ((p->p_reload_timer = event_new(p->p_base, -1, EV_PERSIST,
		    proxy_reload_tick, p)) == NULL ||
		    event_add(p->p_reload_timer, &tv) == -1)
			goto out;
	}
	atomic_store(&workers_running, p->p_nworkers);
	for (k = 0; k < p->p_nworkers; k++) {
		if (pthread_create(&p->p_workers[k].w_thread, NULL,
		    proxy_worker_main, &p->p_workers[k]) != 0) {
			log_warnx("cannot start worker %u", k);
			break;
		}
		started++;
	}
	for (k = started; k < p->p_nworkers; k++)
		atomic_fetch_sub(&workers_running, 1);
	if (started == p->p_nworkers && (p->p_started == NULL ||
	    p->p_started(p->p_started_arg) == 0))
		rc = 0;
	pthread_mutex_lock(&p->p_go_mtx);
	p->p_go = rc == 0 ? 1 : -1;
	pthread_cond_broadcast(&p->p_go_cond);
	pthread_mutex_unlock(&p->p_go_mtx);
	if (rc == 0) {
		log_info("serving with %u worker%s", started,
		    started == 1 ? "" : "s");
		event_base_loop(p->p_base, EVLOOP_NO_EXIT_ON_EMPTY);
	}
	for (k = 0; k < started; k++)
		pthread_join(p->p_workers[k].w_thread, NULL);
	/* A late signal must not kill the clean exit half-way. */
	sigprocmask(SIG_BLOCK, &late, NULL);
	if (rc == 0)
		log_info("stopped");
out:
	for (i = 0; i < 3; i++)
		if (sig[i] != NULL)
			event_free(sig[i]);
	if (p->p_reload_timer != NULL) {
		event_free(p->p_reload_timer);
		p->p_reload_timer = NULL;
	}
	if (main_drain != NULL)
		event_free(main_drain);
	if (p->p_unlisten != NULL) {
		event_free(p->p_unlisten);
		p->p_unlisten = NULL;
	}
	if (main_done != NULL)
		event_free(main_done);
	main_drain = main_done = NULL;
	return rc;
}

void
proxy_free(struct proxy *p)
{
	struct worker	*w;
	void		*b;
	size_t		 i, k, nw;

	if (p == NULL)
		return;
	nw = p->p_nworkers;
	admin_free(p->p_admin);
	for (k = 0; p->p_workers != NULL && k < nw; k++) {
		w = &p->p_workers[k];
		for (i = 0; w->w_listeners != NULL &&
		    i < w->w_nlisteners; i++) {
			if (w->w_listeners[i].l_fd != -1) {
				event_del(&w->w_listeners[i].l_ev);
				evtimer_del(&w->w_listeners[i].l_pause);
			}
		}
		while ((b = w->w_freebufs) != NULL) {
			w->w_freebufs = *(void **)b;
			free(b);
		}
		free(w->w_listeners);
		if (w->w_wake != NULL)
			event_free(w->w_wake);
		if (w->w_spare_fd != -1)
			close(w->w_spare_fd);
		if (w->w_dns != NULL)
			evdns_base_free(w->w_dns, 1);
		if (w->w_base != NULL)
			event_base_free(w->w_base);
		gen_unref(w->w_gen_next);
		gen_unref(w->w_gen);
		pthread_mutex_destroy(&w->w_mtx);
	}
	proxy_close_listeners(p);
	free(p->p_fds);
	free(p->p_workers);
	if (p->p_base != NULL)
		event_base_free(p->p_base);
	stats_free(&p->p_stats);
	gen_unref(p->p_gen);
	pthread_cond_destroy(&p->p_go_cond);
	pthread_mutex_destroy(&p->p_go_mtx);
	free(p);
}
