/*
 * The relay: one end of a session (a socket, with TLS or without) and one
 * direction of its traffic.  A direction reads from its source only while
 * its buffer is empty, so a peer that stops reading stops the other side
 * too; end of stream travels across (FIN <-> close_notify).
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "mtlsd/proxy.h"
#include "mtlsd/relay.h"

#define FLOW_BUDGET		4	/* buffers a direction moves per turn */
#define TLS_RECORD_MAX		16384	/* plaintext of one TLS record */
#define WORKER_FREEBUFS		64
/*
 * libssl's read-ahead buffer once the peer is known: four full records a
 * read(2), which also means fewer window updates to the sender.
 */
#define TLS_READ_BUFSZ		((size_t)4 * (TLS_RECORD_MAX + 256))

static ssize_t	end_read(struct end *, char *, size_t);
static ssize_t	end_write(struct end *, const char *, size_t);
static int	end_shutdown(struct end *);

void
end_init(struct end *e, struct session *s, struct event_base *base, int fd,
    event_callback_fn cb)
{
	e->e_s = s;
	e->e_fd = fd;
	event_assign(&e->e_rev, base, fd, EV_READ | EV_PERSIST, cb, e);
	event_assign(&e->e_wev, base, fd, EV_WRITE | EV_PERSIST, cb, e);
	e->e_evset = 1;
}

void
end_arm(struct end *e, int rd, int wr)
{
	if (!e->e_evset)
		return;
	if (rd && !e->e_rarmed)
		event_add(&e->e_rev, NULL);
	else if (!rd && e->e_rarmed)
		event_del(&e->e_rev);
	if (wr && !e->e_warmed)
		event_add(&e->e_wev, NULL);
	else if (!wr && e->e_warmed)
		event_del(&e->e_wev);
	e->e_rarmed = rd != 0;
	e->e_warmed = wr != 0;
}

void
end_tls_established(struct end *e)
{
	SSL_set_default_read_buffer_len(e->e_ssl, TLS_READ_BUFSZ);
}

void
end_ready(struct end *e, short what)
{
	if (e->e_rd_wait & what)
		e->e_rd_wait = WANT_NOTHING;
	if (e->e_wr_wait & what)
		e->e_wr_wait = WANT_NOTHING;
}

void
end_close(struct end *e, int abort)
{
	struct linger	lg = { 1, 0 };

	if (e->e_evset) {
		event_del(&e->e_rev);
		event_del(&e->e_wev);
		e->e_evset = 0;
	}
	if (e->e_ssl != NULL) {
		SSL_free(e->e_ssl);	/* and its BIO, which does not own the fd */
		e->e_ssl = NULL;
	}
	end_queue_free(e);
	if (e->e_fd != -1) {
		/* A reset tells the other side it did not see a clean end. */
		if (abort)
			setsockopt(e->e_fd, SOL_SOCKET, SO_LINGER, &lg,
			    sizeof(lg));
		close(e->e_fd);
		e->e_fd = -1;
	}
}

/*
 * Reads into buf.  Returns bytes read, 0 when it would block (e_rd_want
 * says on what), -2 at end of stream, -1 on error (e_errno set).
 */
static ssize_t
end_read(struct end *e, char *buf, size_t len)
{
	ssize_t	n;

	e->e_rd_want = WANT_NOTHING;
	if (e->e_ssl == NULL) {
		for (;;) {
			n = recv(e->e_fd, buf, len, 0);
			if (n > 0)
				return n;
			if (n == 0)
				return -2;
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				e->e_rd_want = e->e_rd_wait = WANT_READ;
				return 0;
			}
			e->e_errno = errno;
			return -1;
		}
	}
	ERR_clear_error();
	n = SSL_read(e->e_ssl, buf, (int)len);
	if (n > 0)
		return n;
	switch (SSL_get_error(e->e_ssl, (int)n)) {
	case SSL_ERROR_WANT_READ:
		e->e_rd_want = e->e_rd_wait = WANT_READ;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		e->e_rd_want = e->e_rd_wait = WANT_WRITE;
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		/* close_notify, or a bare FIN (SSL_OP_IGNORE_UNEXPECTED_EOF) */
		return -2;
	case SSL_ERROR_SYSCALL:
		e->e_errno = errno;
		return -1;
	default:
		e->e_errno = 0;
		return -1;
	}
}

