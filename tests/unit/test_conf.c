/*
 * Unit tests of the configuration: one valid file read back field by field,
 * then one file per kind of mistake, each checked for the exact place and
 * words of its message.  Configurations are fed as strings, so that no test
 * depends on the file system (except the one about conf_load itself).
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

#include <openssl/ssl.h>

#include "mtlsd/addr.h"
#include "mtlsd/conf.h"

/* The name messages give the file, as conf_load_string() is told. */
#define NAME		"mtlsd.conf"

/* Line 1 of most test files: the TLS material every route needs. */
#define TLS_LINE	"tls = { cert = \"/c/svc.crt\"; "		\
			"key = \"/c/svc.key\"; ca = \"/c/ca.crt\"; };\n"
#define ALLOW_WEB	"allow = { uri = \"spiffe://example.org/web\"; };"
#define IN_ADDRS	"listen = \"0.0.0.0:8443\"; "			\
			"target = \"127.0.0.1:8080\";"
#define OUT_ADDRS	"listen = \"127.0.0.1:15432\"; "		\
			"target = \"db.internal:5432\";"
/* One route on one line, so that its every message is on that line. */
#define INBOUND(body)	"inbound = ( { " body " } );\n"
#define OUTBOUND(body)	"outbound = ( { " body " } );\n"
#define IN_API(extra)	INBOUND("name = \"api\"; " IN_ADDRS " " ALLOW_WEB \
			" " extra)
#define OUT_DB(extra)	OUTBOUND("name = \"db\"; " OUT_ADDRS " " \
			"allow = { dns = \"db.internal\"; }; " extra)

struct fixture {
	struct conf	*conf;
	char		*err;		/* what conf_load*() wrote to errf */
	size_t		 errlen;
	char		*out;		/* what conf_print() wrote */
	size_t		 outlen;
};

static int	 setup(void **);
static int	 teardown(void **);
static int	 load(struct fixture *, const char *);
static int	 nlines(const char *);
static void	 assert_contains(const char *, const char *);
static void	 expect_error(void **, const char *, int, const char *);

static int
setup(void **state)
{
	struct fixture	*f;

	if ((f = calloc(1, sizeof(*f))) == NULL)
		return -1;
	*state = f;
	return 0;
}

/* Frees what a test left, also when an assertion ended it early. */
static int
teardown(void **state)
{
	struct fixture	*f = *state;

	conf_free(f->conf);
	free(f->err);
	free(f->out);
	free(f);
	return 0;
}

/* Loads text, collecting the messages; a second call replaces the first. */
static int
load(struct fixture *f, const char *text)
{
	static struct conf	 poison;
	struct conf		*c;
	FILE			*errf;
	int			 rc;

	conf_free(f->conf);
	f->conf = NULL;
	free(f->err);
	f->err = NULL;
	errf = open_memstream(&f->err, &f->errlen);
	assert_non_null(errf);
	/* conf_load_string() must set *out itself, even on failure. */
	c = &poison;
	rc = conf_load_string(text, NAME, errf, &c);
	assert_int_equal(fclose(errf), 0);
	assert_ptr_not_equal(c, &poison);
	f->conf = c;
	if (rc == 0)
		assert_non_null(f->conf);
	else
		assert_null(f->conf);
	return rc;
}

static int
nlines(const char *s)
{
	int	 n = 0;

	for (; *s != '\0'; s++)
		if (*s == '\n')
			n++;
	return n;
}

static void
assert_contains(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle) == NULL)
		fail_msg("expected \"%s\" in:\n%s", needle, haystack);
}

/*
 * text must be refused with exactly one message, at line (0: none), that
 * holds fragment.
 */
static void
expect_error(void **state, const char *text, int line, const char *fragment)
{
	struct fixture	*f = *state;
	char		 prefix[64];

	if (load(f, text) != -1)
		fail_msg("accepted:\n%s", text);
	if (nlines(f->err) != 1)
		fail_msg("expected one message, got:\n%s\nfrom:\n%s", f->err,
		    text);
	if (line > 0)
		snprintf(prefix, sizeof(prefix), NAME ":%d: ", line);
	else
		snprintf(prefix, sizeof(prefix), NAME ": ");
	if (strncmp(f->err, prefix, strlen(prefix)) != 0)
		fail_msg("expected the prefix \"%s\" in:\n%s", prefix, f->err);
	assert_contains(f->err, fragment);
}

