/*
 * The admin endpoint (loopback only): /healthz, /status, /metrics, on
 * the main thread's loop with libevent's evhttp.  It reads the workers'
 * counters (atomics) and the current generation, which only the main
 * thread swaps, so it needs no lock.
 */
#include <sys/socket.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "mtlsd/addr.h"
#include "mtlsd/admin.h"
#include "mtlsd/conf.h"
#include "mtlsd/log.h"
#include "mtlsd/proxy.h"
#include "mtlsd/sandbox.h"
#include "mtlsd/stats.h"
#include "mtlsd/tls.h"
#include "mtlsd/version.h"

#define HEALTH_TIMEOUT_MS	2000

struct admin {
	struct proxy		*a_proxy;
	struct evhttp		*a_http;
	int			 a_fd;
};

static void	admin_request(struct evhttp_request *, void *);
static void	admin_status(struct admin *, struct evbuffer *);
static void	admin_metrics(struct admin *, struct evbuffer *);
static void	json_str(struct evbuffer *, const char *);
static void	json_time(struct evbuffer *, time_t);

struct admin *
admin_new(struct proxy *p)
{
	const struct addr	*a = &p->p_gen->g_conf->c_admin_listen;
	struct admin		*ad;
	char			 as[ADDR_STR_MAX];
	int			 one = 1;

	if ((ad = calloc(1, sizeof(*ad))) == NULL)
		return NULL;
	ad->a_proxy = p;
	ad->a_fd = socket(a->a_ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (ad->a_fd == -1) {
		log_warn("admin: socket");
		goto fail;
	}
	setsockopt(ad->a_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(ad->a_fd, (const struct sockaddr *)&a->a_ss,
	    a->a_sslen) == -1 || listen(ad->a_fd, 64) == -1) {
		log_warn("admin: cannot listen on %s",
		    addr_str(a, as, sizeof(as)));
		goto fail;
	}
	if ((ad->a_http = evhttp_new(p->p_base)) == NULL ||
	    evhttp_accept_socket(ad->a_http, ad->a_fd) == -1) {
		log_warnx("admin: cannot set up the HTTP server");
		goto fail;
	}
	ad->a_fd = -1;		/* evhttp owns it now */
	evhttp_set_allowed_methods(ad->a_http, EVHTTP_REQ_GET |
	    EVHTTP_REQ_HEAD);
	evhttp_set_timeout(ad->a_http, 5);
	evhttp_set_max_headers_size(ad->a_http, 8192);
	evhttp_set_max_body_size(ad->a_http, 0);
	evhttp_set_gencb(ad->a_http, admin_request, ad);
	log_info("admin endpoint on http://%s/ (healthz, status, metrics)",
	    addr_str(a, as, sizeof(as)));
	return ad;
fail:
	admin_free(ad);
	return NULL;
}

void
admin_free(struct admin *ad)
{
	if (ad == NULL)
		return;
	if (ad->a_http != NULL)
		evhttp_free(ad->a_http);
	if (ad->a_fd != -1)
		close(ad->a_fd);
	free(ad);
}

static void
admin_request(struct evhttp_request *req, void *arg)
{
	struct admin		*ad = arg;
	struct proxy		*p = ad->a_proxy;
	struct evbuffer		*body;
	struct evkeyvalq	*hdr = evhttp_request_get_output_headers(req);
	const char		*uri = evhttp_request_get_uri(req);
	char			 path[64];
	size_t			 n;
	int			 code = 200;

	if ((body = evbuffer_new()) == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	/* The path alone: a query string changes nothing here. */
	n = strcspn(uri, "?");
	snprintf(path, sizeof(path), "%.*s", (int)(n < 63 ? n : 63), uri);
	if (strcmp(path, "/healthz") == 0) {
		evhttp_add_header(hdr, "Content-Type", "text/plain");
		if (atomic_load(&p->p_stopping) != 0) {
			code = 503;
			evbuffer_add_printf(body, "draining\n");
		} else
			evbuffer_add_printf(body, "ok\n");
	} else if (strcmp(path, "/status") == 0) {
		evhttp_add_header(hdr, "Content-Type", "application/json");
		admin_status(ad, body);
	} else if (strcmp(path, "/metrics") == 0) {
		evhttp_add_header(hdr, "Content-Type",
		    "text/plain; version=0.0.4; charset=utf-8");
		admin_metrics(ad, body);
	} else {
		code = 404;
		evhttp_add_header(hdr, "Content-Type", "text/plain");
		evbuffer_add_printf(body, "not found: try /healthz, /status "
		    "or /metrics\n");
	}
	evhttp_add_header(hdr, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, code == 200 ? "OK" : code == 503 ?
	    "Service Unavailable" : "Not Found", body);
	evbuffer_free(body);
}

static void
json_str(struct evbuffer *b, const char *s)
{
	unsigned char	c;

	evbuffer_add(b, "\"", 1);
	for (; s != NULL && *s != '\0'; s++) {
		c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			evbuffer_add_printf(b, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			evbuffer_add_printf(b, "\\u%04x", c);
		else
			evbuffer_add(b, s, 1);
	}
	evbuffer_add(b, "\"", 1);
}

/* RFC 3339 in UTC, or null. */
static void
json_time(struct evbuffer *b, time_t t)
{
	struct tm	tm;
	char		buf[32];

	if (t == 0) {
		evbuffer_add_printf(b, "null");
		return;
	}
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_str(b, buf);
}

static void
admin_status(struct admin *ad, struct evbuffer *b)
{
	struct proxy		*p = ad->a_proxy;
	const struct conf	*conf = p->p_gen->g_conf;
	const struct route	*r;
	const struct sandbox_state *st;
	struct tls_info		 ti;
	char			 a1[ADDR_STR_MAX], a2[ADDR_STR_MAX];
	size_t			 i;

	evbuffer_add_printf(b, "{\"version\":");
	json_str(b, MTLSD_VERSION);
	evbuffer_add_printf(b, ",\"uptime_seconds\":%lld,\"generation\":%u,"
	    "\"draining\":%s,\"active_connections\":%u,\"reload\":{\"time\":",
	    (long long)(time(NULL) - p->p_started_at), p->p_gen->g_id,
	    atomic_load(&p->p_stopping) != 0 ? "true" : "false",
	    atomic_load(&p->p_active));
	json_time(b, p->p_reload_time);
	evbuffer_add_printf(b, ",\"result\":");
	json_str(b, p->p_reload_time == 0 ? "none" :
	    p->p_reload_ok ? "ok" : "failed");
	evbuffer_add_printf(b, ",\"error\":");
	if (p->p_reload_ok)
		evbuffer_add_printf(b, "null");
	else
		json_str(b, p->p_reload_error);
	evbuffer_add_printf(b, "},\"sandbox\":");
	if (p->p_sandbox == NULL)
		evbuffer_add_printf(b, "null");
	else {
		st = &p->p_sandbox->sb_state;
		evbuffer_add_printf(b, "{\"uid\":%u,\"gid\":%u,"
		    "\"CapEff\":\"%016llx\",\"CapPrm\":\"%016llx\","
		    "\"CapBnd\":\"%016llx\",\"NoNewPrivs\":%d,\"Seccomp\":%d}",
		    (unsigned)st->ss_uid[1], (unsigned)st->ss_gid[1],
		    (unsigned long long)st->ss_capeff,
		    (unsigned long long)st->ss_capprm,
		    (unsigned long long)st->ss_capbnd, st->ss_nonewprivs,
		    st->ss_seccomp);
	}
	evbuffer_add_printf(b, ",\"routes\":[");
	for (i = 0; i < conf->c_nroutes; i++) {
		r = &conf->c_routes[i];
		tls_route_info(p->p_gen->g_tls[i], &ti);
		evbuffer_add_printf(b, "%s{\"name\":", i > 0 ? "," : "");
		json_str(b, r->r_name);
		evbuffer_add_printf(b, ",\"direction\":");
		json_str(b, conf_route_dir_name(r->r_dir));
		evbuffer_add_printf(b, ",\"listen\":");
		json_str(b, addr_str(&r->r_listen, a1, sizeof(a1)));
		evbuffer_add_printf(b, ",\"target\":");
		json_str(b, addr_str(&r->r_target, a2, sizeof(a2)));
		evbuffer_add_printf(b, ",\"active_connections\":%ld,"
		    "\"certificate\":{\"subject\":",
		    atomic_load(&p->p_stats.st_routes[i].rs_active));
		json_str(b, ti.ti_subject);
		evbuffer_add_printf(b, ",\"sans\":");
		json_str(b, ti.ti_sans);
		evbuffer_add_printf(b, ",\"sha256\":");
		json_str(b, ti.ti_fingerprint);
		evbuffer_add_printf(b, ",\"not_after\":");
		json_time(b, ti.ti_not_after);
		evbuffer_add_printf(b, "},\"crl_next_update\":");
		json_time(b, ti.ti_crl_next_update);
		evbuffer_add_printf(b, "}");
	}
	evbuffer_add_printf(b, "]}\n");
}

static void
admin_metrics(struct admin *ad, struct evbuffer *b)
{
	struct proxy		*p = ad->a_proxy;
	const struct conf	*conf = p->p_gen->g_conf;
	struct route_stats	*rs;
	struct tls_info		 ti;
	unsigned long		 cum = 0;
	const char		*name;
	size_t			 i;
	int			 k;

	evbuffer_add_printf(b, "# HELP mtlsd_connections_total Client "
	    "connections, by route and how they ended.\n"
	    "# TYPE mtlsd_connections_total counter\n");
	for (i = 0; i < conf->c_nroutes; i++)
		for (k = 0; k < RESULT__COUNT; k++)
			evbuffer_add_printf(b, "mtlsd_connections_total{route="
			    "\"%s\",result=\"%s\"} %lu\n",
			    conf->c_routes[i].r_name, stats_result_name(k),
			    atomic_load(&p->p_stats.st_routes[i].rs_conns[k]));
	evbuffer_add_printf(b, "# HELP mtlsd_connections_active Client "
	    "connections open now.\n# TYPE mtlsd_connections_active gauge\n");
	for (i = 0; i < conf->c_nroutes; i++)
		evbuffer_add_printf(b, "mtlsd_connections_active{route=\"%s\"} "
		    "%ld\n", conf->c_routes[i].r_name,
		    atomic_load(&p->p_stats.st_routes[i].rs_active));
	evbuffer_add_printf(b, "# HELP mtlsd_bytes_total Bytes relayed: in "
	    "from the client towards the target, out back to the client.\n"
	    "# TYPE mtlsd_bytes_total counter\n");
	for (i = 0; i < conf->c_nroutes; i++) {
		rs = &p->p_stats.st_routes[i];
		name = conf->c_routes[i].r_name;
		evbuffer_add_printf(b, "mtlsd_bytes_total{route=\"%s\","
		    "direction=\"in\"} %lu\n", name,
		    atomic_load(&rs->rs_bytes_in));
		evbuffer_add_printf(b, "mtlsd_bytes_total{route=\"%s\","
		    "direction=\"out\"} %lu\n", name,
		    atomic_load(&rs->rs_bytes_out));
	}
	evbuffer_add_printf(b, "# HELP mtlsd_handshake_seconds Duration of "
	    "completed TLS handshakes.\n"
	    "# TYPE mtlsd_handshake_seconds histogram\n");
	for (k = 0; k < STATS_HS_BUCKETS; k++) {
		cum += atomic_load(&p->p_stats.st_hs_buckets[k]);
		evbuffer_add_printf(b, "mtlsd_handshake_seconds_bucket{le=\""
		    "%g\"} %lu\n", stats_hs_bounds[k], cum);
	}
	cum += atomic_load(&p->p_stats.st_hs_buckets[STATS_HS_BUCKETS]);
	evbuffer_add_printf(b, "mtlsd_handshake_seconds_bucket{le=\"+Inf\"} "
	    "%lu\nmtlsd_handshake_seconds_sum %.6f\n"
	    "mtlsd_handshake_seconds_count %lu\n", cum,
	    (double)atomic_load(&p->p_stats.st_hs_sum_us) / 1e6, cum);
	evbuffer_add_printf(b, "# HELP mtlsd_cert_expiry_timestamp_seconds "
	    "notAfter of the route's own certificate.\n"
	    "# TYPE mtlsd_cert_expiry_timestamp_seconds gauge\n");
	for (i = 0; i < conf->c_nroutes; i++) {
		tls_route_info(p->p_gen->g_tls[i], &ti);
		evbuffer_add_printf(b, "mtlsd_cert_expiry_timestamp_seconds{"
		    "route=\"%s\"} %lld\n", conf->c_routes[i].r_name,
		    (long long)ti.ti_not_after);
	}
	evbuffer_add_printf(b, "# HELP mtlsd_reloads_total Reloads of "
	    "certificates, keys, CA, CRL and rules.\n"
	    "# TYPE mtlsd_reloads_total counter\n"
	    "mtlsd_reloads_total{result=\"ok\"} %lu\n"
	    "mtlsd_reloads_total{result=\"failed\"} %lu\n",
	    atomic_load(&p->p_stats.st_reloads_ok),
	    atomic_load(&p->p_stats.st_reloads_failed));
	evbuffer_add_printf(b, "# HELP mtlsd_rejections_total Peers turned "
	    "away, by route and reason.\n"
	    "# TYPE mtlsd_rejections_total counter\n");
	for (i = 0; i < conf->c_nroutes; i++)
		for (k = REASON_NO_CERTIFICATE; k < REASON__COUNT; k++)
			evbuffer_add_printf(b, "mtlsd_rejections_total{route="
			    "\"%s\",reason=\"%s\"} %lu\n",
			    conf->c_routes[i].r_name, tls_reason_name(k),
			    atomic_load(
			    &p->p_stats.st_routes[i].rs_rejections[k]));
}

/*
 * mtlsd --health: one blocking GET /healthz with a deadline.  For
 * container health checks in images that have no curl.
 */
int
admin_health(const struct conf *conf)
{
	const struct addr	*a = &conf->c_admin_listen;
	struct pollfd		 pfd;
	char			 buf[256];
	const char		*req = "GET /healthz HTTP/1.0\r\n"
				    "Host: mtlsd\r\n\r\n";
	size_t			 off = 0;
	ssize_t			 n;
	int			 fd, err = 0;
	socklen_t		 len = sizeof(err);

	if (!conf->c_admin_enabled) {
		fprintf(stderr, "mtlsd: --health needs admin = { listen = "
		    "\"127.0.0.1:PORT\"; } in %s\n", conf->c_path);
		return 1;
	}
	if ((fd = socket(a->a_ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1)
		goto fail;
	if (connect(fd, (const struct sockaddr *)&a->a_ss, a->a_sslen) == -1) {
		if (errno != EINPROGRESS)
			goto fail;
		pfd.fd = fd;
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, HEALTH_TIMEOUT_MS) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 ||
		    err != 0) {
			errno = err != 0 ? err : ETIMEDOUT;
			goto fail;
		}
	}
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
		goto fail;
	pfd.fd = fd;
	pfd.events = POLLIN;
	while (off < sizeof(buf) - 1) {
		if (poll(&pfd, 1, HEALTH_TIMEOUT_MS) != 1) {
			errno = ETIMEDOUT;
			goto fail;
		}
		if ((n = recv(fd, buf + off, sizeof(buf) - 1 - off, 0)) <= 0)
			break;
		off += (size_t)n;
	}
	close(fd);
	buf[off] = '\0';
	if (strncmp(buf, "HTTP/1.", 7) == 0 && strncmp(buf + 8, " 200", 4) ==
	    0) {
		printf("healthy\n");
		return 0;
	}
	printf("unhealthy: %.*s\n", (int)strcspn(buf, "\r\n"), buf);
	return 1;
fail:
	printf("unhealthy: %s\n", strerror(errno));
	if (fd != -1)
		close(fd);
	return 1;
}
