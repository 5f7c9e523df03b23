/*
 * Generations: load, check, reference counts, and the file stamps that
 * reload_interval compares.
 */
#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtlsd/conf.h"
#include "mtlsd/reload.h"
#include "mtlsd/tls.h"

struct gen *
gen_load(const char *path, unsigned int id, FILE *errf)
{
	struct gen	*g;
	size_t		 i;
	int		 bad = 0;

	if ((g = calloc(1, sizeof(*g))) == NULL) {
		fprintf(errf, "%s: out of memory\n", path);
		return NULL;
	}
	atomic_init(&g->g_refs, 1);
	g->g_id = id;
	if (conf_load(path, errf, &g->g_conf) == -1)
		goto fail;
	/* An array of pointers, one per route. */
	if ((g->g_tls = calloc(g->g_conf->c_nroutes,
	    sizeof(struct tls_route *))) == NULL) {
		fprintf(errf, "%s: out of memory\n", path);
		goto fail;
	}
	/* Every route is tried so that every broken one is reported. */
	for (i = 0; i < g->g_conf->c_nroutes; i++)
		if ((g->g_tls[i] = tls_route_new(g->g_conf,
		    &g->g_conf->c_routes[i], errf)) == NULL)
			bad = 1;
	if (bad)
		goto fail;
	return g;
fail:
	gen_unref(g);
	return NULL;
}

void
gen_ref(struct gen *g)
{
	atomic_fetch_add_explicit(&g->g_refs, 1, memory_order_relaxed);
}

void
gen_unref(struct gen *g)
{
	size_t	i;

	if (g == NULL ||
	    atomic_fetch_sub_explicit(&g->g_refs, 1, memory_order_acq_rel) != 1)
		return;
	for (i = 0; g->g_tls != NULL && i < g->g_conf->c_nroutes; i++)
		tls_route_free(g->g_tls[i]);
	free(g->g_tls);
	conf_free(g->g_conf);
	free(g);
}

int
gen_compatible(const struct gen *cur, const struct gen *next, char *err,
    size_t errlen)
{
	const struct conf	*a = cur->g_conf, *b = next->g_conf;
	const struct route	*ra, *rb;
	size_t			 i;

	if (a->c_nroutes != b->c_nroutes) {
		snprintf(err, errlen, "the number of routes changed (%zu to "
		    "%zu): restart mtlsd to apply", a->c_nroutes, b->c_nroutes);
		return -1;
	}
	for (i = 0; i < a->c_nroutes; i++) {
		ra = &a->c_routes[i];
		rb = &b->c_routes[i];
		if (strcmp(ra->r_name, rb->r_name) != 0 ||
		    ra->r_dir != rb->r_dir) {
			snprintf(err, errlen, "route %s was renamed, moved or "
			    "changed direction: restart mtlsd to apply",
			    ra->r_name);
			return -1;
		}
		if (ra->r_listen.a_kind != rb->r_listen.a_kind ||
		    ra->r_listen.a_sslen != rb->r_listen.a_sslen ||
		    memcmp(&ra->r_listen.a_ss, &rb->r_listen.a_ss,
		    ra->r_listen.a_sslen) != 0) {
			snprintf(err, errlen, "route %s: listen changed: "
			    "restart mtlsd to apply", ra->r_name);
			return -1;
		}
	}
	if (a->c_workers != b->c_workers || (a->c_admin_enabled !=
	    b->c_admin_enabled) || a->c_seccomp != b->c_seccomp) {
		snprintf(err, errlen, "workers, admin or sandbox changed: "
		    "restart mtlsd to apply");
		return -1;
	}
	return 0;
}

static void
watch_add(struct watch *w, const char *path)
{
	struct watch_file	*f;
	struct stat		 st;

	if (path == NULL || w->wa_n == WATCH_MAX)
		return;
	f = &w->wa_files[w->wa_n++];
	memset(f, 0, sizeof(*f));
	if (stat(path, &st) == -1) {
		f->wf_missing = 1;
		return;
	}
	f->wf_dev = st.st_dev;
	f->wf_ino = st.st_ino;
	f->wf_size = st.st_size;
	f->wf_mtime = st.st_mtim;
	f->wf_ctime = st.st_ctim;
}

void
watch_snapshot(const struct gen *g, struct watch *w)
{
	const struct tls_conf	*tc;
	size_t			 i;

	memset(w, 0, sizeof(*w));
	watch_add(w, g->g_conf->c_path);
	for (i = 0; i < g->g_conf->c_nroutes; i++) {
		tc = &g->g_conf->c_routes[i].r_tls;
		watch_add(w, tc->tc_cert);
		watch_add(w, tc->tc_key);
		watch_add(w, tc->tc_ca);
		watch_add(w, tc->tc_crl);
	}
}

int
watch_equal(const struct watch *a, const struct watch *b)
{
	return a->wa_n == b->wa_n && memcmp(a->wa_files, b->wa_files,
	    a->wa_n * sizeof(a->wa_files[0])) == 0;
}

double
gen_reload_interval(const struct gen *g)
{
	double	v, min = 0;
	size_t	i;

	for (i = 0; i < g->g_conf->c_nroutes; i++) {
		v = g->g_conf->c_routes[i].r_tls.tc_reload_interval;
		if (v > 0 && (min == 0 || v < min))
			min = v;
	}
	return min;
}
