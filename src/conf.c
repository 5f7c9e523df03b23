/*
 * The configuration: libconfig text in, one validated struct conf out.
 * This is the only file that knows libconfig.  Every string is copied, so
 * nothing in struct conf refers to the config_t, which is destroyed before
 * conf_load() returns.
 *
 * conf_build() works in four steps, as OpenSSH's servconf does: every field
 * starts unset; the file is read, each value checked on its own where its
 * line is known; defaults are filled in one place; then the checks that
 * span several values run.  Every problem is reported, not only the first:
 * someone fixing a file wants the whole list at once.
 */
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include <libconfig.h>

#include "mtlsd/addr.h"
#include "mtlsd/conf.h"
#include "mtlsd/policy.h"

/* Every valid duration is >= 0, so a negative one means "not given". */
#define CONF_UNSET_SECONDS	(-1.0)
/* Far beyond any sane timeout, and small enough for any time_t sum. */
#define CONF_SECONDS_MAX	(365.0 * 86400.0)
#define CONF_WORKERS_MAX	256
#define CONF_MSG_MAX		1024
#define CONF_NAME_CHARS		"ABCDEFGHIJKLMNOPQRSTUVWXYZ"	\
	"abcdefghijklmnopqrstuvwxyz0123456789_.-"
#define T(type)			(1 << CONFIG_TYPE_ ## type)

/* A route while it is read: where it came from, and what parsed. */
struct route_ctx {
	const config_setting_t	*rc_set;
	struct route		*rc_route;
	int			 rc_index;	/* 1-based, in its list */
	int			 rc_listen_ok;
	int			 rc_target_ok;
};

struct conf_ctx {
	FILE			*cx_errf;
	const char		*cx_name;	/* stands for the file */
	int			 cx_nerrors;
	int			 cx_lists_bad;	/* a route list mistyped */
	/* -1 while unset: the enums in conf.h have no such value. */
	int			 cx_log_level;
	int			 cx_log_format;
	struct tls_conf		 cx_tls;	/* the global tls { } */
	struct route_ctx	*cx_rctx;	/* parallel to c_routes */
};

/* The group being read, and how messages about its keys name it. */
struct scope {
	struct conf_ctx		*sc_cx;
	const struct route_ctx	*sc_route;	/* NULL: not in a route */
	const config_setting_t	*sc_set;
	const char		*sc_group;	/* "tls"; NULL: top, route */
};

static void	 conf_verr(const struct scope *, const config_setting_t *,
		    const char *, va_list)
		    __attribute__((__format__(printf, 3, 0)));
static void	 conf_err(const struct scope *, const config_setting_t *,
		    const char *, ...)
		    __attribute__((__format__(printf, 3, 4)));
static void	 conf_keyerr(const struct scope *, const config_setting_t *,
		    const char *, const char *, ...)
		    __attribute__((__format__(printf, 4, 5)));
static char	*conf_strdup(struct conf_ctx *, const char *);
static void	 conf_join(const char *const *, char *, size_t);
static void	 conf_keys(const struct scope *, const char *const *);
static const config_setting_t *conf_typed(const struct scope *, const char *,
		    int, const char *, int *);
static int	 conf_get_group(const struct scope *, const char *,
		    struct scope *);
static int	 conf_get_string(const struct scope *, const char *,
		    const char **);
static int	 conf_get_bool(const struct scope *, const char *, int *);
static int	 conf_get_int(const struct scope *, const char *, long long,
		    long long, long long *);
static int	 conf_get_seconds(const struct scope *, const char *, int,
		    double *);
static int	 conf_get_enum(const struct scope *, const char *,
		    const char *const *, int *);
static char	**conf_tls_field(struct tls_conf *, size_t);
static void	 conf_tls_unset(struct tls_conf *);
static void	 conf_tls_free(struct tls_conf *);
static void	 conf_tls(const struct scope *, struct tls_conf *);
static void	 conf_tls_fill(struct conf_ctx *, struct tls_conf *,
		    struct tls_conf *);
static int	 conf_route_addr(const struct scope *, const char *,
		    struct addr *, int);
static int	 conf_server_name_ok(const char *);
static void	 conf_allow_value(const struct scope *,
		    const config_setting_t *, int, const char *,
		    struct allow *);
static void	 conf_allow(const struct scope *, struct allow *);
static void	 conf_route(struct conf_ctx *, struct route_ctx *);
static void	 conf_route_free(struct route *);
static void	 conf_routes(const struct scope *, struct conf *);
static void	 conf_admin(const struct scope *, struct conf *);
static void	 conf_parse(struct conf_ctx *, const config_setting_t *,
		    struct conf *);
static void	 conf_defaults(struct conf_ctx *, struct conf *);
static int	 conf_addr_equal(const struct addr *, const struct addr *);
static void	 conf_validate(struct conf_ctx *, struct conf *);
static int	 conf_build(config_t *, const char *, FILE *, struct conf **);

static const char *const top_keys[] = { "user", "group", "workers", "log",
	"admin", "sandbox", "limits", "tls", "inbound", "outbound", NULL };
static const char *const log_keys[] = { "level", "format", NULL };
static const char *const admin_keys[] = { "listen", NULL };
static const char *const sandbox_keys[] = { "seccomp", NULL };
static const char *const limits_keys[] = { "max_connections",
	"handshake_timeout", "connect_timeout", "idle_timeout",
	"drain_timeout", NULL };