static void
test_conf_full_valid(void **state)
{
	static const char text[] =
	    "user = \"mtlsd\";\n"					/* 1 */
	    "group = \"nogroup\";\n"
	    "workers = 4;\n"
	    "log = { level = \"debug\"; format = \"json\"; };\n"
	    "admin = { listen = \"127.0.0.1:9901\"; };\n"		/* 5 */
	    "sandbox = { seccomp = false; };\n"
	    "limits = {\n"
	    "  max_connections = 500;\n"
	    "  handshake_timeout = 2.5;\n"
	    "  connect_timeout = 1;\n"				/* 10 */
	    "  idle_timeout = 60.0;\n"
	    "  drain_timeout = 5.0;\n"
	    "};\n"
	    "tls = {\n"
	    "  cert = \"/certs/svc.crt\";\n"			/* 15 */
	    "  key = \"/certs/svc.key\";\n"
	    "  ca = \"/certs/ca.crt\";\n"
	    "  crl = \"/certs/ca.crl\";\n"
	    "  crl_grace = 30;\n"
	    "  min_version = \"1.3\";\n"				/* 20 */
	    "  ciphers = \"ECDHE-ECDSA-AES128-GCM-SHA256\";\n"
	    "  ciphersuites = \"TLS_AES_128_GCM_SHA256\";\n"
	    "  groups = \"X25519\";\n"
	    "  reload_interval = 10.5;\n"
	    "};\n"							/* 25 */
	    "inbound = (\n"
	    "  {\n"
	    "    name = \"api\";\n"
	    "    listen = \"0.0.0.0:8443\";\n"
	    "    target = \"[::1]:8080\";\n"			/* 30 */
	    "    allow = {\n"
	    "      uri = [ \"spiffe://example.org/web\", "
	    "\"spiffe://example.org/ns/*/sa/cron\" ];\n"
	    "      dns = \"web.example.org\";\n"
	    "      ip = ( \"192.0.2.7\" );\n"
	    "      email = [ \"ops@example.org\" ];\n"		/* 35 */
	    "      cn = [ \"legacy client\" ];\n"
	    "      ou = [ \"Payments\" ];\n"
	    "      o = [ \"Example Inc\" ];\n"
	    "      any = true;\n"
	    "    };\n"						/* 40 */
	    "    proxy_protocol = true;\n"
	    "  }\n"
	    ");\n"
	    "outbound = (\n"
	    "  {\n"							/* 45 */
	    "    name = \"db\";\n"
	    "    listen = \"unix:/run/mtlsd/db.sock\";\n"
	    "    target = \"db.internal:5432\";\n"
	    "    server_name = \"postgres.example.org\";\n"
	    "    allow = { dns = [ \"postgres.example.org\" ]; };\n"	/* 50 */
	    "    tls = { cert = \"/certs/client.crt\"; "
	    "min_version = \"1.2\"; };\n"
	    "  }\n"
	    ");\n";
	static const struct {
		enum rule_kind	 kind;
		const char	*value;
	} rules[] = {
		{ RULE_URI, "spiffe://example.org/web" },
		{ RULE_URI, "spiffe://example.org/ns/*/sa/cron" },
		{ RULE_DNS, "web.example.org" },
		{ RULE_IP, "192.0.2.7" },
		{ RULE_EMAIL, "ops@example.org" },
		{ RULE_CN, "legacy client" },
		{ RULE_OU, "Payments" },
		{ RULE_O, "Example Inc" },
		{ RULE_ANY, NULL },
	};
	struct fixture		*f = *state;
	const struct conf	*c;
	const struct route	*r;
	const struct tls_conf	*tc;
	char			 buf[ADDR_STR_MAX];
	size_t			 i;

	if (load(f, text) != 0)
		fail_msg("refused:\n%s", f->err);
	assert_string_equal(f->err, "");
	c = f->conf;
	assert_string_equal(c->c_path, NAME);
	assert_string_equal(c->c_user, "mtlsd");
	assert_string_equal(c->c_group, "nogroup");
	assert_int_equal(c->c_workers, 4);
	assert_int_equal(c->c_log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(c->c_log_format, LOG_FORMAT_JSON);
	assert_true(c->c_admin_enabled);
	assert_string_equal(addr_str(&c->c_admin_listen, buf, sizeof(buf)),
	    "127.0.0.1:9901");
	assert_int_equal(c->c_seccomp, 0);
	assert_int_equal(c->c_limits.l_max_connections, 500);
	assert_true(c->c_limits.l_handshake_timeout == 2.5);
	assert_true(c->c_limits.l_connect_timeout == 1.0);
	assert_true(c->c_limits.l_idle_timeout == 60.0);
	assert_true(c->c_limits.l_drain_timeout == 5.0);
	assert_int_equal(c->c_nroutes, 2);

	r = &c->c_routes[0];
	assert_string_equal(r->r_name, "api");
	assert_int_equal(r->r_dir, ROUTE_INBOUND);
	assert_int_equal(r->r_line, 27);
	assert_string_equal(addr_str(&r->r_listen, buf, sizeof(buf)),
	    "0.0.0.0:8443");
	assert_string_equal(addr_str(&r->r_target, buf, sizeof(buf)),
	    "[::1]:8080");
	assert_null(r->r_server_name);
	assert_int_equal(r->r_proxy_protocol, 1);
	assert_int_equal(r->r_allow.al_nrules,
	    sizeof(rules) / sizeof(rules[0]));
	for (i = 0; i < r->r_allow.al_nrules; i++) {
		assert_int_equal(r->r_allow.al_rules[i].ar_kind, rules[i].kind);
		if (rules[i].value == NULL)
			assert_null(r->r_allow.al_rules[i].ar_value);
		else
			assert_string_equal(r->r_allow.al_rules[i].ar_value,
			    rules[i].value);
	}
	tc = &r->r_tls;
	assert_string_equal(tc->tc_cert, "/certs/svc.crt");
	assert_string_equal(tc->tc_key, "/certs/svc.key");
	assert_string_equal(tc->tc_ca, "/certs/ca.crt");
	assert_string_equal(tc->tc_crl, "/certs/ca.crl");
	assert_true(tc->tc_crl_grace == 30.0);
	assert_int_equal(tc->tc_min_version, TLS1_3_VERSION);
	assert_string_equal(tc->tc_ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256");
	assert_string_equal(tc->tc_ciphersuites, "TLS_AES_128_GCM_SHA256");
	assert_string_equal(tc->tc_groups, "X25519");
	assert_true(tc->tc_reload_interval == 10.5);

	r = &c->c_routes[1];
	assert_string_equal(r->r_name, "db");
	assert_int_equal(r->r_dir, ROUTE_OUTBOUND);
	assert_int_equal(r->r_line, 45);
	assert_int_equal(r->r_listen.a_kind, ADDR_UNIX);
	assert_string_equal(r->r_listen.a_path, "/run/mtlsd/db.sock");
	assert_int_equal(r->r_target.a_kind, ADDR_NAME);
	assert_string_equal(addr_str(&r->r_target, buf, sizeof(buf)),
	    "db.internal:5432");
	assert_string_equal(r->r_server_name, "postgres.example.org");
	assert_int_equal(r->r_proxy_protocol, 0);
	assert_int_equal(r->r_allow.al_nrules, 1);
	assert_int_equal(r->r_allow.al_rules[0].ar_kind, RULE_DNS);
	/* The route's own tls wins field by field; the rest is inherited. */
	tc = &r->r_tls;
	assert_string_equal(tc->tc_cert, "/certs/client.crt");
	assert_string_equal(tc->tc_key, "/certs/svc.key");
	assert_string_equal(tc->tc_crl, "/certs/ca.crl");
	assert_int_equal(tc->tc_min_version, TLS1_2_VERSION);
	assert_string_equal(tc->tc_groups, "X25519");
	assert_true(tc->tc_reload_interval == 10.5);
}

static void
test_conf_defaults(void **state)
{
	struct fixture		*f = *state;
	const struct conf	*c;
	const struct tls_conf	*tc;

	if (load(f, TLS_LINE IN_API("")) != 0)
		fail_msg("refused:\n%s", f->err);
	c = f->conf;
	assert_null(c->c_user);
	assert_null(c->c_group);
	assert_int_equal(c->c_workers, 0);
	assert_int_equal(c->c_log_level, LOG_LEVEL_INFO);
	assert_int_equal(c->c_log_format, LOG_FORMAT_TEXT);
	assert_false(c->c_admin_enabled);
	assert_int_equal(c->c_seccomp, 1);
	assert_int_equal(c->c_limits.l_max_connections, 10000);
	assert_true(c->c_limits.l_handshake_timeout == 10.0);
	assert_true(c->c_limits.l_connect_timeout == 5.0);
	assert_true(c->c_limits.l_idle_timeout == 300.0);
	assert_true(c->c_limits.l_drain_timeout == 30.0);
	assert_int_equal(c->c_nroutes, 1);
	assert_int_equal(c->c_routes[0].r_proxy_protocol, 0);
	assert_int_equal(c->c_routes[0].r_line, 2);
	tc = &c->c_routes[0].r_tls;
	assert_string_equal(tc->tc_cert, "/c/svc.crt");
	assert_string_equal(tc->tc_key, "/c/svc.key");
	assert_string_equal(tc->tc_ca, "/c/ca.crt");
	assert_null(tc->tc_crl);
	assert_true(tc->tc_crl_grace == 0.0);
	assert_int_equal(tc->tc_min_version, TLS1_2_VERSION);
	assert_string_equal(tc->tc_ciphers, CONF_DEFAULT_CIPHERS);
	assert_string_equal(tc->tc_ciphersuites, CONF_DEFAULT_CIPHERSUITES);
	assert_string_equal(tc->tc_groups, CONF_DEFAULT_GROUPS);
	assert_true(tc->tc_reload_interval == 0.0);
}

static void
test_conf_syntax_error(void **state)
{
	expect_error(state, "workers = 4;\ntls = {\n  cert = ;\n};\n", 3,
	    "syntax error");
}

static void
test_conf_duplicate_key(void **state)
{
	expect_error(state, TLS_LINE "workers = 1;\nworkers = 2;\n"
	    IN_API(""), 3, "duplicate setting");
}

static void
test_conf_unknown_top_key(void **state)
{
	expect_error(state, TLS_LINE IN_API("") "wokers = 4;\n", 3,
	    "unknown key \"wokers\" at the top level; expected one of: user, "
	    "group, workers,");
}

static void
test_conf_unknown_key_limits(void **state)
{
	expect_error(state, TLS_LINE IN_API("")
	    "limits = {\n  max_conections = 5;\n};\n", 4,
	    "unknown key \"max_conections\" in limits; expected one of: "
	    "max_connections,");
}

static void
test_conf_unknown_key_tls(void **state)
{
	expect_error(state,
	    "tls = { cert = \"/c\"; key = \"/k\"; ca = \"/a\";\n"
	    "  crl_grase = 5; };\n" IN_API(""), 2,
	    "unknown key \"crl_grase\" in tls;");
}

static void
test_conf_unknown_key_log_sandbox_admin(void **state)
{
	expect_error(state, TLS_LINE IN_API("")
	    "log = { levle = \"info\"; };\n", 3,
	    "unknown key \"levle\" in log; expected one of: level, format");
	expect_error(state, TLS_LINE IN_API("")
	    "sandbox = { secomp = false; };\n", 3,
	    "unknown key \"secomp\" in sandbox");
	expect_error(state, TLS_LINE IN_API("")
	    "admin = { listen = \"127.0.0.1:9901\"; bind = 1; };\n", 3,
	    "unknown key \"bind\" in admin");
}

static void
test_conf_unknown_key_route(void **state)
{
	expect_error(state, TLS_LINE IN_API("timeout = 5;"), 2,
	    "inbound route \"api\": unknown key \"timeout\"; expected one of: "
	    "name, listen, target, allow, proxy_protocol, tls");
}

static void
test_conf_unknown_key_route_tls(void **state)
{
	expect_error(state, TLS_LINE IN_API("tls = { kye = \"/k\"; };"), 2,
	    "inbound route \"api\": unknown key \"kye\" in tls;");
}

static void
test_conf_unknown_key_allow(void **state)
{
	expect_error(state, TLS_LINE INBOUND("name = \"api\"; " IN_ADDRS
	    " allow = { uri = \"spiffe://x/y\"; san = \"z\"; };"), 2,
	    "inbound route \"api\": unknown key \"san\" in allow; expected "
	    "one of: uri, dns, ip, email, cn, ou, o, any");
}

static void
test_conf_outbound_proxy_protocol_rejected(void **state)
{
	expect_error(state, TLS_LINE OUT_DB("proxy_protocol = true;"), 2,
	    "outbound route \"db\": unknown key \"proxy_protocol\"");
}

static void
test_conf_wrong_types(void **state)
{
	expect_error(state, TLS_LINE IN_API("") "workers = \"4\";\n", 3,
	    "workers must be an integer (found a string)");
	expect_error(state, TLS_LINE IN_API("") "limits = 5;\n", 3,
	    "limits must be a group { ... } (found an integer)");
	expect_error(state, TLS_LINE IN_API("") "user = 1000;\n", 3,
	    "user must be a string (found an integer)");
	expect_error(state, TLS_LINE IN_API("")
	    "sandbox = { seccomp = 1; };\n", 3,
	    "sandbox.seccomp must be true or false (found an integer)");
	expect_error(state, TLS_LINE IN_API("")
	    "limits = { idle_timeout = \"5m\"; };\n", 3,
	    "limits.idle_timeout must be a number of seconds (found a "
	    "string)");
	expect_error(state, TLS_LINE IN_API("proxy_protocol = \"yes\";"), 2,
	    "inbound route \"api\": proxy_protocol must be true or false "
	    "(found a string)");
	expect_error(state, TLS_LINE "inbound = { name = \"api\"; };\n", 2,
	    "inbound must be a list of routes");
	expect_error(state, TLS_LINE "inbound = ( \"api\" );\n", 2,
	    "inbound route #1: must be a group");
	expect_error(state, TLS_LINE INBOUND("name = \"api\"; " IN_ADDRS
	    " allow = { uri = 5; };"), 2,
	    "inbound route \"api\": allow.uri must be a string or a list of "
	    "strings (found an integer)");
	expect_error(state, TLS_LINE INBOUND("name = \"api\"; " IN_ADDRS
	    " allow = { any = \"yes\"; };"), 2,
	    "inbound route \"api\": allow.any must be true or false");
}

/* One mistyped value is one message, not one more per inheriting route. */
static void
test_conf_wrong_type_reported_once(void **state)
{
	expect_error(state, "tls = { cert = 5; key = \"/k\"; ca = \"/a\"; };\n"
	    "inbound = (\n"
	    "  { name = \"a\"; " IN_ADDRS " " ALLOW_WEB " },\n"
	    "  { name = \"b\"; listen = \"0.0.0.0:8444\"; "
	    "target = \"127.0.0.1:8080\"; " ALLOW_WEB " }\n"
	    ");\n", 1, "tls.cert must be a string (found an integer)");
	expect_error(state,
	    "tls = { cert = \"\"; key = \"/k\"; ca = \"/a\"; };\n" IN_API(""),
	    1, "tls.cert must not be empty");
}

static void
test_conf_bad_log_level_and_format(void **state)
{
	expect_error(state, TLS_LINE IN_API("")
	    "log = { level = \"verbose\"; };\n", 3,
	    "log.level must be one of error, warn, info, debug (found "
	    "\"verbose\")");
	expect_error(state, TLS_LINE IN_API("")
	    "log = { format = \"xml\"; };\n", 3,
	    "log.format must be one of text, json (found \"xml\")");
}

static void
test_conf_min_version_too_old(void **state)
{
	expect_error(state,
	    "tls = { cert = \"/c\"; key = \"/k\"; ca = \"/a\";\n"
	    "  min_version = \"1.1\"; };\n" IN_API(""), 2,
	    "tls.min_version \"1.1\": nothing older than TLS 1.2 is possible");
	expect_error(state, TLS_LINE
	    IN_API("tls = { min_version = \"1.0\"; };"), 2,
	    "inbound route \"api\": tls.min_version \"1.0\": nothing older "
	    "than TLS 1.2 is possible");
	expect_error(state, TLS_LINE
	    IN_API("tls = { min_version = \"1\"; };"), 2,
	    "tls.min_version \"1\": nothing older than TLS 1.2 is possible");
	expect_error(state, TLS_LINE
	    IN_API("tls = { min_version = \"SSLv3\"; };"), 2,
	    "tls.min_version \"SSLv3\": nothing older than TLS 1.2");
	expect_error(state, TLS_LINE
	    IN_API("tls = { min_version = \"1.4\"; };"), 2,
	    "tls.min_version must be \"1.2\" or \"1.3\" (found \"1.4\")");
	expect_error(state, TLS_LINE IN_API("tls = { min_version = 1.3; };"),
	    2, "tls.min_version must be a string (found a number)");
}

static void
test_conf_timeouts_must_be_positive(void **state)
{
	expect_error(state, TLS_LINE IN_API("")
	    "limits = { handshake_timeout = 0; };\n", 3,
	    "limits.handshake_timeout must be greater than 0 seconds "
	    "(found 0)");
	expect_error(state, TLS_LINE IN_API("")
	    "limits = { idle_timeout = -1.5; };\n", 3,
	    "limits.idle_timeout must be greater than 0 seconds (found -1.5)");
	expect_error(state, TLS_LINE IN_API("")
	    "limits = { drain_timeout = 0.0; };\n", 3,
	    "limits.drain_timeout must be greater than 0");
	expect_error(state, TLS_LINE IN_API("")
	    "limits = { connect_timeout = 1e40; };\n", 3,
	    "limits.connect_timeout must be at most 31536000 seconds");
	expect_error(state, TLS_LINE IN_API("tls = { crl_grace = -1; };"), 2,
	    "tls.crl_grace must not be negative (found -1)");
}

static void
test_conf_zero_durations_allowed(void **state)
{
	struct fixture	*f = *state;

	if (load(f, TLS_LINE IN_API("tls = { crl_grace = 0; "
	    "reload_interval = 0.0; };")) != 0)
		fail_msg("refused:\n%s", f->err);
	assert_true(f->conf->c_routes[0].r_tls.tc_crl_grace == 0.0);
	assert_true(f->conf->c_routes[0].r_tls.tc_reload_interval == 0.0);
}

static void
test_conf_max_connections_zero(void **state)
{
	expect_error(state, TLS_LINE IN_API("")
	    "limits = { max_connections = 0; };\n", 3,
	    "limits.max_connections must be at least 1 (found 0)");
}

static void
test_conf_workers_range(void **state)
{
	expect_error(state, TLS_LINE IN_API("") "workers = 257;\n", 3,
	    "workers must be from 0 to 256 (found 257)");
	expect_error(state, TLS_LINE IN_API("") "workers = -1;\n", 3,
	    "workers must be from 0 to 256 (found -1)");
}

static void
test_conf_route_missing_name(void **state)
{
	expect_error(state, TLS_LINE INBOUND(IN_ADDRS " " ALLOW_WEB), 2,
	    "inbound route #1: name is required");
	expect_error(state, TLS_LINE IN_API("") "outbound = (\n"
	    "  { name = \"db\"; " OUT_ADDRS " " ALLOW_WEB " },\n"
	    "  { listen = \"127.0.0.1:15433\"; target = \"db:5432\"; "
	    ALLOW_WEB " }\n"
	    ");\n", 5, "outbound route #2: name is required");
}

static void
test_conf_route_bad_name(void **state)
{
	expect_error(state, TLS_LINE INBOUND("name = \"my api\"; " IN_ADDRS
	    " " ALLOW_WEB), 2, "inbound route #1: name \"my api\" may hold "
	    "only letters, digits, '_', '.' and '-'");
	expect_error(state, TLS_LINE INBOUND("name = \"\"; " IN_ADDRS
	    " " ALLOW_WEB), 2, "inbound route #1: name must not be empty");
}

static void
test_conf_route_missing_listen(void **state)
{
	expect_error(state, TLS_LINE INBOUND("name = \"api\"; "
	    "target = \"127.0.0.1:8080\"; " ALLOW_WEB), 2,
	    "inbound route \"api\": listen is required");
}

static void
test_conf_route_missing_target(void **state)
{
	expect_error(state, TLS_LINE OUTBOUND("name = \"db\"; "
	    "listen = \"127.0.0.1:15432\"; " ALLOW_WEB), 2,
	    "outbound route \"db\": target is required");
}

static void
test_conf_duplicate_route_name(void **state)
{
	expect_error(state, TLS_LINE IN_API("")
	    OUTBOUND("name = \"api\"; " OUT_ADDRS " " ALLOW_WEB), 3,
	    "outbound route \"api\": the name is already used by the inbound "
	    "route at line 2");
}

static void
test_conf_duplicate_listen(void **state)
{
	expect_error(state, TLS_LINE "inbound = (\n"
	    "  { name = \"a\"; " IN_ADDRS " " ALLOW_WEB " },\n"
	    "  { name = \"b\"; " IN_ADDRS " " ALLOW_WEB " }\n"
	    ");\n", 4,
	    "inbound route \"b\": listen 0.0.0.0:8443 is already used by the "
	    "inbound route at line 3");
	expect_error(state, TLS_LINE IN_API("")
	    "admin = { listen = \"127.0.0.1:9901\"; };\n"
	    OUTBOUND("name = \"db\"; listen = \"127.0.0.1:9901\"; "
	    "target = \"db:5432\"; " ALLOW_WEB), 4,
	    "outbound route \"db\": listen 127.0.0.1:9901 is already used by "
	    "admin.listen");
}

static void
test_conf_bad_addresses(void **state)
{
	static const char *const bad[] = {
		"127.0.0.1",		/* no port */
		"127.0.0.1:0",
		"127.0.0.1:70000",
		"[::1",
		"[::1]8443",
		":8443",
		"unix:relative.sock",
		"api.example.org:8443",	/* a name would need DNS */
	};
	char	 text[512];
	size_t	 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), TLS_LINE
		    INBOUND("name = \"api\"; listen = \"%s\"; "
		    "target = \"127.0.0.1:8080\"; " ALLOW_WEB), bad[i]);
		expect_error(state, text, 2, "inbound route \"api\": listen ");
	}
	expect_error(state, TLS_LINE INBOUND("name = \"api\"; listen = \"\"; "
	    "target = \"127.0.0.1:8080\"; " ALLOW_WEB), 2,
	    "inbound route \"api\": listen must not be empty");
	expect_error(state, TLS_LINE INBOUND("name = \"api\"; "
	    "listen = \"0.0.0.0:8443\"; target = \"127.0.0.1:99999\"; "
	    ALLOW_WEB), 2, "inbound route \"api\": target ");
}

