/*
 * Counters behind /metrics: written by every worker with relaxed atomics,
 * read by the admin endpoint.  Indexed by route position, which a reload
 * never changes.
 */
#ifndef MTLSD_STATS_H
#define MTLSD_STATS_H

#include <stdatomic.h>
#include <stddef.h>

#include "mtlsd/tls.h"

enum stats_result {
	RESULT_OK,
	RESULT_HANDSHAKE_FAILED,
	RESULT_IDENTITY_REJECTED,
	RESULT_TARGET_FAILED,
	RESULT_TIMEOUT,
	RESULT_LIMIT,
	RESULT_ERROR,		/* an end failed after the handshake */
	RESULT__COUNT
};

#define STATS_HS_BUCKETS	12

struct route_stats {
	atomic_ulong		 rs_conns[RESULT__COUNT];
	atomic_long		 rs_active;
	atomic_ulong		 rs_bytes_in;
	atomic_ulong		 rs_bytes_out;
	atomic_ulong		 rs_rejections[REASON__COUNT];
};

struct stats {
	struct route_stats	*st_routes;
	size_t			 st_nroutes;
	atomic_ulong		 st_hs_buckets[STATS_HS_BUCKETS + 1];
	atomic_ulong		 st_hs_sum_us;
	atomic_ulong		 st_hs_count;
	atomic_ulong		 st_reloads_ok;
	atomic_ulong		 st_reloads_failed;
};

int	 stats_init(struct stats *st, size_t nroutes);
void	 stats_free(struct stats *st);

const char *stats_result_name(enum stats_result r);

void	 stats_conn_open(struct stats *st, size_t route);
/* A finished connection; reason counts only for rejections. */
void	 stats_conn_close(struct stats *st, size_t route,
	    enum stats_result r, enum tls_reason reason, int was_open,
	    unsigned long in, unsigned long out);
void	 stats_handshake(struct stats *st, double seconds);

/* The upper bounds of the handshake histogram, in seconds. */
extern const double stats_hs_bounds[STATS_HS_BUCKETS];

#endif