static const char *const tls_keys[] = { "cert", "key", "ca", "crl",
	"crl_grace", "min_version", "ciphers", "ciphersuites", "groups",
	"reload_interval", NULL };
static const char *const inbound_keys[] = { "name", "listen", "target",
	"allow", "proxy_protocol", "tls", NULL };
static const char *const outbound_keys[] = { "name", "listen", "target",
	"server_name", "allow", "tls", NULL };
/* Indexed by enum rule_kind; also the keys of allow { }. */
static const char *const rule_names[] = { "uri", "dns", "ip", "email", "cn",
	"ou", "o", "any", NULL };
/* Indexed by enum log_level and enum log_format. */
static const char *const level_names[] = { "error", "warn", "info", "debug",
	NULL };
static const char *const format_names[] = { "text", "json", NULL };
/* Indexed by CONFIG_TYPE_*. */
static const char *const type_names[] = { "nothing", "a group",
	"an integer", "an integer", "a number", "a string", "a boolean",
	"an array", "a list" };

/*
 * The string fields of struct tls_conf, which inherit and default alike.
 * The first TLS_NREQUIRED have no default: every route must end up with them.
 */
static const struct {
	const char	*ts_key;
	size_t		 ts_off;
	const char	*ts_default;
} tls_strings[] = {
	{ "cert", offsetof(struct tls_conf, tc_cert), NULL },
	{ "key", offsetof(struct tls_conf, tc_key), NULL },
	{ "ca", offsetof(struct tls_conf, tc_ca), NULL },
	{ "crl", offsetof(struct tls_conf, tc_crl), NULL },
	{ "ciphers", offsetof(struct tls_conf, tc_ciphers),
	    CONF_DEFAULT_CIPHERS },
	{ "ciphersuites", offsetof(struct tls_conf, tc_ciphersuites),
	    CONF_DEFAULT_CIPHERSUITES },
	{ "groups", offsetof(struct tls_conf, tc_groups), CONF_DEFAULT_GROUPS },
};
#define TLS_NSTRINGS	(sizeof(tls_strings) / sizeof(tls_strings[0]))
#define TLS_NREQUIRED	3

/*
 * Writes "FILE:LINE: [route: ]message" for setting s, or "FILE: ..." where
 * no line is known (s NULL, or the root).  An included file names itself.
 */
static void
conf_verr(const struct scope *sc, const config_setting_t *s, const char *fmt,
    va_list ap)
{
	struct conf_ctx		*cx = sc->sc_cx;
	const struct route	*r;
	const char		*file = cx->cx_name;
	unsigned int		 line = 0;

	if (s != NULL) {
		if (config_setting_source_file(s) != NULL)
			file = config_setting_source_file(s);
		line = config_setting_source_line(s);
	}
	if (line > 0)
		fprintf(cx->cx_errf, "%s:%u: ", file, line);
	else
		fprintf(cx->cx_errf, "%s: ", file);
	if (sc->sc_route != NULL) {
		r = sc->sc_route->rc_route;
		if (r->r_name != NULL)
			fprintf(cx->cx_errf, "%s route \"%s\": ",
			    conf_route_dir_name(r->r_dir), r->r_name);
		else
			fprintf(cx->cx_errf, "%s route #%d: ",
			    conf_route_dir_name(r->r_dir),
			    sc->sc_route->rc_index);
	}
	vfprintf(cx->cx_errf, fmt, ap);
	fputc('\n', cx->cx_errf);
	cx->cx_nerrors++;
}

static void
conf_err(const struct scope *sc, const config_setting_t *s, const char *fmt,
    ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	conf_verr(sc, s, fmt, ap);
	va_end(ap);
}

/* A message about one key, named as the user writes it: "limits.x". */
static void
conf_keyerr(const struct scope *sc, const config_setting_t *s,
    const char *key, const char *fmt, ...)
{
	char	 msg[CONF_MSG_MAX];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conf_err(sc, s, "%s%s%s %s", sc->sc_group != NULL ? sc->sc_group : "",
	    sc->sc_group != NULL ? "." : "", key, msg);
}

static char *
conf_strdup(struct conf_ctx *cx, const char *s)
{
	char	*p;

	if (s == NULL)
		return NULL;
	if ((p = strdup(s)) == NULL) {
		fprintf(cx->cx_errf, "%s: out of memory\n", cx->cx_name);
		cx->cx_nerrors++;
	}
	return p;
}

static void
conf_join(const char *const *names, char *buf, size_t len)
{
	size_t	 i;

	buf[0] = '\0';
	for (i = 0; names[i] != NULL; i++) {
		strncat(buf, i > 0 ? ", " : "", len - strlen(buf) - 1);
		strncat(buf, names[i], len - strlen(buf) - 1);
	}
}

/* A misspelt key must never be ignored: it may be what makes a rule strict. */
static void
conf_keys(const struct scope *sc, const char *const *keys)
{
	const config_setting_t	*s;
	const char		*name;
	char			 list[CONF_MSG_MAX];
	size_t			 i;
	int			 k;

	conf_join(keys, list, sizeof(list));
	for (k = 0; k < config_setting_length(sc->sc_set); k++) {
		s = config_setting_get_elem(sc->sc_set, (unsigned int)k);
		name = config_setting_name(s);
		for (i = 0; keys[i] != NULL; i++)
			if (strcmp(keys[i], name) == 0)
				break;
		if (keys[i] == NULL)
			conf_err(sc, s, "unknown key \"%s\"%s%s; expected one "
			    "of: %s", name, sc->sc_group != NULL ? " in " :
			    sc->sc_route != NULL ? "" : " at the top level",
			    sc->sc_group != NULL ? sc->sc_group : "", list);
	}
}