static void
test_conf_inbound_target_not_loopback(void **state)
{
	expect_error(state, TLS_LINE INBOUND("name = \"api\"; "
	    "listen = \"0.0.0.0:8443\"; target = \"10.0.0.1:8080\"; "
	    ALLOW_WEB), 2,
	    "inbound route \"api\": target 10.0.0.1:8080 is not a loopback "
	    "address or unix socket; plaintext must stay on this host");
	/* A name could resolve anywhere: only "localhost" is loopback. */
	expect_error(state, TLS_LINE INBOUND("name = \"api\"; "
	    "listen = \"0.0.0.0:8443\"; target = \"app.internal:8080\"; "
	    ALLOW_WEB), 2,
	    "inbound route \"api\": target app.internal:8080 is not a "
	    "loopback address");
	expect_error(state, TLS_LINE INBOUND("name = \"api\"; "
	    "listen = \"0.0.0.0:8443\"; target = \"[2001:db8::1]:8080\"; "
	    ALLOW_WEB), 2,
	    "target [2001:db8::1]:8080 is not a loopback address");
}

static void
test_conf_inbound_target_loopback_forms(void **state)
{
	static const struct {
		const char	*target;
		const char	*canonical;
	} ok[] = {
		{ "127.0.0.2:80", "127.0.0.2:80" },
		{ "[::1]:80", "[::1]:80" },
		{ "localhost:80", "127.0.0.1:80" },
		{ "unix:/run/app.sock", "unix:/run/app.sock" },
	};
	struct fixture	*f = *state;
	char		 text[512], buf[ADDR_STR_MAX];
	size_t		 i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(text, sizeof(text), TLS_LINE
		    INBOUND("name = \"api\"; listen = \"0.0.0.0:8443\"; "
		    "target = \"%s\"; " ALLOW_WEB), ok[i].target);
		if (load(f, text) != 0)
			fail_msg("refused %s:\n%s", ok[i].target, f->err);
		assert_string_equal(addr_str(&f->conf->c_routes[0].r_target,
		    buf, sizeof(buf)), ok[i].canonical);
	}
}