ssize_t
end_send(struct end *e, const char *buf, size_t len)
{
	ssize_t	n;

	for (;;) {
		n = send(e->e_fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			e->e_wr_want = e->e_wr_wait = WANT_WRITE;
			return 0;
		}
		e->e_errno = errno;
		return -1;
	}
}

/* As end_read, for writing; never returns -2. */
static ssize_t
end_write(struct end *e, const char *buf, size_t len)
{
	ssize_t	n;

	e->e_wr_want = WANT_NOTHING;
	if (e->e_ssl == NULL)
		return end_send(e, buf, len);
	ERR_clear_error();
	n = SSL_write(e->e_ssl, buf, (int)len);
	if (n > 0)
		return n;
	switch (SSL_get_error(e->e_ssl, (int)n)) {
	case SSL_ERROR_WANT_READ:
		e->e_wr_want = e->e_wr_wait = WANT_READ;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		e->e_wr_want = e->e_wr_wait = WANT_WRITE;
		return 0;
	default:
		e->e_errno = errno;
		return -1;
	}
}

/*
 * Ends our sending on e: close_notify then FIN on the TLS side, FIN on
 * the plaintext side.  Returns 1 done, 0 would block, -1 error.
 */
static int
end_shutdown(struct end *e)
{
	int	r;

	e->e_wr_want = WANT_NOTHING;
	if (e->e_ssl != NULL) {
		if (!e->e_notified) {
			ERR_clear_error();
			if ((r = SSL_shutdown(e->e_ssl)) < 0) {
				switch (SSL_get_error(e->e_ssl, r)) {
				case SSL_ERROR_WANT_WRITE:
					e->e_wr_want = WANT_WRITE;
					return 0;
				case SSL_ERROR_WANT_READ:
					e->e_wr_want = WANT_READ;
					return 0;
				default:
					ERR_clear_error();
					return -1;
				}
			}
			e->e_notified = 1;
		}
		/* The close_notify, and all before it, go before the FIN. */
		if ((r = end_flush(e)) != 1)
			return r;
	}
	if (shutdown(e->e_fd, SHUT_WR) == -1 && errno != ENOTCONN) {
		e->e_errno = errno;
		return -1;
	}
	e->e_shut = 1;
	return 1;
}

int
flow_run(struct flow *f, struct worker *w, struct timespec *last,
    struct event *kick, int *which)
{
	ssize_t		 n;
	int		 budget = FLOW_BUDGET, drained = 0, moved = 0;