/*
 * The setting of key, when it has one of the types in mask (T(...) bits).
 * Otherwise NULL, with *rc 0 when key is absent, or -1 when it has the
 * wrong type (reported as: must be <what>).
 */
static const config_setting_t *
conf_typed(const struct scope *sc, const char *key, int mask,
    const char *what, int *rc)
{
	const config_setting_t	*s;

	*rc = 0;
	if ((s = config_setting_get_member(sc->sc_set, key)) == NULL)
		return NULL;
	if ((mask & (1 << config_setting_type(s))) == 0) {
		conf_keyerr(sc, s, key, "must be %s (found %s)", what,
		    type_names[config_setting_type(s)]);
		*rc = -1;
		return NULL;
	}
	*rc = 1;
	return s;
}

/*
 * The getters return 1 when key is present and valid (the value is then
 * stored), 0 when it is absent, and -1 after reporting what is wrong.
 */
static int
conf_get_group(const struct scope *sc, const char *key, struct scope *out)
{
	int	 rc;

	out->sc_cx = sc->sc_cx;
	out->sc_route = sc->sc_route;
	out->sc_set = conf_typed(sc, key, T(GROUP), "a group { ... }", &rc);
	out->sc_group = key;
	return rc;
}

/* Also sets *val for an empty string, which some callers still record. */
static int
conf_get_string(const struct scope *sc, const char *key, const char **val)
{
	const config_setting_t	*s;
	int			 rc;

	*val = NULL;
	if ((s = conf_typed(sc, key, T(STRING), "a string", &rc)) == NULL)
		return rc;
	if ((*val = config_setting_get_string(s)) == NULL || **val == '\0') {
		conf_keyerr(sc, s, key, "must not be empty");
		return -1;
	}
	return 1;
}

static int
conf_get_bool(const struct scope *sc, const char *key, int *val)
{
	const config_setting_t	*s;
	int			 rc;

	if ((s = conf_typed(sc, key, T(BOOL), "true or false", &rc)) != NULL)
		*val = config_setting_get_bool(s) ? 1 : 0;
	return rc;
}

static int
conf_get_int(const struct scope *sc, const char *key, long long min,
    long long max, long long *val)
{
	const config_setting_t	*s;
	long long		 v;
	int			 rc;

	if ((s = conf_typed(sc, key, T(INT) | T(INT64), "an integer",
	    &rc)) == NULL)
		return rc;
	if ((v = config_setting_get_int64(s)) >= min && v <= max) {
		*val = v;
		return 1;
	}
	if (max == INT_MAX)
		conf_keyerr(sc, s, key, "must be at least %lld (found %lld)",
		    min, v);
	else
		conf_keyerr(sc, s, key, "must be from %lld to %lld (found "
		    "%lld)", min, max, v);
	return -1;
}

/* Seconds, written as an integer or not: "timeout = 5;" means 5.0. */
static int
conf_get_seconds(const struct scope *sc, const char *key, int zero_ok,
    double *val)
{
	const config_setting_t	*s;
	double			 v;
	int			 rc;

	if ((s = conf_typed(sc, key, T(INT) | T(INT64) | T(FLOAT),
	    "a number of seconds", &rc)) == NULL)
		return rc;
	if (config_setting_type(s) == CONFIG_TYPE_FLOAT)
		v = config_setting_get_float(s);
	else
		v = (double)config_setting_get_int64(s);
	if (zero_ok && !(v >= 0.0))
		conf_keyerr(sc, s, key, "must not be negative (found %g)", v);
	else if (!zero_ok && !(v > 0.0))
		conf_keyerr(sc, s, key, "must be greater than 0 seconds "
		    "(found %g)", v);
	else if (!isfinite(v) || v > CONF_SECONDS_MAX)
		conf_keyerr(sc, s, key, "must be at most %.0f seconds (a year)",
		    CONF_SECONDS_MAX);
	else {
		*val = v;
		return 1;
	}
	return -1;
}

/* One of the names, stored as its index. */
static int
conf_get_enum(const struct scope *sc, const char *key,
    const char *const *names, int *val)
{
	const char	*v;
	char		 list[CONF_MSG_MAX];
	int		 i, rc;

	if ((rc = conf_get_string(sc, key, &v)) != 1 || v == NULL)
		return rc == 1 ? -1 : rc;
	for (i = 0; names[i] != NULL; i++) {
		if (strcmp(names[i], v) == 0) {
			*val = i;
			return 1;
		}
	}
	conf_join(names, list, sizeof(list));
	conf_keyerr(sc, config_setting_get_member(sc->sc_set, key), key,
	    "must be one of %s (found \"%s\")", list, v);
	return -1;
}

static char **
conf_tls_field(struct tls_conf *tc, size_t i)
{
	return (char **)(void *)((char *)tc + tls_strings[i].ts_off);
}

