/*
 * The proxy: listeners, workers (one event loop each), and the sessions
 * they carry.  main.c sees proxy_*; proxy.c, session.c and admin.c share
 * the rest.
 */
#ifndef MTLSD_PROXY_H
#define MTLSD_PROXY_H

#include <sys/queue.h>
#include <sys/socket.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "mtlsd/conf.h"
#include "mtlsd/reload.h"
#include "mtlsd/sandbox.h"
#include "mtlsd/stats.h"
#include "mtlsd/tls.h"

#define PROXY_BUFSZ	((size_t)32 * 1024)	/* two TLS records */

struct admin;
struct proxy;
struct session;

/* One route's listening socket as one worker sees it. */
struct listener {
	struct worker		*l_worker;
	size_t			 l_index;	/* the route's position */
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
	struct gen		*w_gen;		/* new sessions use this */
	pthread_mutex_t		 w_mtx;
	struct gen		*w_gen_next;	/* set by main, under w_mtx */
	struct listener		*w_listeners;
	size_t			 w_nlisteners;
	struct event		*w_wake;	/* the main thread's requests */
	int			 w_draining;
	int			 w_spare_fd;	/* given up to refuse, at EMFILE */
	time_t			 w_trimmed;	/* last malloc_trim(), seconds */
	TAILQ_HEAD(, session)	 w_sessions;
	void			*w_freebufs;	/* a short free list */
	unsigned int		 w_nfreebufs;
};

struct proxy {
	struct gen		*p_gen;		/* the current generation */
	const char		*p_path;	/* configuration file */
	struct event_base	*p_base;	/* main thread: signals, admin */
	struct worker		*p_workers;
	unsigned int		 p_nworkers;
	size_t			 p_nroutes;	/* fixed for the process */
	int			*p_fds;		/* [route][worker] */
	atomic_uint		 p_active;	/* client connections */
	atomic_int		 p_stopping;	/* 1 drain, 2 close now */
	atomic_uint		 p_released;	/* workers done with listeners */
	struct event		*p_unlisten;	/* main: close the listeners */
	struct stats		 p_stats;
	struct admin		*p_admin;
	const struct sandbox	*p_sandbox;
	time_t			 p_started_at;
	/* Last reload: main thread only. */
	time_t			 p_reload_time;
	int			 p_reload_ok;
	char			 p_reload_error[512];
	struct watch		 p_watch;	/* files as last loaded */
	struct watch		 p_watch_seen;	/* as seen at the last tick */
	struct event		*p_reload_timer;
	pthread_mutex_t		 p_go_mtx;	/* workers wait for the check */
	pthread_cond_t		 p_go_cond;
	int			 p_go;		/* 0 wait, 1 serve, -1 stop */
	/* Runs once every worker thread exists, before any serves. */
	int			(*p_started)(void *);
	void			*p_started_arg;
};

/* Builds the workers of g (taking a reference) for the file at path. */
struct proxy	*proxy_new(struct gen *g, const char *path);

/* Binds every listener and the admin endpoint.  Before the sandbox. */
int		 proxy_bind(struct proxy *p);

/* Serves until SIGTERM/SIGINT and the drain; returns the exit status. */
int		 proxy_run(struct proxy *p);
void		 proxy_free(struct proxy *p);

/* Loads the configuration again and swaps it in if it is good. */
int		 proxy_reload(struct proxy *p, const char *why);

/* session.c */
void		 session_accept(struct listener *l, int fd,
		    const struct sockaddr *sa, socklen_t salen);
void		 session_close_all(struct worker *w, const char *reason);

#endif
