/*
 * The read-back of /proc/PID/status that the sandbox self-check relies on.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "mtlsd/sandbox.h"

static const char dropped[] =
    "Name:\tmtlsd\n"
    "Umask:\t0022\n"
    "State:\tS (sleeping)\n"
    "Uid:\t65534\t65534\t65534\t65534\n"
    "Gid:\t65534\t65534\t65534\t65534\n"
    "Groups:\t\n"
    "CapInh:\t0000000000000000\n"
    "CapPrm:\t0000000000000000\n"
    "CapEff:\t0000000000000000\n"
    "CapBnd:\t0000000000000000\n"
    "CapAmb:\t0000000000000000\n"
    "NoNewPrivs:\t1\n"
    "Seccomp:\t2\n"
    "Seccomp_filters:\t1\n";

static const char rooted[] =
    "Uid:\t0\t0\t0\t0\n"
    "Gid:\t0\t0\t0\t0\n"
    "Groups:\t0 1 2 \n"
    "CapInh:\t0000000000000000\n"
    "CapPrm:\t000001ffffffffff\n"
    "CapEff:\t000001ffffffffff\n"
    "CapBnd:\t000001ffffffffff\n"
    "CapAmb:\t0000000000000000\n"
    "NoNewPrivs:\t0\n"
    "Seccomp:\t0\n";

static void
test_sandbox_parse_dropped(void **state)
{
	struct sandbox_state	st;
	char			buf[256];

	(void)state;
	assert_int_equal(sandbox_parse_status(dropped, &st), 0);
	assert_int_equal(st.ss_uid[0], 65534);
	assert_int_equal(st.ss_uid[3], 65534);
	assert_int_equal(st.ss_gid[1], 65534);
	assert_int_equal(st.ss_groups, 0);
	assert_true(st.ss_capeff == 0 && st.ss_capprm == 0);
	assert_true(st.ss_capbnd == 0);
	assert_int_equal(st.ss_nonewprivs, 1);
	assert_int_equal(st.ss_seccomp, 2);
	sandbox_state_str(&st, buf, sizeof(buf));
	assert_non_null(strstr(buf, "uid=65534"));
	assert_non_null(strstr(buf, "NoNewPrivs=1 Seccomp=2"));
}

static void
test_sandbox_parse_root(void **state)
{
	struct sandbox_state	st;

	(void)state;
	assert_int_equal(sandbox_parse_status(rooted, &st), 0);
	assert_int_equal(st.ss_uid[1], 0);
	assert_int_equal(st.ss_groups, 3);
	assert_true(st.ss_capeff == 0x1ffffffffffULL);
	assert_true(st.ss_capbnd == 0x1ffffffffffULL);
	assert_int_equal(st.ss_nonewprivs, 0);
	assert_int_equal(st.ss_seccomp, 0);
}

static void
test_sandbox_parse_incomplete(void **state)
{
	struct sandbox_state	st;

	(void)state;
	/* A kernel without the Seccomp line cannot prove the filter. */
	assert_int_equal(sandbox_parse_status(
	    "Uid:\t1\t1\t1\t1\nGid:\t1\t1\t1\t1\nCapPrm:\t0\nCapEff:\t0\n"
	    "NoNewPrivs:\t1\n", &st), -1);
	assert_int_equal(sandbox_parse_status("", &st), -1);
	assert_int_equal(sandbox_parse_status("Uid:\tx\n", &st), -1);
}

static void
test_sandbox_list_has_the_essentials(void **state)
{
	const char	*need[] = { "read", "write", "accept4", "connect",
			    "epoll_wait", "openat", "close", "exit_group",
			    "futex", NULL };
	const char	*never[] = { "execve", "ptrace", "setuid", "mount",
			    "fork", "vfork", "kexec_load", "init_module",
			    "prctl", "unlink", NULL };
	size_t		 i, k;
	int		 found;

	(void)state;
	for (k = 0; need[k] != NULL; k++) {
		for (found = 0, i = 0; sandbox_syscalls[i] != NULL; i++)
			found |= strcmp(sandbox_syscalls[i], need[k]) == 0;
		assert_true(found);
	}
	for (k = 0; never[k] != NULL; k++)
		for (i = 0; sandbox_syscalls[i] != NULL; i++)
			assert_string_not_equal(sandbox_syscalls[i], never[k]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sandbox_parse_dropped),
		cmocka_unit_test(test_sandbox_parse_root),
		cmocka_unit_test(test_sandbox_parse_incomplete),
		cmocka_unit_test(test_sandbox_list_has_the_essentials),
	};

	return cmocka_run_group_tests_name("sandbox", tests, NULL, NULL);
}
