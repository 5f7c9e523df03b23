/*
 * Workers and listeners.
 *
 * Each worker is one thread with its own event_base; a TCP listener has
 * one socket per worker (SO_REUSEPORT, the kernel spreads connections),
 * a unix listener one socket that every worker watches.  Workers share
 * nothing on the hot path but the read-only configuration and TLS
 * contexts and one atomic connection count.  The main thread keeps its
 * own event_base for signals and the drain.
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
#include <event2/thread.h>

#include "mtlsd/addr.h"
#include "mtlsd/conf.h"
#include "mtlsd/log.h"
#include "mtlsd/proxy.h"
#include "mtlsd/tls.h"

#define ACCEPT_BATCH		32
#define LISTEN_BACKLOG		1024
#define MAX_WORKERS		64

static void	proxy_accept(evutil_socket_t, short, void *);
static void	proxy_resume(evutil_socket_t, short, void *);
static void	proxy_wake(evutil_socket_t, short, void *);
static void	proxy_signal(evutil_socket_t, short, void *);
static void	proxy_drain_timeout(evutil_socket_t, short, void *);
static void	proxy_workers_done(evutil_socket_t, short, void *);
static void	*proxy_worker_main(void *);
static int	proxy_listen_one(const struct route *, int, int);

/* The main thread's loop: signals, the drain, the end of the workers. */
static struct event_base	*main_base;
static struct event		*main_done;
static struct event		*main_drain;
static atomic_uint		 workers_running;

struct proxy *
proxy_new(const struct conf *conf, struct tls_route **tls)
{
	struct proxy	*p;
	struct worker	*w;
	struct listener	*l;
	long		 ncpu;
	size_t		 i, k;
	int		 need_dns = 0;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->p_conf = conf;
	p->p_tls = tls;
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
	for (k = 0; k < p->p_nworkers; k++) {
		w = &p->p_workers[k];
		w->w_proxy = p;
		w->w_id = (unsigned int)k;
		TAILQ_INIT(&w->w_sessions);
		if ((w->w_base = event_base_new()) == NULL)
			goto fail;
		/* Resolver state is read now, before any sandbox. */
		if (need_dns && (w->w_dns = evdns_base_new(w->w_base,
		    EVDNS_BASE_INITIALIZE_NAMESERVERS |
		    EVDNS_BASE_DISABLE_WHEN_INACTIVE)) == NULL)
			goto fail;
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
			l->l_route = &conf->c_routes[i];
			l->l_tls = tls[i];
			l->l_fd = -1;
		}
	}
	return p;
fail:
	log_warnx("cannot set up the event loops: out of memory");
	proxy_free(p);
	return NULL;
}

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
	const struct conf	*conf = p->p_conf;
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

static void
proxy_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct listener		*l = arg;
	struct proxy		*p = l->l_worker->w_proxy;
	struct sockaddr_storage	 ss;
	struct timeval		 pause = { 1, 0 };
	struct linger		 lg = { 1, 0 };
	socklen_t		 len;
	unsigned int		 n, max = p->p_conf->c_limits.l_max_connections;
	char			 peer[ADDR_STR_MAX];
	int			 fd, i;

	(void)what;
	for (i = 0; i < ACCEPT_BATCH; i++) {
		len = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/*
			 * Out of descriptors or memory: stop accepting for a
			 * moment instead of spinning on a ready listener.
			 */
			log_warn("route %s: accept (pausing 1 s)",
			    l->l_route->r_name);
			event_del(&l->l_ev);
			evtimer_add(&l->l_pause, &pause);
			return;
		}
		n = atomic_fetch_add(&p->p_active, 1) + 1;
		if (n > max) {
			atomic_fetch_sub(&p->p_active, 1);
			if (log_reject_allowed()) {
				addr_sockaddr_str((struct sockaddr *)&ss, len,
				    peer, sizeof(peer));
				log_warnx("route %s: peer %s refused: "
				    "max_connections (%u) reached; result=limit",
				    l->l_route->r_name, peer, max);
			}
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(fd);
			continue;
		}
		session_accept(l, fd, (struct sockaddr *)&ss, len);
	}
}

