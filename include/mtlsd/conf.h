/*
 * The configuration: a libconfig file turned into one validated structure
 * that the rest of mtlsd only ever reads.  conf.c is the only file that
 * knows libconfig.
 */
#ifndef MTLSD_CONF_H
#define MTLSD_CONF_H

#include <stdio.h>

#include "mtlsd/addr.h"

#define CONF_DEFAULT_PATH	"/etc/mtlsd/mtlsd.conf"

#define CONF_DEFAULT_CIPHERS	"ECDHE-ECDSA-AES128-GCM-SHA256:"	\
	"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"	\
	"ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:"	\
	"ECDHE-RSA-CHACHA20-POLY1305"
#define CONF_DEFAULT_CIPHERSUITES	"TLS_AES_128_GCM_SHA256:"	\
	"TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define CONF_DEFAULT_GROUPS	"X25519:P-256"

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG
};

enum log_format {
	LOG_FORMAT_TEXT,
	LOG_FORMAT_JSON
};

enum route_dir {
	ROUTE_INBOUND,		/* terminate mTLS, plaintext to a local target */
	ROUTE_OUTBOUND		/* plaintext from local, originate mTLS */
};

enum rule_kind {
	RULE_URI,
	RULE_DNS,
	RULE_IP,
	RULE_EMAIL,
	RULE_CN,
	RULE_OU,
	RULE_O,
	RULE_ANY
};

struct allow_rule {
	enum rule_kind		 ar_kind;
	char			*ar_value;	/* NULL for RULE_ANY */
};

struct allow {
	struct allow_rule	*al_rules;
	size_t			 al_nrules;
};

/* Effective TLS settings of one route: defaults, then tls {}, then route. */
struct tls_conf {
	char			*tc_cert;
	char			*tc_key;
	char			*tc_ca;		/* file or directory */
	char			*tc_crl;	/* NULL: no revocation check */
	double			 tc_crl_grace;
	int			 tc_min_version;	/* TLS1_2_VERSION, ... */
	char			*tc_ciphers;
	char			*tc_ciphersuites;
	char			*tc_groups;
	double			 tc_reload_interval;
};

struct route {
	char			*r_name;
	enum route_dir		 r_dir;
	int			 r_line;	/* where the route starts */
	struct addr		 r_listen;
	struct addr		 r_target;
	char			*r_server_name;	/* outbound: SNI and name check */
	struct allow		 r_allow;
	int			 r_proxy_protocol;
	struct tls_conf		 r_tls;
};

struct limits {
	unsigned int		 l_max_connections;
	double			 l_handshake_timeout;
	double			 l_connect_timeout;
	double			 l_idle_timeout;
	double			 l_drain_timeout;
};

struct conf {
	char			*c_path;
	char			*c_user;	/* NULL: 65534 when root */
	char			*c_group;
	int			 c_workers;	/* 0: one per online CPU */
	enum log_level		 c_log_level;
	enum log_format		 c_log_format;
	int			 c_admin_enabled;
	struct addr		 c_admin_listen;
	int			 c_seccomp;
	struct limits		 c_limits;
	struct route		*c_routes;
	size_t			 c_nroutes;
};

/*
 * Reads and validates a configuration.  Every problem found is written to
 * errf as one line "FILE:LINE: message" (or "FILE: message" where no line is
 * known); then -1 is returned and *out stays NULL.  On success *out owns a
 * structure to release with conf_free().
 */
int	 conf_load(const char *path, FILE *errf, struct conf **out);

/* The same from text in memory; name stands for FILE in messages. */
int	 conf_load_string(const char *text, const char *name, FILE *errf,
	    struct conf **out);

void	 conf_free(struct conf *conf);

/* The effective routes, as `mtlsd -t` shows them. */
void	 conf_print(const struct conf *conf, FILE *out);

const char *conf_rule_kind_name(enum rule_kind kind);
const char *conf_log_level_name(enum log_level level);
const char *conf_log_format_name(enum log_format format);
const char *conf_route_dir_name(enum route_dir dir);

#endif
