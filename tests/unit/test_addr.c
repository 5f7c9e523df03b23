/*
 * Address parsing and the loopback rule.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mtlsd/addr.h"

static struct addr	a;
static char		err[256];

static int
parse(const char *s)
{
	err[0] = '\0';
	return addr_parse(s, &a, err, sizeof(err));
}

static void
test_addr_ipv4(void **state)
{
	char	buf[ADDR_STR_MAX];

	(void)state;
	assert_int_equal(parse("0.0.0.0:8443"), 0);
	assert_int_equal(a.a_kind, ADDR_INET);
	assert_int_equal(a.a_port, 8443);
	assert_string_equal(addr_str(&a, buf, sizeof(buf)), "0.0.0.0:8443");
	assert_false(addr_is_local(&a));
}

static void
test_addr_ipv6_brackets(void **state)
{
	char	buf[ADDR_STR_MAX];

	(void)state;
	assert_int_equal(parse("[::1]:443"), 0);
	assert_int_equal(a.a_kind, ADDR_INET);
	assert_string_equal(a.a_host, "::1");
	assert_string_equal(addr_str(&a, buf, sizeof(buf)), "[::1]:443");
	assert_true(addr_is_local(&a));
	assert_int_equal(parse("[2001:db8::1]:443"), 0);
	assert_false(addr_is_local(&a));
}

static void
test_addr_ipv6_needs_brackets(void **state)
{
	(void)state;
	assert_int_equal(parse("::1:443"), -1);
	assert_non_null(strstr(err, "brackets"));
	assert_int_equal(parse("[::1"), -1);
	assert_non_null(strstr(err, "]"));
	assert_int_equal(parse("[::1]443"), -1);
	assert_int_equal(parse("[not-v6]:443"), -1);
}

static void
test_addr_ports(void **state)
{
	(void)state;
	assert_int_equal(parse("127.0.0.1:0"), -1);
	assert_non_null(strstr(err, "1 to 65535"));
	assert_int_equal(parse("127.0.0.1:65536"), -1);
	assert_int_equal(parse("127.0.0.1:70000"), -1);
	assert_int_equal(parse("127.0.0.1:"), -1);
	assert_int_equal(parse("127.0.0.1:+80"), -1);
	assert_int_equal(parse("127.0.0.1:8x"), -1);
	assert_int_equal(parse("127.0.0.1"), -1);
	assert_int_equal(parse("127.0.0.1:65535"), 0);
	assert_int_equal(a.a_port, 65535);
}

static void
test_addr_empty(void **state)
{
	(void)state;
	assert_int_equal(parse(""), -1);
	assert_int_equal(parse(":80"), -1);
	assert_non_null(strstr(err, "missing host"));
}

static void
test_addr_unix(void **state)
{
	char	long_path[300];

	(void)state;
	assert_int_equal(parse("unix:/run/svc.sock"), 0);
	assert_int_equal(a.a_kind, ADDR_UNIX);
	assert_string_equal(a.a_path, "/run/svc.sock");
	assert_true(addr_is_local(&a));
	assert_int_equal(parse("unix:relative.sock"), -1);
	assert_non_null(strstr(err, "absolute"));
	memset(long_path, 'x', sizeof(long_path) - 1);
	long_path[sizeof(long_path) - 1] = '\0';
	memcpy(long_path, "unix:/", 6);
	assert_int_equal(parse(long_path), -1);
}

static void
test_addr_loopback_rule(void **state)
{
	(void)state;
	assert_int_equal(parse("127.0.0.1:80"), 0);
	assert_true(addr_is_local(&a));
	assert_int_equal(parse("127.255.0.9:80"), 0);
	assert_true(addr_is_local(&a));
	assert_int_equal(parse("128.0.0.1:80"), 0);
	assert_false(addr_is_local(&a));
	assert_int_equal(parse("10.0.0.1:80"), 0);
	assert_false(addr_is_local(&a));
	assert_int_equal(parse("[::ffff:127.0.0.1]:80"), 0);
	assert_true(addr_is_local(&a));
	assert_int_equal(parse("[::ffff:10.0.0.1]:80"), 0);
	assert_false(addr_is_local(&a));
	assert_int_equal(parse("[::]:80"), 0);
	assert_false(addr_is_local(&a));
}

static void
test_addr_localhost_is_numeric(void **state)
{
	(void)state;
	/* Never looked up: /etc/hosts could point it anywhere. */
	assert_int_equal(parse("localhost:8080"), 0);
	assert_int_equal(a.a_kind, ADDR_INET);
	assert_string_equal(a.a_host, "localhost");
	assert_int_equal(a.a_ss.ss_family, AF_INET);
	assert_true(addr_is_local(&a));
	assert_int_equal(parse("LocalHost:8080"), 0);
	assert_true(addr_is_local(&a));
}

static void
test_addr_names_are_not_local(void **state)
{
	(void)state;
	assert_int_equal(parse("db.internal:5432"), 0);
	assert_int_equal(a.a_kind, ADDR_NAME);
	assert_string_equal(a.a_host, "db.internal");
	assert_false(addr_is_local(&a));
	assert_int_equal(parse("bad_name!:5432"), -1);
	assert_non_null(strstr(err, "host name"));
}

static void
test_addr_sockaddr_str(void **state)
{
	char	buf[ADDR_STR_MAX];

	(void)state;
	assert_int_equal(parse("[fe80::1]:9"), 0);
	assert_string_equal(addr_sockaddr_str((struct sockaddr *)&a.a_ss,
	    a.a_sslen, buf, sizeof(buf)), "[fe80::1]:9");
	assert_int_equal(parse("unix:/tmp/x"), 0);
	assert_string_equal(addr_sockaddr_str((struct sockaddr *)&a.a_ss,
	    a.a_sslen, buf, sizeof(buf)), "unix:/tmp/x");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_ipv4),
		cmocka_unit_test(test_addr_ipv6_brackets),
		cmocka_unit_test(test_addr_ipv6_needs_brackets),
		cmocka_unit_test(test_addr_ports),
		cmocka_unit_test(test_addr_empty),
		cmocka_unit_test(test_addr_unix),
		cmocka_unit_test(test_addr_loopback_rule),
		cmocka_unit_test(test_addr_localhost_is_numeric),
		cmocka_unit_test(test_addr_names_are_not_local),
		cmocka_unit_test(test_addr_sockaddr_str),
	};

	return cmocka_run_group_tests_name("addr", tests, NULL, NULL);
}
