/*
 * mtlsd: command line, start-up order, exit status.
 *
 * Start-up: configuration, then every TLS context (reads the keys), then
 * the listeners, then the event loops.  Nothing is bound before the whole
 * configuration has proven good.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "mtlsd/admin.h"
#include "mtlsd/conf.h"
#include "mtlsd/log.h"
#include "mtlsd/proxy.h"
#include "mtlsd/reload.h"
#include "mtlsd/sandbox.h"
#include "mtlsd/tls.h"
#include "mtlsd/version.h"

/* The contract's exit codes. */
#define EXIT_OK		0
#define EXIT_RUNTIME	1
#define EXIT_CONFIG	2

enum {
	OPT_EXPLAIN = 256,
	OPT_ROUTE,
	OPT_HEALTH
};

static const struct option long_opts[] = {
	{ "config",	required_argument,	NULL, 'c' },
	{ "check",	no_argument,		NULL, 't' },
	{ "foreground",	no_argument,		NULL, 'f' },
	{ "explain",	required_argument,	NULL, OPT_EXPLAIN },
	{ "route",	required_argument,	NULL, OPT_ROUTE },
	{ "health",	no_argument,		NULL, OPT_HEALTH },
	{ "version",	no_argument,		NULL, 'V' },
	{ "help",	no_argument,		NULL, 'h' },
	{ NULL,		0,			NULL, 0 }
};

static void	usage(FILE *);
static int	explain(const struct conf *, struct tls_route **,
		    const char *, const char *);
static int	sandbox_started(void *);

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: mtlsd [-c FILE] [-f]           run (default FILE: %s)\n"
	    "       mtlsd -t -c FILE               check the configuration "
	    "and print the routes\n"
	    "       mtlsd -c FILE --explain PEER.pem --route NAME\n"
	    "                                      judge a peer's chain as "
	    "the route would\n"
	    "       mtlsd -c FILE --health         ask the running instance "
	    "(GET /healthz)\n"
	    "       mtlsd -V | --version\n"
	    "       mtlsd -h | --help\n"
	    "long forms: --config, --check, --foreground\n"
	    "exit: 0 ok (explain: accepted), 1 runtime failure (explain: "
	    "rejected), 2 bad usage or configuration\n", CONF_DEFAULT_PATH);
}

static int
explain(const struct conf *conf, struct tls_route **tls, const char *pem,
    const char *route)
{
	size_t	i;
	int	rc;

	if (route == NULL) {
		if (conf->c_nroutes != 1) {
			fprintf(stderr, "mtlsd: --explain needs --route NAME "
			    "(the configuration has %zu routes)\n",
			    conf->c_nroutes);
			return EXIT_CONFIG;
		}
		route = conf->c_routes[0].r_name;
	}
	for (i = 0; i < conf->c_nroutes; i++)
		if (strcmp(conf->c_routes[i].r_name, route) == 0)
			break;
	if (i == conf->c_nroutes) {
		fprintf(stderr, "mtlsd: no route named \"%s\" in %s\n", route,
		    conf->c_path);
		return EXIT_CONFIG;
	}
	rc = tls_explain(tls[i], pem, stdout);
	if (rc == -1)
		return EXIT_CONFIG;
	return rc == 0 ? EXIT_OK : EXIT_RUNTIME;
}

/* Once every worker thread exists: each must show the dropped state. */
static int
sandbox_started(void *arg)
{
	struct sandbox	*sb = arg;
	char		 err[512];

	if (sandbox_check(sb, err, sizeof(err)) == -1) {
		log_errorx("sandbox check failed after start: %s; refusing "
		    "to serve", err);
		return -1;
	}
	return 0;
}

