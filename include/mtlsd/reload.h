/*
 * Generations of configuration.  A generation is one loaded configuration
 * with the TLS contexts of its routes, reference counted: a worker holds
 * the current one, a session the one it was accepted under, so a reload
 * swaps in new material while open connections keep the old until they
 * close.
 */
#ifndef MTLSD_RELOAD_H
#define MTLSD_RELOAD_H

#include <sys/types.h>

#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "mtlsd/conf.h"
#include "mtlsd/tls.h"

struct gen {
	atomic_uint		  g_refs;
	unsigned int		  g_id;		/* 1, 2, ... per reload */
	struct conf		 *g_conf;
	struct tls_route	**g_tls;	/* one per route */
};

/*
 * Loads the file at path and builds every route's context.  Errors go to
 * errf ("FILE:LINE: ..."); returns NULL then.  The new generation holds
 * one reference.
 */
struct gen	*gen_load(const char *path, unsigned int id, FILE *errf);
void		 gen_ref(struct gen *g);
void		 gen_unref(struct gen *g);

/*
 * Whether next may replace cur without a restart: the same routes, in
 * the same order, on the same listen addresses.  -1 with err if not.
 */
int		 gen_compatible(const struct gen *cur, const struct gen *next,
		    char *err, size_t errlen);

/* What reload_interval compares: every file a generation read. */
#define WATCH_MAX	64
struct watch {
	size_t			 wa_n;
	struct watch_file {
		dev_t		 wf_dev;
		ino_t		 wf_ino;
		off_t		 wf_size;
		struct timespec	 wf_mtime;
		struct timespec	 wf_ctime;
		int		 wf_missing;
	}			 wa_files[WATCH_MAX];
};

/* Stats (following symlinks) every file of g; a Kubernetes ..data swap
 * changes the inode behind the path, an in-place rewrite its mtime. */
void		 watch_snapshot(const struct gen *g, struct watch *w);
int		 watch_equal(const struct watch *a, const struct watch *b);

/* The smallest positive reload_interval of any route, or 0. */
double		 gen_reload_interval(const struct gen *g);

#endif
