/*
 * The transport under a TLS end: libssl's BIO over the end's socket.
 *
 * Reads go straight to recv(2).  Writes go straight to send(2) too, but
 * what the socket does not take waits in the end's own send queue and
 * libssl is told it was written: libssl never has a write to retry.  Its
 * retry state is fragile: a TLS 1.3 KeyUpdate that must be answered while
 * an application write is pending makes OpenSSL 3.0 fail the connection
 * ("bad length").  The queue holds little: the relay writes no more
 * application data to an end until its queue has drained (one record at
 * most), and stops reading an end whose queue passes END_QUEUE_READ_MAX,
 * so a peer that asks for key updates without reading the answers cannot
 * grow it either.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "mtlsd/relay.h"

#define ENDBIO_QUEUE_MAX	((size_t)1024 * 1024)	/* a libssl gone mad */

static BIO_METHOD	*endbio_method;
static pthread_once_t	 endbio_once = PTHREAD_ONCE_INIT;

static int
endbio_queue(struct end *e, const char *buf, size_t len)
{
	size_t	 cap;
	char	*nb;

	if (e->e_ooff > 0 && e->e_olen > 0)
		memmove(e->e_obuf, e->e_obuf + e->e_ooff, e->e_olen);
	e->e_ooff = 0;
	if (e->e_olen + len > ENDBIO_QUEUE_MAX)
		return -1;
	if (e->e_olen + len > e->e_ocap) {
		cap = e->e_ocap > 0 ? e->e_ocap : 4096;
		while (cap < e->e_olen + len)
			cap *= 2;
		if ((nb = realloc(e->e_obuf, cap)) == NULL)
			return -1;
		e->e_obuf = nb;
		e->e_ocap = cap;
	}
	memcpy(e->e_obuf + e->e_olen, buf, len);
	e->e_olen += len;
	/* The socket is full: nothing more until it says it has room. */
	e->e_wr_wait = WANT_WRITE;
	return 0;
}

static int
endbio_write(BIO *b, const char *buf, int len)
{
	struct end	*e = BIO_get_data(b);
	ssize_t		 n = 0;

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	/* Behind a queue, bytes wait their turn. */
	if (e->e_olen == 0) {
		for (;;) {
			n = send(e->e_fd, buf, (size_t)len, MSG_NOSIGNAL);
			if (n >= 0)
				break;
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				n = 0;
				break;
			}
			return -1;	/* errno says why, for SSL_ERROR_SYSCALL */
		}
		if (n == len)
			return len;
	}
	if (endbio_queue(e, buf + n, (size_t)len - (size_t)n) == -1) {
		errno = ENOBUFS;
		return -1;
	}
	return len;
}

static int
endbio_read(BIO *b, char *buf, int len)
{
	struct end	*e = BIO_get_data(b);
	ssize_t		 n;

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	for (;;) {
		n = recv(e->e_fd, buf, (size_t)len, 0);
		if (n > 0)
			return (int)n;
		if (n == 0) {
			/* libssl asks BIO_eof() to tell a FIN from an error. */
			BIO_set_flags(b, BIO_FLAGS_IN_EOF);
			return 0;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			BIO_set_retry_read(b);
		return -1;
	}
}

static long
endbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct end	*e = BIO_get_data(b);

	(void)num;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;	/* the queue drains on the poller's word */
	case BIO_CTRL_EOF:
		return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
	case BIO_CTRL_WPENDING:
		return e != NULL ? (long)e->e_olen : 0;
	case BIO_C_GET_FD:
		if (e == NULL)
			return -1;
		if (ptr != NULL)
			*(int *)ptr = e->e_fd;
		return e->e_fd;
	default:
		return 0;
	}
}

static int
endbio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void
endbio_init(void)
{
	BIO_METHOD	*m;

	m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK |
	    BIO_TYPE_DESCRIPTOR, "mtlsd end");
	if (m == NULL)
		return;
	if (BIO_meth_set_write(m, endbio_write) != 1 ||
	    BIO_meth_set_read(m, endbio_read) != 1 ||
	    BIO_meth_set_ctrl(m, endbio_ctrl) != 1 ||
	    BIO_meth_set_create(m, endbio_create) != 1) {
		BIO_meth_free(m);
		return;
	}
	endbio_method = m;
}

int
end_tls_attach(struct end *e)
{
	BIO	*b;

	if (pthread_once(&endbio_once, endbio_init) != 0 ||
	    endbio_method == NULL || (b = BIO_new(endbio_method)) == NULL)
		return -1;
	BIO_set_data(b, e);
	SSL_set_bio(e->e_ssl, b, b);	/* one BIO both ways: one reference */
	return 0;
}

int
end_flush(struct end *e)
{
	ssize_t	n;

	while (e->e_olen > 0) {
		if ((n = end_send(e, e->e_obuf + e->e_ooff, e->e_olen)) <= 0)
			return (int)n;
		e->e_ooff += (size_t)n;
		e->e_olen -= (size_t)n;
	}
	/* The socket took it all: the next write may go straight. */
	if (e->e_wr_wait == WANT_WRITE)
		e->e_wr_wait = WANT_NOTHING;
	/* An empty queue holds no memory: idle ends stay small. */
	free(e->e_obuf);
	e->e_obuf = NULL;
	e->e_ooff = e->e_ocap = 0;
	return 1;
}

void
end_queue_free(struct end *e)
{
	free(e->e_obuf);
	e->e_obuf = NULL;
	e->e_ooff = e->e_olen = e->e_ocap = 0;
}
