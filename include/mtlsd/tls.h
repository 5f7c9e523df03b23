/*
 * TLS contexts of the routes and the judgement of a peer: chain, then
 * identity.  The same judgement serves a live handshake and --explain.
 */
#ifndef MTLSD_TLS_H
#define MTLSD_TLS_H

#include <stdio.h>
#include <time.h>

#include <openssl/ssl.h>

#include "mtlsd/conf.h"
#include "mtlsd/log.h"
#include "mtlsd/policy.h"

/* Why a peer was turned away: the contract's rejection reasons. */
enum tls_reason {
	REASON_NONE,
	REASON_NO_CERTIFICATE,
	REASON_UNTRUSTED,
	REASON_EXPIRED,
	REASON_NOT_YET_VALID,
	REASON_REVOKED,
	REASON_CRL_STALE,
	REASON_IDENTITY,
	REASON_PROTOCOL,
	REASON_OTHER,
	REASON__COUNT
};

/* The stage a rejected peer failed at. */
enum tls_stage {
	STAGE_NONE,		/* not rejected */
	STAGE_HANDSHAKE,
	STAGE_CHAIN,
	STAGE_IDENTITY
};

/* What the verify step concluded about one peer. */
struct tls_judgement {
	int			 tj_judged;	/* the verify step ran */
	enum tls_stage		 tj_stage;
	enum tls_reason		 tj_reason;
	int			 tj_verify_err;	/* X509_V_ERR_* or 0 */
	int			 tj_depth;
	struct identities	 tj_ids;
	unsigned char		 tj_sha256[32];
	char			 tj_fingerprint[65];	/* hex of tj_sha256 */
	struct verdict		 tj_verdict;
	char			 tj_error[POLICY_TEXT_MAX];	/* in words */
};

/* A route's TLS material.  Read-only once built; shared by all workers. */
struct tls_route {
	const struct route	*tr_route;
	SSL_CTX			*tr_ctx;
	X509			*tr_cert;	/* our own leaf */
};

/* What /status and /metrics show of a route's own certificate. */
struct tls_info {
	char			 ti_subject[256];
	char			 ti_sans[POLICY_TEXT_MAX];
	char			 ti_fingerprint[65];
	time_t			 ti_not_after;
	time_t			 ti_crl_next_update;	/* 0: no CRL */
};

int	 tls_init(void);
void	 tls_route_info(const struct tls_route *tr, struct tls_info *ti);

/*
 * Builds the context of route r: loads certificate chain, key, CA and CRL
 * and checks them.  Errors go to errf as "FILE:LINE: route ...: ...".
 */
struct tls_route *tls_route_new(const struct conf *conf,
	    const struct route *r, FILE *errf);
void	 tls_route_free(struct tls_route *tr);

/*
 * Whether our own certificate chains to the route's CA and is valid now:
 * a reload refuses material that fails this, start-up warns about it.
 */
int	 tls_route_check_own(const struct tls_route *tr, char *err,
	    size_t errlen);

/*
 * A new SSL for one connection, with no transport yet (the caller sets
 * its BIOs); j receives the verdict of its handshake.
 */
SSL	*tls_ssl_new(struct tls_route *tr, struct tls_judgement *j);

/* The judgement is gone: a late verify step must fail, not touch it. */
void	 tls_ssl_forget(SSL *ssl);

/*
 * After the handshake completed: a resumed session skipped the verify
 * step, so judge its peer certificate against today's allow rules.
 * Returns 1 when the peer is accepted.
 */
int	 tls_handshake_done(struct tls_route *tr, SSL *ssl,
	    struct tls_judgement *j);

/* After a failed handshake: fill in stage, reason and words. */
void	 tls_handshake_failed(SSL *ssl, struct tls_judgement *j,
	    const char *tls_errors);

void	 tls_judgement_clear(struct tls_judgement *j);

/* The contract's reason names: "untrusted", "revoked", ... */
const char *tls_reason_name(enum tls_reason reason);
const char *tls_stage_name(enum tls_stage stage);

/*
 * Fields that explain a rejection: stage, verify error and depth,
 * identities, fingerprint, the rule it failed.  Returns how many were
 * written; the strings point into j.
 */
size_t	 tls_judgement_fields(const struct tls_judgement *j,
	    struct log_field *f, size_t nf, char *scratch, size_t scratchlen);

/*
 * --explain: judges the chain in pem_path as the live route would and
 * prints why.  Returns 0 accepted, 1 rejected, -1 when it could not judge.
 */
int	 tls_explain(struct tls_route *tr, const char *pem_path, FILE *out);

#endif