static void
test_conf_outbound_listen_not_loopback(void **state)
{
	expect_error(state, TLS_LINE OUTBOUND("name = \"db\"; "
	    "listen = \"0.0.0.0:15432\"; target = \"db.internal:5432\"; "
	    ALLOW_WEB), 2,
	    "outbound route \"db\": listen 0.0.0.0:15432 is not a loopback "
	    "address or unix socket; plaintext must stay on this host");
}

static void
test_conf_outbound_target_any_host(void **state)
{
	struct fixture	*f = *state;
	char		 buf[ADDR_STR_MAX];

	if (load(f, TLS_LINE OUTBOUND("name = \"db\"; "
	    "listen = \"127.0.0.1:15432\"; target = \"[2001:db8::5]:5432\"; "
	    ALLOW_WEB)) != 0)
		fail_msg("refused:\n%s", f->err);
	assert_string_equal(addr_str(&f->conf->c_routes[0].r_target, buf,
	    sizeof(buf)), "[2001:db8::5]:5432");
	assert_string_equal(f->conf->c_routes[0].r_server_name,
	    "2001:db8::5");
}

static void
test_conf_admin_listen(void **state)
{
	struct fixture	*f = *state;
	char		 buf[ADDR_STR_MAX];

	expect_error(state, TLS_LINE IN_API("")
	    "admin = { listen = \"0.0.0.0:9901\"; };\n", 3,
	    "admin.listen 0.0.0.0:9901 is not a loopback address; the admin "
	    "endpoint is for this host only");
	expect_error(state, TLS_LINE IN_API("")
	    "admin = { listen = \"unix:/run/mtlsd.sock\"; };\n", 3,
	    "admin.listen unix:/run/mtlsd.sock: must be a loopback TCP "
	    "address, not a unix socket");
	expect_error(state, TLS_LINE IN_API("") "admin = { };\n", 3,
	    "admin.listen is required");

	if (load(f, TLS_LINE IN_API("")
	    "admin = { listen = \"localhost:9901\"; };\n") != 0)
		fail_msg("refused:\n%s", f->err);
	assert_true(f->conf->c_admin_enabled);
	assert_string_equal(addr_str(&f->conf->c_admin_listen, buf,
	    sizeof(buf)), "127.0.0.1:9901");
}

