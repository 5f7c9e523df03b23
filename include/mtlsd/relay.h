/*
 * The relay between the two ends of a session; see relay.c.
 */
#ifndef MTLSD_RELAY_H
#define MTLSD_RELAY_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/ssl.h>

struct session;
struct worker;

/* What one end of a session is waiting for. */
enum want {
	WANT_NOTHING = 0,
	WANT_READ = EV_READ,
	WANT_WRITE = EV_WRITE
};

struct end {
	struct session		*e_s;
	int			 e_fd;
	SSL			*e_ssl;		/* NULL on the plaintext side */
	struct event		 e_rev;
	struct event		 e_wev;
	unsigned int		 e_rarmed:1;
	unsigned int		 e_warmed:1;
	unsigned int		 e_evset:1;
	unsigned int		 e_eof:1;	/* nothing more to read */
	unsigned int		 e_shut:1;	/* we sent FIN/close_notify */
	unsigned int		 e_notified:1;	/* libssl has our close_notify */
	enum want		 e_rd_want;
	enum want		 e_wr_want;
	/*
	 * What the last read (write) that would block waited for, until
	 * the poller says it happened: trying again before then would be
	 * a system call that can only say "would block".
	 */
	enum want		 e_rd_wait;
	enum want		 e_wr_wait;
	int			 e_errno;
	/* TLS ends: bytes libssl wrote that the socket has not taken yet. */
	char			*e_obuf;
	size_t			 e_ooff;
	size_t			 e_olen;
	size_t			 e_ocap;
};

/* One direction of the relay: src -> buf -> dst. */
struct flow {
	struct end		*f_src;
	struct end		*f_dst;
	char			*f_buf;
	size_t			 f_off;
	size_t			 f_len;
	uint64_t		 f_bytes;
};

/*
 * A TLS end whose queue holds more than this is not read until it has
 * drained: the relay queues at most one record of data on an end, so
 * only a peer that asks libssl for answers (key updates) without reading
 * them gets there.
 */
#define END_QUEUE_READ_MAX	((size_t)32 * 1024)

/* Sets up e's two events on fd; cb gets e as its argument. */
void	 end_init(struct end *e, struct session *s, struct event_base *base,
	    int fd, event_callback_fn cb);

/* Waits for exactly what is asked: a level-triggered wish list. */
void	 end_arm(struct end *e, int rd, int wr);

/*
 * Puts e_ssl on e's socket through the end's own BIO (endbio.c): libssl
 * reads from the socket, and its writes never have to be retried (what
 * the socket does not take waits in e_obuf).  Returns -1 on failure.
 */
int	 end_tls_attach(struct end *e);

/*
 * One send(2) of buf on e's socket.  Returns bytes sent, 0 when the
 * socket is full (e_wr_want and e_wr_wait say WANT_WRITE), -1 on error
 * (e_errno set).  len must not be 0.
 */
ssize_t	 end_send(struct end *e, const char *buf, size_t len);

/*
 * Sends what waits in e's queue.  Returns 1 when it is empty, 0 when the
 * socket is full (e_wr_want and e_wr_wait say WANT_WRITE), -1 on error
 * (e_errno set).
 */
int	 end_flush(struct end *e);

/* Drops what waits in e's queue (the end is going away). */
void	 end_queue_free(struct end *e);

/*
 * The handshake is over and the peer accepted: from now on one read(2)
 * may fetch several TLS records (before, a stranger could pin the big
 * buffer with a partial record).
 */
void	 end_tls_established(struct end *e);

/* The poller saw what (EV_READ, EV_WRITE) on e: clears what waited on it. */
void	 end_ready(struct end *e, short what);

/* Frees the SSL and closes the socket; abort sends a reset. */
void	 end_close(struct end *e, int abort);

/*
 * Moves what it can from f_src to f_dst.  Returns -1 when an end failed
 * (*which says 0 src, 1 dst), else 0.  Progress is stamped into *last;
 * when the turn's budget runs out, kick is made active to go on.
 */
int	 flow_run(struct flow *f, struct worker *w, struct timespec *last,
	    struct event *kick, int *which);

/* The direction has ended: source at EOF, buffer empty, end passed on. */
int	 flow_done(const struct flow *f);

#endif