static void
conf_tls_unset(struct tls_conf *tc)
{
	memset(tc, 0, sizeof(*tc));
	tc->tc_crl_grace = CONF_UNSET_SECONDS;
	tc->tc_min_version = 0;
	tc->tc_reload_interval = CONF_UNSET_SECONDS;
}

static void
conf_tls_free(struct tls_conf *tc)
{
	size_t	 i;

	for (i = TLS_NSTRINGS; i-- > 0;)
		free(*conf_tls_field(tc, i));
	conf_tls_unset(tc);
}

/* The files are not opened here: the TLS module loads them and reports. */
static void
conf_tls(const struct scope *sc, struct tls_conf *tc)
{
	const config_setting_t	*s;
	const char		*v;
	size_t			 i;
	int			 rc;

	conf_keys(sc, tls_keys);
	for (i = 0; i < TLS_NSTRINGS; i++) {
		/*
		 * A mistyped or empty value is recorded as "", so that the
		 * one mistake is not reported again as "not set" for every
		 * route that inherits it.
		 */
		if ((rc = conf_get_string(sc, tls_strings[i].ts_key, &v)) != 0)
			*conf_tls_field(tc, i) = conf_strdup(sc->sc_cx,
			    rc == 1 ? v : "");
	}
	conf_get_seconds(sc, "crl_grace", 1, &tc->tc_crl_grace);
	conf_get_seconds(sc, "reload_interval", 1, &tc->tc_reload_interval);

	if (conf_get_string(sc, "min_version", &v) != 1)
		return;
	s = config_setting_get_member(sc->sc_set, "min_version");
	if (strcmp(v, "1.2") == 0)
		tc->tc_min_version = TLS1_2_VERSION;
	else if (strcmp(v, "1.3") == 0)
		tc->tc_min_version = TLS1_3_VERSION;
	else if (strcmp(v, "1.0") == 0 || strcmp(v, "1.1") == 0 ||
	    strcmp(v, "1") == 0 || strncasecmp(v, "ssl", 3) == 0)
		conf_keyerr(sc, s, "min_version", "\"%s\": nothing older than "
		    "TLS 1.2 is possible; write \"1.2\" or \"1.3\"", v);
	else
		conf_keyerr(sc, s, "min_version", "must be \"1.2\" or \"1.3\" "
		    "(found \"%s\")", v);
}

/*
 * A route's own tls { } wins field by field over the global g, then the
 * defaults fill what neither gave.  cert, key and ca have no default:
 * conf_validate() insists on them.
 */
static void
conf_tls_fill(struct conf_ctx *cx, struct tls_conf *tc, struct tls_conf *g)
{
	char	**f;
	size_t	  i;

	for (i = 0; i < TLS_NSTRINGS; i++) {
		if (*(f = conf_tls_field(tc, i)) != NULL)
			continue;
		if (*conf_tls_field(g, i) != NULL)
			*f = conf_strdup(cx, *conf_tls_field(g, i));
		else if (tls_strings[i].ts_default != NULL)
			*f = conf_strdup(cx, tls_strings[i].ts_default);
	}
	if (tc->tc_crl_grace < 0.0)
		tc->tc_crl_grace = g->tc_crl_grace < 0.0 ? 0.0 :
		    g->tc_crl_grace;
	if (tc->tc_min_version == 0)
		tc->tc_min_version = g->tc_min_version == 0 ?
		    TLS1_2_VERSION : g->tc_min_version;
	if (tc->tc_reload_interval < 0.0)
		tc->tc_reload_interval = g->tc_reload_interval < 0.0 ? 0.0 :
		    g->tc_reload_interval;
}

/*
 * Reads a required address.  local: plaintext flows through it, so it must
 * stay on this host.  Returns 1 when *a is valid.
 */
static int
conf_route_addr(const struct scope *sc, const char *key, struct addr *a,
    int local)
{
	const config_setting_t	*s;
	const char		*v;
	char			 err[CONF_MSG_MAX];
	int			 rc;

	if ((rc = conf_get_string(sc, key, &v)) == 0)
		conf_err(sc, sc->sc_set, "%s is required", key);
	if (rc != 1)
		return 0;
	s = config_setting_get_member(sc->sc_set, key);
	if (addr_parse(v, a, err, sizeof(err)) == -1) {
		conf_keyerr(sc, s, key, "%s", err);
		return 0;
	}
	if (local && !addr_is_local(a)) {
		conf_keyerr(sc, s, key, "%s is not a loopback address or unix "
		    "socket; plaintext must stay on this host%s", v,
		    a->a_kind == ADDR_NAME ? " (a host name could resolve "
		    "anywhere: write 127.0.0.1, [::1] or localhost)" : "");
		return 0;
	}
	return 1;
}

/* What SNI and the certificate check can use: a host name or an IP. */
static int
conf_server_name_ok(const char *name)
{
	struct in6_addr	 in6;
	const char	*p;
	size_t		 label = 0;

	if (inet_pton(AF_INET, name, &in6) == 1 ||
	    inet_pton(AF_INET6, name, &in6) == 1)
		return 1;
	if (strlen(name) > 253)
		return 0;
	for (p = name;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || label > 63)
				return 0;
			if (*p == '\0')
				return 1;
			label = 0;
		} else if (isalnum((unsigned char)*p) || *p == '-' ||
		    *p == '_')
			label++;
		else
			return 0;
	}
}

