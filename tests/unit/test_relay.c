/*
 * The relay on plaintext ends: data and end of stream move across,
 * back-pressure holds the source, and a drained or blocked end is not
 * tried again before the poller says so (but is always waiting on it).
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/event.h>

#include "mtlsd/proxy.h"
#include "mtlsd/relay.h"

/* A flow src -> dst over two socket pairs; the test holds the far ends. */
struct rig {
	struct event_base	*base;
	struct worker		 w;
	struct end		 src, dst;
	struct flow		 f;
	struct event		 kick;
	struct timespec		 last;
	int			 in;	/* the test writes here: src reads */
	int			 out;	/* the test reads here: dst wrote */
};

static void
nop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

static void
nonblock(int fd)
{
	assert_int_not_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) |
	    O_NONBLOCK), -1);
}

static int
rig_setup(void **state)
{
	struct rig	*r;
	int		 a[2], b[2];

	r = calloc(1, sizeof(*r));
	assert_non_null(r);
	r->base = event_base_new();
	assert_non_null(r->base);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
	nonblock(a[1]);
	nonblock(b[0]);
	nonblock(b[1]);
	r->in = a[0];
	r->out = b[1];
	end_init(&r->src, NULL, r->base, a[1], nop);
	end_init(&r->dst, NULL, r->base, b[0], nop);
	r->f.f_src = &r->src;
	r->f.f_dst = &r->dst;
	event_assign(&r->kick, r->base, -1, 0, nop, NULL);
	*state = r;
	return 0;
}

static int
rig_teardown(void **state)
{
	struct rig	*r = *state;
	void		*b;

	end_close(&r->src, 0);
	end_close(&r->dst, 0);
	close(r->in);
	close(r->out);
	free(r->f.f_buf);
	while ((b = r->w.w_freebufs) != NULL) {
		r->w.w_freebufs = *(void **)b;
		free(b);
	}
	event_base_free(r->base);
	free(r);
	return 0;
}

static void
run(struct rig *r)
{
	int	which = -1;

	assert_int_equal(flow_run(&r->f, &r->w, &r->last, &r->kick, &which),
	    0);
}

static size_t
drain(int fd, char *buf, size_t len)
{
	ssize_t	n;
	size_t	got = 0;

	while (got < len && (n = read(fd, buf + got, len - got)) > 0)
		got += (size_t)n;
	return got;
}

static void
moves_data_and_end(void **state)
{
	struct rig	*r = *state;
	char		 buf[64];

	assert_int_equal(write(r->in, "hello", 5), 5);
	run(r);
	assert_int_equal(r->f.f_bytes, 5);
	assert_int_equal(drain(r->out, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "hello", 5);
	assert_false(flow_done(&r->f));

	/* FIN from the source becomes FIN on the destination. */
	assert_int_equal(shutdown(r->in, SHUT_WR), 0);
	end_ready(&r->src, EV_READ);
	run(r);
	assert_true(r->src.e_eof);
	assert_true(r->dst.e_shut);
	assert_true(flow_done(&r->f));
	assert_int_equal(read(r->out, buf, sizeof(buf)), 0);
	/* An idle direction gives its buffer back. */
	assert_null(r->f.f_buf);
}

static void
drained_source_waits_for_the_poller(void **state)
{
	struct rig	*r = *state;
	char		 buf[64];

	assert_int_equal(write(r->in, "one", 3), 3);
	run(r);
	assert_int_equal(r->f.f_bytes, 3);
	/* A short read drained the socket: wait for readability... */
	assert_int_equal(r->src.e_rd_wait, WANT_READ);
	assert_int_equal(r->src.e_rd_want, WANT_READ);

	/* ...so new bytes wait too, with the read still asked for. */
	assert_int_equal(write(r->in, "two", 3), 3);
	run(r);
	assert_int_equal(r->f.f_bytes, 3);
	assert_int_equal(r->src.e_rd_want, WANT_READ);

	/* Writability of the source is not what it waits for. */
	end_ready(&r->src, EV_WRITE);
	run(r);
	assert_int_equal(r->f.f_bytes, 3);

	end_ready(&r->src, EV_READ);
	run(r);
	assert_int_equal(r->f.f_bytes, 6);
	assert_int_equal(drain(r->out, buf, sizeof(buf)), 6);
	assert_memory_equal(buf, "onetwo", 6);
}

static void
backpressure_holds_the_source(void **state)
{
	struct rig	*r = *state;
	static char	 pat[1 << 20], got[1 << 20];
	size_t		 sent = 0, recvd = 0, n;
	ssize_t		 k;
	int		 i, small = 4096;

	for (i = 0; i < (int)sizeof(pat); i++)
		pat[i] = (char)(i * 7 + (i >> 9));
	assert_int_equal(setsockopt(r->dst.e_fd, SOL_SOCKET, SO_SNDBUF,
	    &small, sizeof(small)), 0);
	nonblock(r->in);

	/* Bounded: each round moves something or the test fails. */
	for (i = 0; i < 10000 && recvd < sizeof(pat); i++) {
		if (sent < sizeof(pat) &&
		    (k = write(r->in, pat + sent, sizeof(pat) - sent)) > 0)
			sent += (size_t)k;
		end_ready(&r->src, EV_READ);
		run(r);
		if (r->f.f_len > 0) {
			/* Blocked on the destination: not reading meanwhile. */
			assert_int_equal(r->dst.e_wr_want, WANT_WRITE);
			assert_int_equal(r->src.e_rd_want, WANT_NOTHING);
		}
		n = drain(r->out, got + recvd, sizeof(got) - recvd);
		recvd += n;
		end_ready(&r->dst, EV_WRITE);
	}
	assert_int_equal(recvd, sizeof(pat));
	assert_memory_equal(got, pat, sizeof(pat));
	assert_int_equal(r->f.f_bytes, sizeof(pat));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(moves_data_and_end,
		    rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(
		    drained_source_waits_for_the_poller, rig_setup,
		    rig_teardown),
		cmocka_unit_test_setup_teardown(backpressure_holds_the_source,
		    rig_setup, rig_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
