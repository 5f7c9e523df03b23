/*
 * Log lines: text quoting and JSON escaping, captured from stderr.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "mtlsd/log.h"

static char	line[8192];

/* Runs fn with stderr redirected to a file and reads back what it wrote. */
static void
capture(void (*fn)(void))
{
	FILE	*f;
	int	 saved, n;

	f = tmpfile();
	assert_non_null(f);
	saved = dup(STDERR_FILENO);
	dup2(fileno(f), STDERR_FILENO);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(f);
	n = (int)fread(line, 1, sizeof(line) - 1, f);
	line[n < 0 ? 0 : n] = '\0';
	fclose(f);
}

static void
emit_fields(void)
{
	const struct log_field f[] = {
		{ "route", "api", 0 },
		{ "reason", "identity not allowed: \"x\"\n", 0 },
		{ "bytes_in", "42", 1 },
	};

	log_fields(LOG_LEVEL_INFO, "conn", f, 3);
}

static void
emit_long(void)
{
	static char		 big[6000];
	struct log_field	 f[3];

	memset(big, 'l', sizeof(big) - 1);
	/* A multi-byte character astride the cut must not be split. */
	memcpy(big + 505, "\xc3\xa9\xc3\xa9\xc3\xa9", 6);
	f[0] = (struct log_field){ "identity", big, 0 };
	f[1] = (struct log_field){ "result", "ok", 0 };
	f[2] = (struct log_field){ "bytes_in", "7", 1 };
	log_fields(LOG_LEVEL_INFO, "conn", f, 3);
}

static void
emit_debug(void)
{
	log_debug("not shown at info");
}

static void
test_log_text_quotes_values(void **state)
{
	(void)state;
	log_init(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
	capture(emit_fields);
	assert_non_null(strstr(line, " info conn route=api "));
	assert_non_null(strstr(line,
	    "reason=\"identity not allowed: \\\"x\\\"\\u000a\""));
	assert_non_null(strstr(line, "bytes_in=42\n"));
	/* One line, whatever the values held. */
	assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1);
}

static void
test_log_json_is_one_object(void **state)
{
	(void)state;
	log_init(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
	capture(emit_fields);
	assert_true(line[0] == '{');
	assert_non_null(strstr(line, "\"level\":\"info\""));
	assert_non_null(strstr(line, "\"event\":\"conn\""));
	assert_non_null(strstr(line, "\"bytes_in\":42"));
	assert_non_null(strstr(line,
	    "\"reason\":\"identity not allowed: \\\"x\\\"\\u000a\""));
	assert_string_equal(line + strlen(line) - 2, "}\n");
}

static void
test_log_long_value_is_cut_safely(void **state)
{
	const char	*p;

	(void)state;
	log_init(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
	capture(emit_long);
	/* Still one object, and the fields after the long one survive. */
	assert_string_equal(line + strlen(line) - 2, "}\n");
	assert_non_null(strstr(line, "...\",\"result\":\"ok\""));
	assert_non_null(strstr(line, "\"bytes_in\":7}"));
	assert_true(strlen(line) < 1024);
	/* No orphaned UTF-8 continuation byte before the "...". */
	p = strstr(line, "...");
	assert_non_null(p);
	assert_true(((unsigned char)p[-1] & 0xc0) != 0x80 ||
	    ((unsigned char)p[-2] & 0xe0) == 0xc0);
	log_init(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
	capture(emit_long);
	assert_non_null(strstr(line, "...\" result=ok bytes_in=7\n"));
}

static void
test_log_level_filters(void **state)
{
	(void)state;
	log_init(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
	capture(emit_debug);
	assert_string_equal(line, "");
	assert_false(log_enabled(LOG_LEVEL_DEBUG));
	assert_true(log_enabled(LOG_LEVEL_WARN));
}

static void
emit_flood(void)
{
	int	i, shown = 0;

	for (i = 0; i < 1000; i++)
		shown += log_reject_allowed();
	/* The burst passes, the flood does not. */
	assert_in_range(shown, 1, 40);
}

static void
test_log_reject_rate_limit(void **state)
{
	(void)state;
	log_init(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
	capture(emit_flood);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log_text_quotes_values),
		cmocka_unit_test(test_log_json_is_one_object),
		cmocka_unit_test(test_log_long_value_is_cut_safely),
		cmocka_unit_test(test_log_level_filters),
		cmocka_unit_test(test_log_reject_rate_limit),
	};

	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