	f->f_src->e_rd_want = WANT_NOTHING;
	f->f_dst->e_wr_want = WANT_NOTHING;
	for (;;) {
		if (f->f_dst->e_wr_wait != WANT_NOTHING &&
		    (f->f_len > 0 || f->f_src->e_eof)) {
			f->f_dst->e_wr_want = f->f_dst->e_wr_wait;
			break;
		}
		if (f->f_len > 0) {
			/* What libssl already wrote goes first. */
			if (f->f_dst->e_olen > 0 &&
			    (n = end_flush(f->f_dst)) != 1) {
				if (n == -1) {
					*which = 1;
					return -1;
				}
				break;
			}
			n = end_write(f->f_dst, f->f_buf + f->f_off, f->f_len);
			if (n < 0) {
				*which = 1;
				return -1;
			}
			if (n == 0)
				break;
			/* A short send(2): the socket buffer is full. */
			if (f->f_dst->e_ssl == NULL && (size_t)n < f->f_len)
				f->f_dst->e_wr_wait = WANT_WRITE;
			f->f_off += (size_t)n;
			f->f_len -= (size_t)n;
			f->f_bytes += (uint64_t)n;
			moved = 1;
			continue;
		}
		if (f->f_src->e_eof) {
			if (f->f_dst->e_shut)
				break;
			if (end_shutdown(f->f_dst) == -1) {
				/*
				 * A peer that closed both ways before our
				 * end of stream reached it lost nothing.
				 */
				if (!f->f_dst->e_eof) {
					*which = 1;
					return -1;
				}
				f->f_dst->e_shut = 1;
			}
			break;
		}
		/*
		 * A short read left nothing behind: another read now would
		 * only say "would block".  Wait for the poller instead.
		 */
		if (drained) {
			if (f->f_src->e_rd_wait == WANT_NOTHING)
				f->f_src->e_rd_wait = WANT_READ;
			f->f_src->e_rd_want = f->f_src->e_rd_wait;
			break;
		}
		if (f->f_src->e_rd_wait != WANT_NOTHING) {
			f->f_src->e_rd_want = f->f_src->e_rd_wait;
			break;
		}
		/*
		 * A peer that makes libssl answer (key updates) but reads no
		 * answer is not read either, until it does: its queue stays
		 * bounded.  Data alone never gets here (one record at most).
		 */
		if (f->f_src->e_olen > END_QUEUE_READ_MAX) {
			f->f_src->e_rd_want = WANT_WRITE;
			break;
		}
		if (budget-- == 0) {
			event_active(kick, EV_TIMEOUT, 0);
			break;
		}
		if (f->f_buf == NULL) {
			if (w->w_freebufs != NULL) {
				f->f_buf = w->w_freebufs;
				w->w_freebufs = *(void **)f->f_buf;
				w->w_nfreebufs--;
			} else if ((f->f_buf = malloc(PROXY_BUFSZ)) == NULL) {
				*which = 0;
				f->f_src->e_errno = ENOMEM;
				return -1;
			}
		}
		/*
		 * Fill the buffer, several TLS records if they are there,
		 * so that the other side gets one write for all of them.
		 */
		f->f_off = 0;
		while (f->f_len < PROXY_BUFSZ &&
		    f->f_src->e_olen <= END_QUEUE_READ_MAX) {
			n = end_read(f->f_src, f->f_buf + f->f_len,
			    PROXY_BUFSZ - f->f_len);
			if (n == -1) {
				*which = 0;
				return -1;
			}
			if (n == -2) {
				f->f_src->e_eof = 1;
				break;
			}
			if (n == 0) {
				drained = f->f_len > 0;
				break;
			}
			f->f_len += (size_t)n;
			/* A short read that left nothing in libssl. */
			if ((f->f_src->e_ssl == NULL && f->f_len < PROXY_BUFSZ) ||
			    (f->f_src->e_ssl != NULL &&
			    !SSL_has_pending(f->f_src->e_ssl) &&
			    n < TLS_RECORD_MAX)) {
				drained = 1;
				break;
			}
		}
		if (f->f_len == 0 && !f->f_src->e_eof)
			break;		/* would block: e_rd_want says on what */
		if (f->f_len > 0)
			moved = 1;
	}
	/* One time stamp a turn is enough for the idle timeout. */
	if (moved)
		clock_gettime(CLOCK_MONOTONIC, last);
	/* An idle direction holds no buffer. */
	if (f->f_len == 0 && f->f_buf != NULL) {
		if (w->w_nfreebufs < WORKER_FREEBUFS) {
			*(void **)f->f_buf = w->w_freebufs;
			w->w_freebufs = f->f_buf;
			w->w_nfreebufs++;
		} else
			free(f->f_buf);
		f->f_buf = NULL;
	}
	return 0;
}

int
flow_done(const struct flow *f)
{
	return f->f_src->e_eof && f->f_len == 0 && f->f_dst->e_shut;
}
