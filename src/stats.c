/*
 * Counters for /metrics.  Relaxed atomics: each counter is exact on its
 * own, and a scrape needs no consistency between two of them.
 */
#include <stdlib.h>
#include <string.h>

#include "mtlsd/stats.h"
#include "mtlsd/tls.h"

const double stats_hs_bounds[STATS_HS_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1.0, 5.0
};

static const char *const result_names[RESULT__COUNT] = {
	"ok", "handshake_failed", "identity_rejected", "target_failed",
	"timeout", "limit", "error"
};

const char *
stats_result_name(enum stats_result r)
{
	if ((unsigned)r >= RESULT__COUNT)
		return "error";
	return result_names[r];
}

int
stats_init(struct stats *st, size_t nroutes)
{
	memset(st, 0, sizeof(*st));
	if ((st->st_routes = calloc(nroutes, sizeof(*st->st_routes))) == NULL)
		return -1;
	st->st_nroutes = nroutes;
	return 0;
}

void
stats_free(struct stats *st)
{
	free(st->st_routes);
	st->st_routes = NULL;
	st->st_nroutes = 0;
}

void
stats_conn_open(struct stats *st, size_t route)
{
	atomic_fetch_add_explicit(&st->st_routes[route].rs_active, 1,
	    memory_order_relaxed);
}

void
stats_conn_close(struct stats *st, size_t route, enum stats_result r,
    enum tls_reason reason, int was_open, unsigned long in,
    unsigned long out)
{
	struct route_stats	*rs = &st->st_routes[route];

	if ((unsigned)r >= RESULT__COUNT)
		r = RESULT_ERROR;
	atomic_fetch_add_explicit(&rs->rs_conns[r], 1, memory_order_relaxed);
	if (was_open)
		atomic_fetch_sub_explicit(&rs->rs_active, 1,
		    memory_order_relaxed);
	atomic_fetch_add_explicit(&rs->rs_bytes_in, in, memory_order_relaxed);
	atomic_fetch_add_explicit(&rs->rs_bytes_out, out,
	    memory_order_relaxed);
	if (reason != REASON_NONE && (unsigned)reason < REASON__COUNT)
		atomic_fetch_add_explicit(&rs->rs_rejections[reason], 1,
		    memory_order_relaxed);
}

void
stats_handshake(struct stats *st, double seconds)
{
	int	i;

	for (i = 0; i < STATS_HS_BUCKETS; i++)
		if (seconds <= stats_hs_bounds[i])
			break;
	/* Buckets hold their own count; the exposition sums them up. */
	atomic_fetch_add_explicit(&st->st_hs_buckets[i], 1,
	    memory_order_relaxed);
	atomic_fetch_add_explicit(&st->st_hs_sum_us,
	    (unsigned long)(seconds * 1e6), memory_order_relaxed);
	atomic_fetch_add_explicit(&st->st_hs_count, 1, memory_order_relaxed);
}