static void
test_conf_allow_missing(void **state)
{
	expect_error(state, TLS_LINE INBOUND("name = \"api\"; " IN_ADDRS), 2,
	    "inbound route \"api\": allow is missing; nothing is open by "
	    "default");
}

static void
test_conf_allow_empty(void **state)
{
	expect_error(state, TLS_LINE INBOUND("name = \"api\"; " IN_ADDRS
	    " allow = { uri = [ ]; };"), 2,
	    "inbound route \"api\": allow is empty; nothing is open by "
	    "default -- list the identities to accept (or write any = true;)");
	expect_error(state, TLS_LINE INBOUND("name = \"api\"; " IN_ADDRS
	    " allow = { };"), 2, "inbound route \"api\": allow is empty;");
}

static void
test_conf_allow_any_false_alone(void **state)
{
	expect_error(state, TLS_LINE INBOUND("name = \"api\"; " IN_ADDRS
	    " allow = { any = false; };"), 2,
	    "inbound route \"api\": allow is empty;");
}

static void
test_conf_allow_any_true(void **state)
{
	struct fixture	*f = *state;

	if (load(f, TLS_LINE INBOUND("name = \"api\"; " IN_ADDRS
	    " allow = { any = true; };")) != 0)
		fail_msg("refused:\n%s", f->err);
	assert_int_equal(f->conf->c_routes[0].r_allow.al_nrules, 1);
	assert_int_equal(f->conf->c_routes[0].r_allow.al_rules[0].ar_kind,
	    RULE_ANY);
	assert_null(f->conf->c_routes[0].r_allow.al_rules[0].ar_value);
}