int
main(int argc, char *argv[])
{
	struct gen	*g = NULL;
	struct conf	*conf;
	struct proxy	*p = NULL;
	struct sandbox	 sb;
	sigset_t	 held;
	char		 err[512], state[256];
	const char	*path = CONF_DEFAULT_PATH;
	const char	*pem = NULL, *route = NULL;
	size_t		 i;
	int		 ch, check = 0, health = 0, rc = EXIT_RUNTIME;

	while ((ch = getopt_long(argc, argv, "c:tfVh", long_opts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'f':
			/* mtlsd never daemonises: accepted for habit. */
			break;
		case OPT_EXPLAIN:
			pem = optarg;
			break;
		case OPT_ROUTE:
			route = optarg;
			break;
		case OPT_HEALTH:
			health = 1;
			break;
		case 'V':
			printf("mtlsd %s\n%s\nlibevent %s\n", MTLSD_VERSION,
			    OpenSSL_version(OPENSSL_VERSION),
			    event_get_version());
			return EXIT_OK;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_CONFIG;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "mtlsd: unexpected argument \"%s\"\n",
		    argv[optind]);
		usage(stderr);
		return EXIT_CONFIG;
	}
	if (route != NULL && pem == NULL) {
		fprintf(stderr, "mtlsd: --route goes with --explain\n");
		return EXIT_CONFIG;
	}
	if (check + (pem != NULL) + health > 1) {
		fprintf(stderr, "mtlsd: -t, --explain and --health go one at "
		    "a time\n");
		return EXIT_CONFIG;
	}
	if (health) {
		/* Only the admin address is needed: no key is read. */
		if (conf_load(path, stderr, &conf) == -1)
			return EXIT_CONFIG;
		rc = admin_health(conf);
		conf_free(conf);
		return rc;
	}

	/*
	 * A reload asked for before the loop runs has nothing to reload:
	 * the material is being read right now.  It must not kill us.
	 */
	signal(SIGHUP, SIG_IGN);
	if (tls_init() == -1 || (g = gen_load(path, 1, stderr)) == NULL)
		return EXIT_CONFIG;
	conf = g->g_conf;
	log_init(conf->c_log_level, conf->c_log_format);
	if (check) {
		conf_print(conf, stdout);
		printf("configuration %s is valid\n", conf->c_path);
		rc = EXIT_OK;
		goto out;
	}
	if (pem != NULL) {
		rc = explain(conf, g->g_tls, pem, route);
		goto out;
	}

	/* Writes to a closed peer are errors to handle, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	/*
	 * From the first bound socket until the loop handles them, a stop
	 * or reload request waits (proxy_run unblocks it), so that it gets
	 * a clean drain, never the default action.
	 */
	sigemptyset(&held);
	sigaddset(&held, SIGTERM);
	sigaddset(&held, SIGINT);
	sigaddset(&held, SIGHUP);
	sigprocmask(SIG_BLOCK, &held, NULL);
	if (evthread_use_pthreads() == -1) {
		log_errorx("libevent has no thread support");
		goto out;
	}
	for (i = 0; i < conf->c_nroutes; i++)
		if (tls_route_check_own(g->g_tls[i], err, sizeof(err)) == -1)
			log_warnx("%s: peers that trust only that CA will "
			    "refuse it", err);
	if ((p = proxy_new(g, path)) == NULL || proxy_bind(p) == -1)
		goto out;

	/* Bound and loaded: now give up everything that is left. */
	if (sandbox_prepare(conf, &sb, err, sizeof(err)) == -1 ||
	    sandbox_enter(&sb, err, sizeof(err)) == -1) {
		log_errorx("sandbox: %s; refusing to serve", err);
		goto out;
	}
	if (!conf->c_seccomp)
		log_warnx("sandbox: the seccomp filter is OFF "
		    "(sandbox.seccomp = false): any system call is allowed");
	if (sandbox_check(&sb, err, sizeof(err)) == -1) {
		log_errorx("sandbox check failed: %s; refusing to serve", err);
		goto out;
	}
	sandbox_state_str(&sb.sb_state, state, sizeof(state));
	log_info("sandbox: %s", state);
	p->p_started = sandbox_started;
	p->p_started_arg = &sb;
	p->p_sandbox = &sb;
	log_info("mtlsd %s started with %zu route%s", MTLSD_VERSION,
	    conf->c_nroutes, conf->c_nroutes == 1 ? "" : "s");
	rc = proxy_run(p);
out:
	proxy_free(p);
	gen_unref(g);
	return rc;
}
