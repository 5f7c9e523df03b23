/*
 * The effective configuration in words, for `mtlsd -t`.  Kept apart from
 * conf.c, which is the libconfig grammar and its checks.
 */
#include <stdio.h>

#include <openssl/ssl.h>

#include "mtlsd/addr.h"
#include "mtlsd/conf.h"

void
conf_print(const struct conf *conf, FILE *out)
{
	const struct limits	*l = &conf->c_limits;
	const struct route	*r;
	const struct tls_conf	*tc;
	const struct allow_rule	*ar;
	char			 buf[ADDR_STR_MAX];
	size_t			 i, j;

	fprintf(out, "# effective configuration of %s\n", conf->c_path);
	fprintf(out, "user                   %s\n", conf->c_user != NULL ?
	    conf->c_user : "(unset: 65534 when started as root)");
	fprintf(out, "group                  %s\n", conf->c_group != NULL ?
	    conf->c_group : "(unset: 65534 when started as root)");
	fprintf(out, "workers                %d%s\n", conf->c_workers,
	    conf->c_workers == 0 ? " (one per online CPU)" : "");
	fprintf(out, "log                    level %s, format %s\n",
	    conf_log_level_name(conf->c_log_level),
	    conf_log_format_name(conf->c_log_format));
	fprintf(out, "admin.listen           %s\n", conf->c_admin_enabled ?
	    addr_str(&conf->c_admin_listen, buf, sizeof(buf)) : "(off)");
	fprintf(out, "sandbox.seccomp        %s\n",
	    conf->c_seccomp ? "true" : "false");
	fprintf(out, "limits                 max_connections %u, "
	    "handshake_timeout %gs, connect_timeout %gs, idle_timeout %gs, "
	    "drain_timeout %gs\n", l->l_max_connections,
	    l->l_handshake_timeout, l->l_connect_timeout, l->l_idle_timeout,
	    l->l_drain_timeout);

	for (i = 0; i < conf->c_nroutes; i++) {
		r = &conf->c_routes[i];
		tc = &r->r_tls;
		fprintf(out, "\n%s route \"%s\" (line %d)\n",
		    conf_route_dir_name(r->r_dir), r->r_name, r->r_line);
		fprintf(out, "  listen               %s\n",
		    addr_str(&r->r_listen, buf, sizeof(buf)));
		fprintf(out, "  target               %s\n",
		    addr_str(&r->r_target, buf, sizeof(buf)));
		if (r->r_dir == ROUTE_OUTBOUND)
			fprintf(out, "  server_name          %s\n",
			    r->r_server_name);
		else
			fprintf(out, "  proxy_protocol       %s\n",
			    r->r_proxy_protocol ? "true" : "false");
		for (j = 0; j < r->r_allow.al_nrules; j++) {
			ar = &r->r_allow.al_rules[j];
			fprintf(out, "  allow                %s%s%s\n",
			    conf_rule_kind_name(ar->ar_kind),
			    ar->ar_value != NULL ? " " : "",
			    ar->ar_value != NULL ? ar->ar_value : "");
		}
		fprintf(out, "  tls.cert             %s\n"
		    "  tls.key              %s\n"
		    "  tls.ca               %s\n"
		    "  tls.crl              %s\n"
		    "  tls.crl_grace        %gs\n"
		    "  tls.min_version      %s\n"
		    "  tls.ciphers          %s\n"
		    "  tls.ciphersuites     %s\n"
		    "  tls.groups           %s\n"
		    "  tls.reload_interval  %gs%s\n",
		    tc->tc_cert, tc->tc_key, tc->tc_ca,
		    tc->tc_crl != NULL ? tc->tc_crl : "(none)",
		    tc->tc_crl_grace,
		    tc->tc_min_version == TLS1_3_VERSION ? "1.3" : "1.2",
		    tc->tc_ciphers, tc->tc_ciphersuites, tc->tc_groups,
		    tc->tc_reload_interval, tc->tc_reload_interval > 0.0 ?
		    "" : " (SIGHUP only)");
	}
}