static void
conf_allow_value(const struct scope *sc, const config_setting_t *s, int kind,
    const char *v, struct allow *al)
{
	struct allow_rule	*ar;
	char			 err[CONF_MSG_MAX];

	if (*v == '\0') {
		conf_keyerr(sc, s, rule_names[kind], "holds an empty string");
		return;
	}
	if (policy_rule_check((enum rule_kind)kind, v, err,
	    sizeof(err)) == -1) {
		conf_keyerr(sc, s, rule_names[kind], "\"%s\": %s", v, err);
		return;
	}
	ar = &al->al_rules[al->al_nrules];
	ar->ar_kind = (enum rule_kind)kind;
	if ((ar->ar_value = conf_strdup(sc->sc_cx, v)) != NULL)
		al->al_nrules++;
}

/*
 * Nothing is open by default: a route whose allow yields no rule at all is
 * an error, not a route that quietly refuses everyone.  Rules keep the
 * order of the file.
 */
static void
conf_allow(const struct scope *rsc, struct allow *al)
{
	static const char	 empty[] = "nothing is open by default -- "
	    "list the identities to accept (or write any = true;)";
	struct scope		 sc;
	const config_setting_t	*s, *e;
	size_t			 max = 0;
	int			 any, i, j, k, n, nerrors;

	if (conf_get_group(rsc, "allow", &sc) == 0)
		conf_err(rsc, rsc->sc_set, "allow is missing; %s", empty);
	if (sc.sc_set == NULL)
		return;
	nerrors = sc.sc_cx->cx_nerrors;
	conf_keys(&sc, rule_names);
	n = config_setting_length(sc.sc_set);
	for (i = 0; i < n; i++) {
		s = config_setting_get_elem(sc.sc_set, (unsigned int)i);
		max += config_setting_is_aggregate(s) ?
		    (size_t)config_setting_length(s) : 1;
	}
	if (max > 0 &&
	    (al->al_rules = calloc(max, sizeof(*al->al_rules))) == NULL) {
		conf_err(&sc, NULL, "out of memory");
		return;
	}
	for (i = 0; i < n; i++) {
		s = config_setting_get_elem(sc.sc_set, (unsigned int)i);
		for (k = 0; rule_names[k] != NULL; k++)
			if (strcmp(rule_names[k], config_setting_name(s)) == 0)
				break;
		if (rule_names[k] == NULL)
			continue;	/* conf_keys() reported it */
		if (k == RULE_ANY) {
			/* "any = false;" is allowed, and adds nothing. */
			any = 0;
			if (conf_get_bool(&sc, "any", &any) == 1 && any)
				al->al_rules[al->al_nrules++].ar_kind =
				    RULE_ANY;
		} else if (config_setting_type(s) == CONFIG_TYPE_STRING)
			conf_allow_value(&sc, s, k,
			    config_setting_get_string(s), al);
		else if (config_setting_is_array(s) ||
		    config_setting_is_list(s)) {
			for (j = 0; j < config_setting_length(s); j++) {
				e = config_setting_get_elem(s, (unsigned int)j);
				if (config_setting_type(e) ==
				    CONFIG_TYPE_STRING)
					conf_allow_value(&sc, e, k,
					    config_setting_get_string(e), al);
				else
					conf_keyerr(&sc, e, rule_names[k],
					    "must hold only strings (found %s)",
					    type_names[config_setting_type(e)]);
			}
		} else
			conf_keyerr(&sc, s, rule_names[k], "must be a string "
			    "or a list of strings (found %s)",
			    type_names[config_setting_type(s)]);
	}
	if (al->al_nrules == 0 && sc.sc_cx->cx_nerrors == nerrors)
		conf_err(rsc, sc.sc_set, "allow is empty; %s", empty);
}

static void
conf_route(struct conf_ctx *cx, struct route_ctx *rc)
{
	struct scope	 sc, tsc;
	struct route	*r = rc->rc_route;
	const char	*v;
	int		 in = r->r_dir == ROUTE_INBOUND;

	sc.sc_cx = cx;
	sc.sc_route = rc;
	sc.sc_set = rc->rc_set;
	sc.sc_group = NULL;
	r->r_line = (int)config_setting_source_line(rc->rc_set);
	if (!config_setting_is_group(rc->rc_set)) {
		conf_err(&sc, rc->rc_set, "must be a group { name = ...; } "
		    "(found %s)", type_names[config_setting_type(rc->rc_set)]);
		return;
	}

	/* The name first: every later message about this route uses it. */
	switch (conf_get_string(&sc, "name", &v)) {
	case 0:
		conf_err(&sc, rc->rc_set, "name is required");
		break;
	case 1:
		if (strspn(v, CONF_NAME_CHARS) == strlen(v))
			r->r_name = conf_strdup(cx, v);
		else
			conf_keyerr(&sc, config_setting_get_member(rc->rc_set,
			    "name"), "name", "\"%s\" may hold only letters, "
			    "digits, '_', '.' and '-'", v);
		break;
	}
	conf_keys(&sc, in ? inbound_keys : outbound_keys);

	rc->rc_listen_ok = conf_route_addr(&sc, "listen", &r->r_listen, !in);
	/*
	 * A listen address is an IP (or localhost, or a socket path): a
	 * name would make loading, -t and every reload depend on DNS.
	 */
	if (rc->rc_listen_ok && r->r_listen.a_kind == ADDR_NAME) {
		conf_keyerr(&sc, config_setting_get_member(rc->rc_set,
		    "listen"), "listen", "%s:%u: write an IP address "
		    "(0.0.0.0 or [::] for every interface), not a host name",
		    r->r_listen.a_host, r->r_listen.a_port);
		rc->rc_listen_ok = 0;
	}
	rc->rc_target_ok = conf_route_addr(&sc, "target", &r->r_target, in);

	if (!in && conf_get_string(&sc, "server_name", &v) == 1) {
		if (conf_server_name_ok(v))
			r->r_server_name = conf_strdup(cx, v);
		else
			conf_keyerr(&sc, config_setting_get_member(rc->rc_set,
			    "server_name"), "server_name", "\"%s\" must be a "
			    "host name or an IP address, without a port", v);
	}
	conf_allow(&sc, &r->r_allow);
	if (in)
		conf_get_bool(&sc, "proxy_protocol", &r->r_proxy_protocol);
	if (conf_get_group(&sc, "tls", &tsc) == 1)
		conf_tls(&tsc, &r->r_tls);
}