/* The main thread asked this worker to drain or to stop. */
static void
proxy_wake(evutil_socket_t fd, short what, void *arg)
{
	struct worker	*w = arg;
	struct proxy	*p = w->w_proxy;
	size_t		 i;

	(void)fd;
	(void)what;
	if (!w->w_draining) {
		w->w_draining = 1;
		for (i = 0; i < w->w_nlisteners; i++) {
			event_del(&w->w_listeners[i].l_ev);
			evtimer_del(&w->w_listeners[i].l_pause);
		}
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

static void
proxy_signal(evutil_socket_t sig, short what, void *arg)
{
	struct proxy	*p = arg;
	struct timeval	 tv;
	double		 d = p->p_conf->c_limits.l_drain_timeout;

	(void)what;
	if (sig == SIGHUP) {
		log_warnx("SIGHUP: reload is not implemented in this build; "
		    "the running material is unchanged");
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

static void
proxy_workers_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	event_base_loopexit(main_base, NULL);
}

int
proxy_run(struct proxy *p)
{
	struct event	*sig[3] = { NULL, NULL, NULL };
	const int	 signos[3] = { SIGTERM, SIGINT, SIGHUP };
	unsigned int	 k, started = 0;
	int		 rc = 1, i;

	if ((main_base = event_base_new()) == NULL)
		return 1;
	if ((main_done = event_new(main_base, -1, 0, proxy_workers_done,
	    p)) == NULL || (main_drain = evtimer_new(main_base,
	    proxy_drain_timeout, p)) == NULL)
		goto out;
	for (i = 0; i < 3; i++) {
		sig[i] = evsignal_new(main_base, signos[i], proxy_signal, p);
		if (sig[i] == NULL || evsignal_add(sig[i], NULL) == -1)
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
		event_base_loop(main_base, EVLOOP_NO_EXIT_ON_EMPTY);
	}
	for (k = 0; k < started; k++)
		pthread_join(p->p_workers[k].w_thread, NULL);
	if (rc == 0)
		log_info("stopped");
out:
	for (i = 0; i < 3; i++)
		if (sig[i] != NULL)
			event_free(sig[i]);
	if (main_drain != NULL)
		event_free(main_drain);
	if (main_done != NULL)
		event_free(main_done);
	event_base_free(main_base);
	main_base = NULL;
	main_drain = main_done = NULL;
	return rc;
}

void
proxy_free(struct proxy *p)
{
	struct worker	*w;
	size_t		 i, k, nw;

	if (p == NULL)
		return;
	nw = p->p_nworkers;
	for (k = 0; p->p_workers != NULL && k < nw; k++) {
		w = &p->p_workers[k];
		for (i = 0; w->w_listeners != NULL &&
		    i < w->w_nlisteners; i++) {
			if (w->w_listeners[i].l_fd != -1) {
				event_del(&w->w_listeners[i].l_ev);
				evtimer_del(&w->w_listeners[i].l_pause);
			}
		}
		while (w->w_freebufs != NULL) {
			void *b = w->w_freebufs;

			w->w_freebufs = *(void **)b;
			free(b);
		}
		free(w->w_listeners);
		if (w->w_wake != NULL)
			event_free(w->w_wake);
		if (w->w_dns != NULL)
			evdns_base_free(w->w_dns, 1);
		if (w->w_base != NULL)
			event_base_free(w->w_base);
	}
	for (i = 0; p->p_fds != NULL && i < p->p_conf->c_nroutes; i++)
		for (k = 0; k < nw; k++) {
			/* Shared unix sockets appear once per worker. */
			if (p->p_fds[i * nw + k] != -1 &&
			    (k == 0 || p->p_fds[i * nw + k] !=
			    p->p_fds[i * nw]))
				close(p->p_fds[i * nw + k]);
		}
	free(p->p_fds);
	free(p->p_workers);
	pthread_cond_destroy(&p->p_go_cond);
	pthread_mutex_destroy(&p->p_go_mtx);
	free(p);
}