static void
test_conf_allow_bad_pattern(void **state)
{
	expect_error(state, TLS_LINE INBOUND("name = \"api\"; " IN_ADDRS "\n"
	    "  allow = { uri = [ \"spiffe://example.org/ns/a*b\" ]; };"), 3,
	    "inbound route \"api\": allow.uri "
	    "\"spiffe://example.org/ns/a*b\": ");
	expect_error(state, TLS_LINE INBOUND("name = \"api\"; " IN_ADDRS
	    " allow = { dns = [ \"web.example.org\", \"\" ]; };"), 2,
	    "inbound route \"api\": allow.dns holds an empty string");
	expect_error(state, TLS_LINE INBOUND("name = \"api\"; " IN_ADDRS
	    " allow = { ip = ( \"10.0.0.1\", 5 ); };"), 2,
	    "inbound route \"api\": allow.ip must hold only strings (found an "
	    "integer)");
}

static void
test_conf_tls_route_override(void **state)
{
	struct fixture		*f = *state;
	const struct tls_conf	*tc;

	if (load(f, "tls = { cert = \"/g.crt\"; key = \"/g.key\"; "
	    "ca = \"/ca.crt\"; crl = \"/ca.crl\"; groups = \"P-256\"; };\n"
	    "inbound = (\n"
	    "  { name = \"a\"; " IN_ADDRS " " ALLOW_WEB "\n"
	    "    tls = { cert = \"/a.crt\"; key = \"/a.key\"; "
	    "crl_grace = 60; }; },\n"
	    "  { name = \"b\"; listen = \"0.0.0.0:8444\"; "
	    "target = \"127.0.0.1:8080\"; " ALLOW_WEB " }\n"
	    ");\n") != 0)
		fail_msg("refused:\n%s", f->err);
	tc = &f->conf->c_routes[0].r_tls;
	assert_string_equal(tc->tc_cert, "/a.crt");
	assert_string_equal(tc->tc_key, "/a.key");
	assert_string_equal(tc->tc_ca, "/ca.crt");
	assert_string_equal(tc->tc_crl, "/ca.crl");
	assert_string_equal(tc->tc_groups, "P-256");
	assert_true(tc->tc_crl_grace == 60.0);
	tc = &f->conf->c_routes[1].r_tls;
	assert_string_equal(tc->tc_cert, "/g.crt");
	assert_string_equal(tc->tc_key, "/g.key");
	assert_true(tc->tc_crl_grace == 0.0);
	/* Each route owns its copies: distinct from its neighbour's. */
	assert_ptr_not_equal(f->conf->c_routes[0].r_tls.tc_ca, tc->tc_ca);
}