static void
conf_route_free(struct route *r)
{
	size_t	 i;

	conf_tls_free(&r->r_tls);
	for (i = r->r_allow.al_nrules; i-- > 0;)
		free(r->r_allow.al_rules[i].ar_value);
	free(r->r_allow.al_rules);
	free(r->r_server_name);
	free(r->r_name);
}

/* inbound first, then outbound, each in the order of the file. */
static void
conf_routes(const struct scope *sc, struct conf *conf)
{
	static const char *const lists[] = { "inbound", "outbound" };
	struct conf_ctx		*cx = sc->sc_cx;
	const config_setting_t	*l[2];
	struct route_ctx	*rc;
	size_t			 total = 0;
	int			 d, i, rv;

	for (d = 0; d < 2; d++) {
		/* libconfig reads an empty "[ ]" as an array, not a list. */
		l[d] = conf_typed(sc, lists[d], T(LIST) | T(ARRAY),
		    "a list of routes ( { ... }, ... )", &rv);
		if (rv == -1 || (l[d] != NULL &&
		    config_setting_is_array(l[d]) &&
		    config_setting_length(l[d]) > 0)) {
			if (rv != -1)
				conf_keyerr(sc, l[d], lists[d], "must be a "
				    "list of routes ( { ... }, ... ), not an "
				    "array");
			cx->cx_lists_bad = 1;
			l[d] = NULL;
		}
		if (l[d] != NULL)
			total += (size_t)config_setting_length(l[d]);
	}
	if (total == 0)
		return;
	conf->c_routes = calloc(total, sizeof(*conf->c_routes));
	cx->cx_rctx = calloc(total, sizeof(*cx->cx_rctx));
	if (conf->c_routes == NULL || cx->cx_rctx == NULL) {
		conf_err(sc, NULL, "out of memory");
		return;
	}
	for (d = 0; d < 2; d++) {
		for (i = 0; l[d] != NULL && i < config_setting_length(l[d]);
		    i++) {
			rc = &cx->cx_rctx[conf->c_nroutes];
			rc->rc_route = &conf->c_routes[conf->c_nroutes++];
			rc->rc_route->r_dir = d == 0 ? ROUTE_INBOUND :
			    ROUTE_OUTBOUND;
			rc->rc_route->r_proxy_protocol = -1;
			conf_tls_unset(&rc->rc_route->r_tls);
			rc->rc_index = i + 1;
			rc->rc_set = config_setting_get_elem(l[d],
			    (unsigned int)i);
			conf_route(cx, rc);
		}
	}
}

/* The admin endpoint answers anyone who can connect: this host only. */
static void
conf_admin(const struct scope *sc, struct conf *conf)
{
	struct scope		 asc;
	const config_setting_t	*s;
	const char		*v;
	char			 err[CONF_MSG_MAX];
	int			 rc;

	if (conf_get_group(sc, "admin", &asc) != 1)
		return;
	conf_keys(&asc, admin_keys);
	if ((rc = conf_get_string(&asc, "listen", &v)) == 0)
		conf_err(&asc, asc.sc_set, "admin.listen is required (remove "
		    "admin { } to turn the endpoint off)");
	if (rc != 1)
		return;
	s = config_setting_get_member(asc.sc_set, "listen");
	if (addr_parse(v, &conf->c_admin_listen, err, sizeof(err)) == -1)
		conf_keyerr(&asc, s, "listen", "%s", err);
	else if (conf->c_admin_listen.a_kind == ADDR_UNIX)
		conf_keyerr(&asc, s, "listen", "%s: must be a loopback TCP "
		    "address, not a unix socket", v);
	else if (!addr_is_local(&conf->c_admin_listen))
		conf_keyerr(&asc, s, "listen", "%s is not a loopback address; "
		    "the admin endpoint is for this host only (write "
		    "127.0.0.1, [::1] or localhost)", v);
	else
		conf->c_admin_enabled = 1;
}

static void
conf_parse(struct conf_ctx *cx, const config_setting_t *root,
    struct conf *conf)
{
	struct scope	 top, sc;
	struct limits	*l = &conf->c_limits;
	const char	*v;
	long long	 ll;

	top.sc_cx = cx;
	top.sc_route = NULL;
	top.sc_set = root;
	top.sc_group = NULL;
	conf_keys(&top, top_keys);

