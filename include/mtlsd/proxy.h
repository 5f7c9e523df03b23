/*
 * The proxy: listeners, workers (one event loop each), and the sessions
 * they carry.  main.c sees proxy_*; proxy.c and session.c share the rest.
 */
#ifndef MTLSD_PROXY_H
#define MTLSD_PROXY_H

#include <sys/queue.h>
#include <sys/socket.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "mtlsd/conf.h"
#include "mtlsd/tls.h"

#define PROXY_BUFSZ	(16 * 1024)	/* one TLS record */

struct proxy;
struct session;

/* One route's listening socket as one worker sees it. */
struct listener {
	struct worker		*l_worker;
	const struct route	*l_route;
	struct tls_route	*l_tls;
	int			 l_fd;
	struct event		 l_ev;
	struct event		 l_pause;	/* re-enable after EMFILE */
};

struct worker {
	struct proxy		*w_proxy;
	unsigned int		 w_id;
	struct event_base	*w_base;
	struct evdns_base	*w_dns;
	pthread_t		 w_thread;
	struct listener		*w_listeners;
	size_t			 w_nlisteners;
	struct event		*w_wake;	/* the main thread's requests */
	int			 w_draining;
	TAILQ_HEAD(, session)	 w_sessions;
	void			*w_freebufs;	/* a short free list */
	unsigned int		 w_nfreebufs;
};

struct proxy {
	const struct conf	*p_conf;
	struct tls_route	**p_tls;	/* one per route */
	struct worker		*p_workers;
	unsigned int		 p_nworkers;
	int			*p_fds;		/* [route][worker] */
	atomic_uint		 p_active;	/* client connections */
	atomic_int		 p_stopping;	/* 1 drain, 2 close now */
	pthread_mutex_t		 p_go_mtx;	/* workers wait for the check */
	pthread_cond_t		 p_go_cond;
	int			 p_go;		/* 0 wait, 1 serve, -1 stop */
	/* Runs once every worker thread exists, before any serves. */
	int			(*p_started)(void *);
	void			*p_started_arg;
};

/* Builds the workers of conf; the contexts must outlive the proxy. */
struct proxy	*proxy_new(const struct conf *conf, struct tls_route **tls);

/* Binds every listener.  Before privileges are dropped. */
int		 proxy_bind(struct proxy *p);

/* Serves until SIGTERM/SIGINT and the drain; returns the exit status. */
int		 proxy_run(struct proxy *p);
void		 proxy_free(struct proxy *p);

/* session.c */
void		 session_accept(struct listener *l, int fd,
		    const struct sockaddr *sa, socklen_t salen);
void		 session_close_all(struct worker *w, const char *reason);
unsigned int	 session_count(struct worker *w);

#endif