static void
test_conf_tls_missing_after_merge(void **state)
{
	struct fixture	*f = *state;

	expect_error(state, "tls = { cert = \"/c\"; key = \"/k\"; };\n"
	    "inbound = (\n"
	    "  { name = \"a\"; " IN_ADDRS " " ALLOW_WEB " },\n"
	    "  { name = \"b\"; listen = \"0.0.0.0:8444\"; "
	    "target = \"127.0.0.1:8080\"; " ALLOW_WEB
	    " tls = { ca = \"/b-ca.crt\"; }; }\n"
	    ");\n", 3,
	    "inbound route \"a\": tls.ca is not set (give it in the global "
	    "tls { } or in the route's own tls { })");

	/* Without any tls at all, every route lacks all three. */
	assert_int_equal(load(f, IN_API("")), -1);
	assert_int_equal(nlines(f->err), 3);
	assert_contains(f->err, NAME ":1: inbound route \"api\": tls.cert is "
	    "not set");
	assert_contains(f->err, NAME ":1: inbound route \"api\": tls.key is "
	    "not set");
	assert_contains(f->err, NAME ":1: inbound route \"api\": tls.ca is "
	    "not set");
}

static void
test_conf_no_routes(void **state)
{
	expect_error(state, TLS_LINE, 0, "no routes: define at least one "
	    "inbound or outbound route");
	expect_error(state, TLS_LINE "inbound = ( );\noutbound = [ ];\n", 0,
	    "no routes");
	expect_error(state, "", 0, "no routes");
}

static void
test_conf_server_name(void **state)
{
	struct fixture	*f = *state;

	if (load(f, TLS_LINE OUT_DB("")) != 0)
		fail_msg("refused:\n%s", f->err);
	assert_string_equal(f->conf->c_routes[0].r_server_name,
	    "db.internal");

	expect_error(state, TLS_LINE OUTBOUND("name = \"db\"; "
	    "listen = \"127.0.0.1:15432\"; target = \"unix:/run/db.sock\"; "
	    ALLOW_WEB), 2,
	    "outbound route \"db\": server_name is required when the target "
	    "is a unix socket");
	expect_error(state, TLS_LINE OUT_DB("server_name = \"db:5432\";"), 2,
	    "outbound route \"db\": server_name \"db:5432\" must be a host "
	    "name or an IP address, without a port");
	expect_error(state, TLS_LINE OUT_DB("server_name = \"[::1]\";"), 2,
	    "server_name \"[::1]\" must be a host name");

	if (load(f, TLS_LINE OUTBOUND("name = \"db\"; "
	    "listen = \"unix:/run/mtlsd/db.sock\"; "
	    "target = \"unix:/run/db.sock\"; server_name = \"db.example\"; "
	    ALLOW_WEB)) != 0)
		fail_msg("refused:\n%s", f->err);
	assert_string_equal(f->conf->c_routes[0].r_server_name, "db.example");
}

/* A user fixing a file wants the whole list at once. */
static void
test_conf_multiple_errors(void **state)
{
	struct fixture	*f = *state;

	assert_int_equal(load(f,
	    "workers = \"two\";\n"				/* 1 */
	    "limits = { idle_timeout = 0; };\n"			/* 2 */
	    TLS_LINE						/* 3 */
	    "inbound = (\n"					/* 4 */
	    "  { name = \"api\"; listen = \"0.0.0.0:8443\";\n"	/* 5 */
	    "    target = \"10.1.2.3:80\"; " ALLOW_WEB " },\n"	/* 6 */
	    "  { name = \"api\"; listen = \"0.0.0.0:8444\";\n"	/* 7 */
	    "    target = \"127.0.0.1:80\"; }\n"		/* 8 */
	    ");\n"), -1);
	assert_int_equal(nlines(f->err), 5);
	assert_contains(f->err, NAME ":1: workers must be an integer");
	assert_contains(f->err, NAME ":2: limits.idle_timeout must be "
	    "greater than 0");
	assert_contains(f->err, NAME ":6: inbound route \"api\": target "
	    "10.1.2.3:80 is not a loopback address");
	assert_contains(f->err, NAME ":7: inbound route \"api\": allow is "
	    "missing");
	assert_contains(f->err, NAME ":7: inbound route \"api\": the name is "
	    "already used by the inbound route at line 5");
}