	if (conf_get_string(&top, "user", &v) == 1)
		conf->c_user = conf_strdup(cx, v);
	if (conf_get_string(&top, "group", &v) == 1)
		conf->c_group = conf_strdup(cx, v);
	if (conf_get_int(&top, "workers", 0, CONF_WORKERS_MAX, &ll) == 1)
		conf->c_workers = (int)ll;
	if (conf_get_group(&top, "log", &sc) == 1) {
		conf_keys(&sc, log_keys);
		conf_get_enum(&sc, "level", level_names, &cx->cx_log_level);
		conf_get_enum(&sc, "format", format_names, &cx->cx_log_format);
	}
	conf_admin(&top, conf);
	if (conf_get_group(&top, "sandbox", &sc) == 1) {
		conf_keys(&sc, sandbox_keys);
		conf_get_bool(&sc, "seccomp", &conf->c_seccomp);
	}
	if (conf_get_group(&top, "limits", &sc) == 1) {
		conf_keys(&sc, limits_keys);
		if (conf_get_int(&sc, "max_connections", 1, INT_MAX, &ll) == 1)
			l->l_max_connections = (unsigned int)ll;
		conf_get_seconds(&sc, "handshake_timeout", 0,
		    &l->l_handshake_timeout);
		conf_get_seconds(&sc, "connect_timeout", 0,
		    &l->l_connect_timeout);
		conf_get_seconds(&sc, "idle_timeout", 0, &l->l_idle_timeout);
		conf_get_seconds(&sc, "drain_timeout", 0, &l->l_drain_timeout);
	}
	if (conf_get_group(&top, "tls", &sc) == 1)
		conf_tls(&sc, &cx->cx_tls);
	conf_routes(&top, conf);
}

/* The one place where an unset value takes its default. */
static void
conf_defaults(struct conf_ctx *cx, struct conf *conf)
{
	struct limits	*l = &conf->c_limits;
	struct route	*r;
	size_t		 i;

	if (conf->c_workers == -1)
		conf->c_workers = 0;
	conf->c_log_level = cx->cx_log_level == -1 ? LOG_LEVEL_INFO :
	    (enum log_level)cx->cx_log_level;
	conf->c_log_format = cx->cx_log_format == -1 ? LOG_FORMAT_TEXT :
	    (enum log_format)cx->cx_log_format;
	if (conf->c_seccomp == -1)
		conf->c_seccomp = 1;
	if (l->l_max_connections == 0)
		l->l_max_connections = 10000;
	if (l->l_handshake_timeout < 0.0)
		l->l_handshake_timeout = 10.0;
	if (l->l_connect_timeout < 0.0)
		l->l_connect_timeout = 5.0;
	if (l->l_idle_timeout < 0.0)
		l->l_idle_timeout = 300.0;
	if (l->l_drain_timeout < 0.0)
		l->l_drain_timeout = 30.0;

	for (i = 0; i < conf->c_nroutes; i++) {
		r = &conf->c_routes[i];
		if (r->r_proxy_protocol == -1)
			r->r_proxy_protocol = 0;
		conf_tls_fill(cx, &r->r_tls, &cx->cx_tls);
		/* SNI and the name check default to the host dialled. */
		if (r->r_dir == ROUTE_OUTBOUND && r->r_server_name == NULL &&
		    cx->cx_rctx[i].rc_target_ok &&
		    r->r_target.a_kind != ADDR_UNIX)
			r->r_server_name = conf_strdup(cx, r->r_target.a_host);
	}
}

static int
conf_addr_equal(const struct addr *a, const struct addr *b)
{
	if (a->a_kind == ADDR_UNIX || b->a_kind == ADDR_UNIX)
		return a->a_kind == b->a_kind &&
		    strcmp(a->a_path, b->a_path) == 0;
	return a->a_sslen == b->a_sslen &&
	    memcmp(&a->a_ss, &b->a_ss, a->a_sslen) == 0;
}

/* The checks that span several values, once the defaults are in. */
static void
conf_validate(struct conf_ctx *cx, struct conf *conf)
{
	struct scope		 sc;
	struct route_ctx	*rc, *oc;
	struct route		*r, *o;
	char			 buf[ADDR_STR_MAX];
	size_t			 i, j;

	sc.sc_cx = cx;
	sc.sc_route = NULL;
	sc.sc_set = NULL;
	sc.sc_group = NULL;
	if (conf->c_nroutes == 0 && !cx->cx_lists_bad)
		conf_err(&sc, NULL, "no routes: define at least one inbound "
		    "or outbound route");

	for (i = 0; i < conf->c_nroutes; i++) {
		rc = &cx->cx_rctx[i];
		r = rc->rc_route;
		sc.sc_route = rc;
		if (!config_setting_is_group(rc->rc_set))
			continue;	/* reported, and nothing was read */
		for (j = 0; j < TLS_NREQUIRED; j++)
			if (*conf_tls_field(&r->r_tls, j) == NULL)
				conf_err(&sc, rc->rc_set, "tls.%s is not set "
				    "(give it in the global tls { } or in the "
				    "route's own tls { })",
				    tls_strings[j].ts_key);
		if (r->r_dir == ROUTE_OUTBOUND && r->r_server_name == NULL &&
		    rc->rc_target_ok && config_setting_get_member(rc->rc_set,
		    "server_name") == NULL)
			conf_err(&sc, rc->rc_set, "server_name is required "
			    "when the target is a unix socket: it names the "
			    "certificate the server must present");
		for (j = 0; j < i; j++) {
			oc = &cx->cx_rctx[j];
			o = oc->rc_route;
			if (r->r_name != NULL && o->r_name != NULL &&
			    strcmp(r->r_name, o->r_name) == 0)
				conf_err(&sc, rc->rc_set, "the name is already "
				    "used by the %s route at line %d",
				    conf_route_dir_name(o->r_dir), o->r_line);
			if (rc->rc_listen_ok && oc->rc_listen_ok &&
			    conf_addr_equal(&r->r_listen, &o->r_listen))
				conf_err(&sc, rc->rc_set, "listen %s is "
				    "already used by the %s route at line %d",
				    addr_str(&r->r_listen, buf, sizeof(buf)),
				    conf_route_dir_name(o->r_dir), o->r_line);
		}
		if (rc->rc_listen_ok && conf->c_admin_enabled &&
		    conf_addr_equal(&r->r_listen, &conf->c_admin_listen))
			conf_err(&sc, rc->rc_set, "listen %s is already used "
			    "by admin.listen",
			    addr_str(&r->r_listen, buf, sizeof(buf)));
	}
}

static int
conf_build(config_t *cfg, const char *name, FILE *errf, struct conf **out)
{
	struct conf_ctx	 cx;
	struct conf	*conf;
	const char	*file;

	memset(&cx, 0, sizeof(cx));
	cx.cx_errf = errf;
	cx.cx_name = name;
	cx.cx_log_level = -1;
	cx.cx_log_format = -1;
	conf_tls_unset(&cx.cx_tls);

	if ((conf = calloc(1, sizeof(*conf))) == NULL ||
	    (conf->c_path = strdup(name)) == NULL) {
		fprintf(errf, "%s: out of memory\n", name);
		free(conf);
		return -1;
	}
	conf->c_workers = -1;
	conf->c_seccomp = -1;
	conf->c_limits.l_handshake_timeout = CONF_UNSET_SECONDS;
	conf->c_limits.l_connect_timeout = CONF_UNSET_SECONDS;
	conf->c_limits.l_idle_timeout = CONF_UNSET_SECONDS;
	conf->c_limits.l_drain_timeout = CONF_UNSET_SECONDS;

	if (config_error_type(cfg) != CONFIG_ERR_NONE) {
		/* An error inside an @include names the included file. */
		file = config_error_file(cfg) != NULL ?
		    config_error_file(cfg) : name;
		if (config_error_line(cfg) > 0)
			fprintf(errf, "%s:%d: %s\n", file,
			    config_error_line(cfg), config_error_text(cfg));
		else
			fprintf(errf, "%s: %s\n", file, config_error_text(cfg));
		cx.cx_nerrors++;
	} else {
		conf_parse(&cx, config_root_setting(cfg), conf);
		conf_defaults(&cx, conf);
		conf_validate(&cx, conf);
	}

	conf_tls_free(&cx.cx_tls);
	free(cx.cx_rctx);
	if (cx.cx_nerrors > 0) {
		conf_free(conf);
		return -1;
	}
	*out = conf;
	return 0;
}

int
conf_load(const char *path, FILE *errf, struct conf **out)
{
	config_t	 cfg;
	struct stat	 st;
	FILE		*fp;
	int		 rc;

	*out = NULL;
	if (errf == NULL)
		errf = stderr;
	/* Opened here, not by libconfig, to say why it cannot be read. */
	if ((fp = fopen(path, "r")) == NULL) {
		fprintf(errf, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
		fprintf(errf, "%s: %s\n", path, strerror(EISDIR));
		fclose(fp);
		return -1;
	}
	config_init(&cfg);
	config_read(&cfg, fp);
	fclose(fp);
	rc = conf_build(&cfg, path, errf, out);
	config_destroy(&cfg);
	return rc;
}

int
conf_load_string(const char *text, const char *name, FILE *errf,
    struct conf **out)
{
	config_t	 cfg;
	int		 rc;

	*out = NULL;
	if (errf == NULL)
		errf = stderr;
	if (name == NULL)
		name = "(string)";
	config_init(&cfg);
	config_read_string(&cfg, text != NULL ? text : "");
	rc = conf_build(&cfg, name, errf, out);
	config_destroy(&cfg);
	return rc;
}

void
conf_free(struct conf *conf)
{
	size_t	 i;

	if (conf == NULL)
		return;
	for (i = conf->c_nroutes; i-- > 0;)
		conf_route_free(&conf->c_routes[i]);
	free(conf->c_routes);
	free(conf->c_group);
	free(conf->c_user);
	free(conf->c_path);
	free(conf);
}

const char *
conf_rule_kind_name(enum rule_kind kind)
{
	if ((unsigned int)kind > RULE_ANY)
		return "?";
	return rule_names[kind];
}

const char *
conf_route_dir_name(enum route_dir dir)
{
	return dir == ROUTE_INBOUND ? "inbound" : "outbound";
}

const char *
conf_log_level_name(enum log_level level)
{
	if ((unsigned int)level > LOG_LEVEL_DEBUG)
		return "?";
	return level_names[level];
}

const char *
conf_log_format_name(enum log_format format)
{
	return format == LOG_FORMAT_JSON ? "json" : "text";
}