static void
test_conf_load_file(void **state)
{
	struct fixture	*f = *state;
	char		 path[] = "/tmp/test_conf.XXXXXX";
	FILE		*fp, *errf;
	int		 fd;

	assert_true((fd = mkstemp(path)) != -1);
	assert_non_null(fp = fdopen(fd, "w"));
	fputs(TLS_LINE IN_API(""), fp);
	assert_int_equal(fclose(fp), 0);
	assert_non_null(errf = open_memstream(&f->err, &f->errlen));
	assert_int_equal(conf_load(path, errf, &f->conf), 0);
	assert_non_null(f->conf);
	assert_string_equal(f->conf->c_path, path);
	conf_free(f->conf);
	f->conf = NULL;

	assert_int_equal(unlink(path), 0);
	assert_int_equal(conf_load(path, errf, &f->conf), -1);
	assert_null(f->conf);
	assert_int_equal(fclose(errf), 0);
	assert_contains(f->err, path);
	assert_contains(f->err, ": No such file or directory\n");
	assert_int_equal(nlines(f->err), 1);
}

static void
test_conf_print_shows_effective_routes(void **state)
{
	struct fixture	*f = *state;
	FILE		*out;

	if (load(f, TLS_LINE IN_API("proxy_protocol = true;")
	    OUT_DB("tls = { min_version = \"1.3\"; };")) != 0)
		fail_msg("refused:\n%s", f->err);
	assert_non_null(out = open_memstream(&f->out, &f->outlen));
	conf_print(f->conf, out);
	assert_int_equal(fclose(out), 0);
	assert_contains(f->out, "inbound route \"api\" (line 2)\n");
	assert_contains(f->out, "  listen               0.0.0.0:8443\n");
	assert_contains(f->out, "  target               127.0.0.1:8080\n");
	assert_contains(f->out, "  proxy_protocol       true\n");
	assert_contains(f->out, "  allow                uri "
	    "spiffe://example.org/web\n");
	assert_contains(f->out, "  tls.ca               /c/ca.crt\n");
	assert_contains(f->out, "  tls.crl              (none)\n");
	assert_contains(f->out, "outbound route \"db\" (line 3)\n");
	assert_contains(f->out, "  server_name          db.internal\n");
	assert_contains(f->out, "  allow                dns db.internal\n");
	assert_contains(f->out, "  tls.min_version      1.3\n");
	assert_contains(f->out, "  tls.ciphersuites     "
	    CONF_DEFAULT_CIPHERSUITES "\n");
	assert_contains(f->out, "max_connections 10000");
	assert_contains(f->out, "admin.listen           (off)\n");
}

static void
test_conf_names(void **state)
{
	(void)state;
	assert_string_equal(conf_rule_kind_name(RULE_URI), "uri");
	assert_string_equal(conf_rule_kind_name(RULE_EMAIL), "email");
	assert_string_equal(conf_rule_kind_name(RULE_O), "o");
	assert_string_equal(conf_rule_kind_name(RULE_ANY), "any");
	assert_string_equal(conf_route_dir_name(ROUTE_INBOUND), "inbound");
	assert_string_equal(conf_route_dir_name(ROUTE_OUTBOUND), "outbound");
	conf_free(NULL);
}

#define T(name)	cmocka_unit_test_setup_teardown(name, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_conf_full_valid),
		T(test_conf_defaults),
		T(test_conf_syntax_error),
		T(test_conf_duplicate_key),
		T(test_conf_unknown_top_key),
		T(test_conf_unknown_key_limits),
		T(test_conf_unknown_key_tls),
		T(test_conf_unknown_key_log_sandbox_admin),
		T(test_conf_unknown_key_route),
		T(test_conf_unknown_key_route_tls),
		T(test_conf_unknown_key_allow),
		T(test_conf_outbound_proxy_protocol_rejected),
		T(test_conf_wrong_types),
		T(test_conf_wrong_type_reported_once),
		T(test_conf_bad_log_level_and_format),
		T(test_conf_min_version_too_old),
		T(test_conf_timeouts_must_be_positive),
		T(test_conf_zero_durations_allowed),
		T(test_conf_max_connections_zero),
		T(test_conf_workers_range),
		T(test_conf_route_missing_name),
		T(test_conf_route_bad_name),
		T(test_conf_route_missing_listen),
		T(test_conf_route_missing_target),
		T(test_conf_duplicate_route_name),
		T(test_conf_duplicate_listen),
		T(test_conf_bad_addresses),
		T(test_conf_inbound_target_not_loopback),
		T(test_conf_inbound_target_loopback_forms),
		T(test_conf_outbound_listen_not_loopback),
		T(test_conf_outbound_target_any_host),
		T(test_conf_admin_listen),
		T(test_conf_allow_missing),
		T(test_conf_allow_empty),
		T(test_conf_allow_any_false_alone),
		T(test_conf_allow_any_true),
		T(test_conf_allow_bad_pattern),
		T(test_conf_tls_route_override),
		T(test_conf_tls_missing_after_merge),
		T(test_conf_no_routes),
		T(test_conf_server_name),
		T(test_conf_multiple_errors),
		T(test_conf_load_file),
		T(test_conf_print_shows_effective_routes),
		T(test_conf_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
