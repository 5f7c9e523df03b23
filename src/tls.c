/*
 * TLS contexts of the routes, and the judgement of a peer.
 *
 * A peer passes two gates, both inside the handshake so that a refused
 * peer gets an alert and never reaches the target: its chain must verify
 * against the route's CA (and CRL), then its leaf must satisfy the
 * route's allow rules (policy.c).  tls_judge() is that one place; the
 * handshake and --explain both go through it.
 */
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "mtlsd/conf.h"
#include "mtlsd/log.h"
#include "mtlsd/policy.h"
#include "mtlsd/tls.h"

#define TLS_VERIFY_DEPTH	8
#define TLS_SESSION_CACHE	2048	/* resumable sessions per route */
#define TLS_SESSION_LIFETIME	1800	/* seconds */

static int	tls_ssl_idx = -1;	/* SSL -> struct tls_judgement */
static int	tls_xctx_idx = -1;	/* X509_STORE_CTX -> struct tls_route */

static const char *const reason_names[REASON__COUNT] = {
	"none", "no_certificate", "untrusted", "expired", "not_yet_valid",
	"revoked", "crl_stale", "identity", "protocol", "other"
};

static const char *const stage_names[] = {
	"none", "handshake", "chain", "identity"
};

static int	tls_verify_cb(int, X509_STORE_CTX *);
static int	tls_cert_verify_cb(X509_STORE_CTX *, void *);
static int	tls_judge(struct tls_route *, X509_STORE_CTX *,
		    struct tls_judgement *);
static void	tls_judge_identity(struct tls_route *, X509 *,
		    struct tls_judgement *);
static enum tls_reason tls_classify(int);
static int	tls_load_crl(X509_STORE *, const char *, char *, size_t);
static int	tls_check_ciphers(SSL_CTX *, char *, size_t);

int
tls_init(void)
{
	tls_ssl_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	tls_xctx_idx = X509_STORE_CTX_get_ex_new_index(0, NULL, NULL, NULL,
	    NULL);
	return (tls_ssl_idx < 0 || tls_xctx_idx < 0) ? -1 : 0;
}

const char *
tls_reason_name(enum tls_reason reason)
{
	if ((unsigned)reason >= REASON__COUNT)
		return "other";
	return reason_names[reason];
}

const char *
tls_stage_name(enum tls_stage stage)
{
	if ((unsigned)stage > STAGE_IDENTITY)
		return "none";
	return stage_names[stage];
}

static enum tls_reason
tls_classify(int err)
{
	switch (err) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
		return REASON_EXPIRED;
	case X509_V_ERR_CERT_NOT_YET_VALID:
	case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
		return REASON_NOT_YET_VALID;
	case X509_V_ERR_CERT_REVOKED:
		return REASON_REVOKED;
	case X509_V_ERR_CRL_HAS_EXPIRED:
	case X509_V_ERR_CRL_NOT_YET_VALID:
		return REASON_CRL_STALE;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_UNTRUSTED:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
	case X509_V_ERR_CERT_CHAIN_TOO_LONG:
	case X509_V_ERR_INVALID_CA:
	case X509_V_ERR_INVALID_PURPOSE:
	case X509_V_ERR_PATH_LENGTH_EXCEEDED:
		return REASON_UNTRUSTED;
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
	case X509_V_ERR_EMAIL_MISMATCH:
	case X509_V_ERR_APPLICATION_VERIFICATION:
		return REASON_IDENTITY;
	default:
		return REASON_OTHER;
	}
}

/*
 * Called for each verify step.  Its one job beyond the default is
 * crl_grace: a CRL past nextUpdate fails closed unless it is late by no
 * more than the configured grace.
 */
static int
tls_verify_cb(int ok, X509_STORE_CTX *xctx)
{
	struct tls_route	*tr;
	X509_CRL		*crl;
	const ASN1_TIME		*next;
	int			 day, sec;

	if (ok || X509_STORE_CTX_get_error(xctx) != X509_V_ERR_CRL_HAS_EXPIRED)
		return ok;
	tr = X509_STORE_CTX_get_ex_data(xctx, tls_xctx_idx);
	if (tr == NULL || tr->tr_route->r_tls.tc_crl_grace <= 0)
		return ok;
	if ((crl = X509_STORE_CTX_get0_current_crl(xctx)) == NULL ||
	    (next = X509_CRL_get0_nextUpdate(crl)) == NULL)
		return ok;
	/* day/sec = nextUpdate - now; accept while now <= next + grace. */
	if (!ASN1_TIME_diff(&day, &sec, NULL, next))
		return ok;
	if ((double)day * 86400.0 + sec + tr->tr_route->r_tls.tc_crl_grace >=
	    0) {
		X509_STORE_CTX_set_error(xctx, X509_V_OK);
		return 1;
	}
	return ok;
}

static void
tls_judge_identity(struct tls_route *tr, X509 *leaf, struct tls_judgement *j)
{
	policy_judge(&tr->tr_route->r_allow, &j->tj_ids, &j->tj_verdict);
	if (j->tj_verdict.v_accept) {
		j->tj_stage = STAGE_NONE;
		j->tj_reason = REASON_NONE;
		return;
	}
	(void)leaf;
	j->tj_stage = STAGE_IDENTITY;
	j->tj_reason = REASON_IDENTITY;
	j->tj_verify_err = 0;
	j->tj_depth = 0;
	snprintf(j->tj_error, sizeof(j->tj_error), "%s",
	    j->tj_verdict.v_reason);
}

static void
tls_fingerprint(X509 *leaf, unsigned char sha[32], char hex[65])
{
	unsigned int	n = 0;
	size_t		i;

	if (X509_digest(leaf, EVP_sha256(), sha, &n) != 1 || n != 32) {
		memset(sha, 0, 32);
		memcpy(hex, "-", 2);
		return;
	}
	for (i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", sha[i]);
}

/* A fresh judgement of leaf: its fingerprint and identities; 0 if none. */
static int
tls_judge_begin(X509 *leaf, struct tls_judgement *j)
{
	tls_judgement_clear(j);
	j->tj_judged = 1;
	if (leaf == NULL) {
		j->tj_stage = STAGE_HANDSHAKE;
		j->tj_reason = REASON_NO_CERTIFICATE;
		snprintf(j->tj_error, sizeof(j->tj_error),
		    "peer sent no certificate");
		return 0;
	}
	tls_fingerprint(leaf, j->tj_sha256, j->tj_fingerprint);
	if (policy_identities(leaf, &j->tj_ids) == -1) {
		j->tj_stage = STAGE_IDENTITY;
		j->tj_reason = REASON_OTHER;
		snprintf(j->tj_error, sizeof(j->tj_error), "out of memory");
		return 0;
	}
	return 1;
}

/* The one place a peer is judged: chain, then identity. */
static int
tls_judge(struct tls_route *tr, X509_STORE_CTX *xctx, struct tls_judgement *j)
{
	X509	*leaf;
	int	 err;

	leaf = X509_STORE_CTX_get0_cert(xctx);
	if (!tls_judge_begin(leaf, j))
		return 0;

	X509_STORE_CTX_set_ex_data(xctx, tls_xctx_idx, tr);
	X509_STORE_CTX_set_verify_cb(xctx, tls_verify_cb);
	if (X509_verify_cert(xctx) != 1) {
		err = X509_STORE_CTX_get_error(xctx);
		if (err == X509_V_OK)
			err = X509_V_ERR_UNSPECIFIED;
		j->tj_verify_err = err;
		j->tj_depth = X509_STORE_CTX_get_error_depth(xctx);
		j->tj_reason = tls_classify(err);
		j->tj_stage = j->tj_reason == REASON_IDENTITY ?
		    STAGE_IDENTITY : STAGE_CHAIN;
		if (err == X509_V_ERR_HOSTNAME_MISMATCH ||
		    err == X509_V_ERR_IP_ADDRESS_MISMATCH)
			snprintf(j->tj_error, sizeof(j->tj_error),
			    "server name %s not in certificate: %s",
			    tr->tr_route->r_server_name,
			    policy_primary(&j->tj_ids));
		else
			snprintf(j->tj_error, sizeof(j->tj_error), "%s",
			    X509_verify_cert_error_string(err));
		snprintf(j->tj_verdict.v_reason,
		    sizeof(j->tj_verdict.v_reason),
		    "not judged: the chain did not verify");
		return 0;
	}
	tls_judge_identity(tr, leaf, j);
	if (!j->tj_verdict.v_accept) {
		X509_STORE_CTX_set_error(xctx,
		    X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	return 1;
}

/* Replaces OpenSSL's chain check for every handshake of a route. */
static int
tls_cert_verify_cb(X509_STORE_CTX *xctx, void *arg)
{
	struct tls_route	*tr = arg;
	struct tls_judgement	*j;
	SSL			*ssl;

	ssl = X509_STORE_CTX_get_ex_data(xctx,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	if (ssl == NULL || (j = SSL_get_ex_data(ssl, tls_ssl_idx)) == NULL)
		return 0;
	return tls_judge(tr, xctx, j);
}

void
tls_judgement_clear(struct tls_judgement *j)
{
	policy_identities_free(&j->tj_ids);
	memset(j, 0, sizeof(*j));
	strcpy(j->tj_fingerprint, "-");
}

/* Every CRL in the file goes into the store: one per issuer of the chain. */
static int
tls_load_crl(X509_STORE *store, const char *path, char *err, size_t errlen)
{
	BIO		*bio;
	X509_CRL	*crl;
	int		 n = 0;

	if ((bio = BIO_new_file(path, "r")) == NULL) {
		snprintf(err, errlen, "cannot read CRL %s: %s", path,
		    strerror(errno));
		ERR_clear_error();
		return -1;
	}
	while ((crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
		if (X509_STORE_add_crl(store, crl) != 1) {
			X509_CRL_free(crl);
			BIO_free(bio);
			snprintf(err, errlen, "cannot use CRL %s", path);
			return -1;
		}
		X509_CRL_free(crl);
		n++;
	}
	BIO_free(bio);
	ERR_clear_error();	/* the end of the file reads as an error */
	if (n == 0) {
		snprintf(err, errlen, "no CRL found in %s (PEM expected)", path);
		return -1;
	}
	X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK |
	    X509_V_FLAG_CRL_CHECK_ALL);
	return 0;
}

/*
 * TLS 1.2 suites must have forward secrecy and an AEAD: a cipher list
 * that allows less is refused rather than silently weakened.
 */
static int
tls_check_ciphers(SSL_CTX *ctx, char *err, size_t errlen)
{
	STACK_OF(SSL_CIPHER)	*sk;
	const SSL_CIPHER	*c;
	int			 i, kx;

	if ((sk = SSL_CTX_get_ciphers(ctx)) == NULL)
		return 0;
	for (i = 0; i < sk_SSL_CIPHER_num(sk); i++) {
		c = sk_SSL_CIPHER_value(sk, i);
		kx = SSL_CIPHER_get_kx_nid(c);
		if (kx == NID_kx_any)	/* TLS 1.3: always (EC)DHE + AEAD */
			continue;
		if (kx != NID_kx_ecdhe && kx != NID_kx_dhe) {
			snprintf(err, errlen, "cipher %s has no forward "
			    "secrecy; only ECDHE/DHE suites are allowed",
			    SSL_CIPHER_get_name(c));
			return -1;
		}
		if (!SSL_CIPHER_is_aead(c)) {
			snprintf(err, errlen, "cipher %s is not an AEAD; "
			    "use GCM or CHACHA20-POLY1305 suites",
			    SSL_CIPHER_get_name(c));
			return -1;
		}
	}
	return 0;
}

struct tls_route *
tls_route_new(const struct conf *conf, const struct route *r, FILE *errf)
{
	const struct tls_conf	*tc = &r->r_tls;
	struct tls_route	*tr;
	struct stat		 st;
	X509_VERIFY_PARAM	*param;
	STACK_OF(X509_NAME)	*names;
	char			 err[512], tlserr[512];
	unsigned char		 sid[32];
	unsigned int		 sidlen = 0;
	int			 inbound = r->r_dir == ROUTE_INBOUND;

	err[0] = '\0';
	if ((tr = calloc(1, sizeof(*tr))) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	tr->tr_route = r;
	tr->tr_ctx = SSL_CTX_new(inbound ? TLS_server_method() :
	    TLS_client_method());
	if (tr->tr_ctx == NULL) {
		snprintf(err, sizeof(err), "cannot create TLS context: %s",
		    log_tls_errors(tlserr, sizeof(tlserr)));
		goto fail;
	}
	SSL_CTX_set_min_proto_version(tr->tr_ctx, tc->tc_min_version);
	/*
	 * A peer may end its side with a bare FIN and still read our
	 * reply (half-close without close_notify): OpenSSL 3 would call
	 * that fatal, alert the peer and refuse to write another byte.
	 */
	SSL_CTX_set_options(tr->tr_ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	    SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(tr->tr_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	/* One read(2) a record instead of two (header, then body). */
	SSL_CTX_set_read_ahead(tr->tr_ctx, 1);

	if (SSL_CTX_set_cipher_list(tr->tr_ctx, tc->tc_ciphers) != 1) {
		snprintf(err, sizeof(err), "ciphers \"%s\": no usable cipher",
		    tc->tc_ciphers);
		goto fail;
	}
	if (SSL_CTX_set_ciphersuites(tr->tr_ctx, tc->tc_ciphersuites) != 1) {
		snprintf(err, sizeof(err), "ciphersuites \"%s\": no usable "
		    "TLS 1.3 suite", tc->tc_ciphersuites);
		goto fail;
	}
	if (tls_check_ciphers(tr->tr_ctx, err, sizeof(err)) == -1)
		goto fail;
	if (SSL_CTX_set1_groups_list(tr->tr_ctx, tc->tc_groups) != 1) {
		snprintf(err, sizeof(err), "groups \"%s\": unknown group",
		    tc->tc_groups);
		goto fail;
	}

	if (SSL_CTX_use_certificate_chain_file(tr->tr_ctx, tc->tc_cert) != 1) {
		snprintf(err, sizeof(err), "cannot load certificate %s: %s",
		    tc->tc_cert, log_tls_errors(tlserr, sizeof(tlserr)));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(tr->tr_ctx, tc->tc_key,
	    SSL_FILETYPE_PEM) != 1) {
		snprintf(err, sizeof(err), "cannot load key %s: %s",
		    tc->tc_key, log_tls_errors(tlserr, sizeof(tlserr)));
		goto fail;
	}
	if (SSL_CTX_check_private_key(tr->tr_ctx) != 1) {
		snprintf(err, sizeof(err), "key %s does not match "
		    "certificate %s", tc->tc_key, tc->tc_cert);
		goto fail;
	}
	tr->tr_cert = SSL_CTX_get0_certificate(tr->tr_ctx);
	if (tr->tr_cert != NULL &&
	    X509_cmp_time(X509_get0_notAfter(tr->tr_cert), NULL) < 0) {
		snprintf(err, sizeof(err), "certificate %s has expired",
		    tc->tc_cert);
		goto fail;
	}

	if (stat(tc->tc_ca, &st) == -1) {
		snprintf(err, sizeof(err), "cannot read CA %s: %s",
		    tc->tc_ca, strerror(errno));
		goto fail;
	}
	if (SSL_CTX_load_verify_locations(tr->tr_ctx,
	    S_ISDIR(st.st_mode) ? NULL : tc->tc_ca,
	    S_ISDIR(st.st_mode) ? tc->tc_ca : NULL) != 1) {
		snprintf(err, sizeof(err), "cannot load CA %s: %s", tc->tc_ca,
		    log_tls_errors(tlserr, sizeof(tlserr)));
		goto fail;
	}
	if (inbound && !S_ISDIR(st.st_mode)) {
		/* Tell clients which CAs we accept, to pick their cert. */
		if ((names = SSL_load_client_CA_file(tc->tc_ca)) != NULL)
			SSL_CTX_set_client_CA_list(tr->tr_ctx, names);
		ERR_clear_error();
	}
	if (tc->tc_crl != NULL && tls_load_crl(
	    SSL_CTX_get_cert_store(tr->tr_ctx), tc->tc_crl, err,
	    sizeof(err)) == -1)
		goto fail;

	param = SSL_CTX_get0_param(tr->tr_ctx);
	X509_VERIFY_PARAM_set_depth(param, TLS_VERIFY_DEPTH);
	if (!inbound && r->r_allow.al_nrules == 1 &&
	    r->r_allow.al_rules[0].ar_kind == RULE_ANY) {
		/*
		 * Only "any" names no identity: the server must then prove
		 * server_name.  The subject CN is never consulted.
		 */
		X509_VERIFY_PARAM_set_hostflags(param,
		    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
		    X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
		if (X509_VERIFY_PARAM_set1_ip_asc(param,
		    r->r_server_name) != 1) {
			ERR_clear_error();
			if (X509_VERIFY_PARAM_set1_host(param,
			    r->r_server_name, 0) != 1) {
				snprintf(err, sizeof(err), "server_name %s "
				    "cannot be verified", r->r_server_name);
				goto fail;
			}
		}
	}
	SSL_CTX_set_verify(tr->tr_ctx, inbound ? SSL_VERIFY_PEER |
	    SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_cert_verify_callback(tr->tr_ctx, tls_cert_verify_cb, tr);

	if (inbound) {
		/* Sessions resume only on the route that made them. */
		X509_digest(tr->tr_cert, EVP_sha256(), sid, &sidlen);
		EVP_Digest(r->r_name, strlen(r->r_name), sid, &sidlen,
		    EVP_sha256(), NULL);
		SSL_CTX_set_session_id_context(tr->tr_ctx, sid, sidlen);
		/*
		 * Stateful resumption: the ticket is a session ID into a
		 * bounded cache.  OpenSSL 3.0 builds a stateless ticket by
		 * serialising the session and parsing the peer certificate
		 * back (about 14% of a full handshake, measured with perf),
		 * and resuming from one parses it again; a cache lookup
		 * does neither, and no long-lived ticket key exists.
		 */
		SSL_CTX_set_options(tr->tr_ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(tr->tr_ctx, 1);
		SSL_CTX_set_session_cache_mode(tr->tr_ctx,
		    SSL_SESS_CACHE_SERVER);
		SSL_CTX_sess_set_cache_size(tr->tr_ctx, TLS_SESSION_CACHE);
		SSL_CTX_set_timeout(tr->tr_ctx, TLS_SESSION_LIFETIME);
	} else
		SSL_CTX_set_session_cache_mode(tr->tr_ctx, SSL_SESS_CACHE_OFF);
	ERR_clear_error();
	return tr;

fail:
	fprintf(errf, "%s:%d: %s route \"%s\": %s\n", conf->c_path, r->r_line,
	    conf_route_dir_name(r->r_dir), r->r_name, err);
	ERR_clear_error();
	tls_route_free(tr);
	return NULL;
}

void
tls_route_free(struct tls_route *tr)
{
	if (tr == NULL)
		return;
	SSL_CTX_free(tr->tr_ctx);
	free(tr);
}

SSL *
tls_ssl_new(struct tls_route *tr, struct tls_judgement *j)
{
	const struct route	*r = tr->tr_route;
	SSL			*ssl;
	struct in6_addr		 a6;

	if ((ssl = SSL_new(tr->tr_ctx)) == NULL)
		return NULL;
	if (SSL_set_ex_data(ssl, tls_ssl_idx, j) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	if (r->r_dir == ROUTE_INBOUND) {
		SSL_set_accept_state(ssl);
		return ssl;
	}
	SSL_set_connect_state(ssl);
	/* SNI carries host names only, never an IP literal (RFC 6066). */
	if (inet_pton(AF_INET6, r->r_server_name, &a6) != 1 &&
	    inet_pton(AF_INET, r->r_server_name, &a6) != 1 &&
	    SSL_set_tlsext_host_name(ssl, r->r_server_name) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

void
tls_ssl_forget(SSL *ssl)
{
	if (ssl != NULL)
		SSL_set_ex_data(ssl, tls_ssl_idx, NULL);
}

int
tls_handshake_done(struct tls_route *tr, SSL *ssl, struct tls_judgement *j)
{
	X509	*peer;

	if (j->tj_judged)
		return j->tj_stage == STAGE_NONE;
	/*
	 * No verify step ran: a resumed session.  Its chain was verified
	 * when it was made; its identity is judged again by today's rules.
	 */
	peer = SSL_get0_peer_certificate(ssl);
	if (!tls_judge_begin(peer, j))
		return 0;
	if (X509_cmp_time(X509_get0_notAfter(peer), NULL) < 0) {
		j->tj_stage = STAGE_CHAIN;
		j->tj_reason = REASON_EXPIRED;
		snprintf(j->tj_error, sizeof(j->tj_error),
		    "certificate has expired");
		return 0;
	}
	tls_judge_identity(tr, peer, j);
	return j->tj_verdict.v_accept;
}

void
tls_handshake_failed(SSL *ssl, struct tls_judgement *j, const char *errs)
{
	(void)ssl;
	if (j->tj_judged && j->tj_stage != STAGE_NONE)
		return;		/* the verify step already said why */
	j->tj_stage = STAGE_HANDSHAKE;
	if (strstr(errs, "peer did not return a certificate") != NULL) {
		j->tj_reason = REASON_NO_CERTIFICATE;
		snprintf(j->tj_error, sizeof(j->tj_error),
		    "peer sent no certificate");
		return;
	}
	j->tj_reason = REASON_PROTOCOL;
	snprintf(j->tj_error, sizeof(j->tj_error), "%s",
	    *errs != '\0' ? errs : "connection closed during handshake");
}

size_t
tls_judgement_fields(const struct tls_judgement *j, struct log_field *f,
    size_t nf, char *scratch, size_t scratchlen)
{
	const char	*rules;
	size_t		 n = 0, half = scratchlen / 2, rl;

	if (nf < 8 || scratchlen < 128)
		return 0;
	f[n++] = (struct log_field){ "stage", tls_stage_name(j->tj_stage), 0 };
	f[n++] = (struct log_field){ "reason", tls_reason_name(j->tj_reason),
	    0 };
	f[n++] = (struct log_field){ "error", j->tj_error, 0 };
	snprintf(scratch, half, "%d", j->tj_depth);
	if (j->tj_verify_err != 0) {
		f[n++] = (struct log_field){ "depth", scratch, 1 };
		snprintf(scratch + 16, half - 16, "%d", j->tj_verify_err);
		f[n++] = (struct log_field){ "verify_error", scratch + 16, 1 };
	}
	policy_identities_str(&j->tj_ids, scratch + half, scratchlen - half);
	f[n++] = (struct log_field){ "identities", scratch + half, 0 };
	f[n++] = (struct log_field){ "sha256", j->tj_fingerprint, 0 };
	if (j->tj_stage == STAGE_IDENTITY) {
		/* The rules it failed: the verdict's "(allowed: ...)". */
		rules = strstr(j->tj_verdict.v_reason, "(allowed: ");
		if (rules != NULL) {
			snprintf(scratch + 32, half - 32, "%s", rules + 10);
			if ((rl = strlen(scratch + 32)) > 0 &&
			    scratch[32 + rl - 1] == ')')
				scratch[32 + rl - 1] = '\0';
			f[n++] = (struct log_field){ "rule", scratch + 32, 0 };
		} else
			f[n++] = (struct log_field){ "rule",
			    j->tj_verdict.v_reason, 0 };
	}
	return n;
}

int
tls_explain(struct tls_route *tr, const char *pem_path, FILE *out)
{
	const struct route	*r = tr->tr_route;
	struct tls_judgement	 j;
	X509_STORE_CTX		*xctx = NULL;
	STACK_OF(X509)		*chain = NULL;
	X509			*leaf = NULL, *x;
	BIO			*bio;
	char			 tlserr[256];
	int			 ok, rc = -1;

	memset(&j, 0, sizeof(j));
	if ((bio = BIO_new_file(pem_path, "r")) == NULL) {
		fprintf(out, "cannot read %s: %s\n", pem_path, strerror(errno));
		return -1;
	}
	leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if ((chain = sk_X509_new_null()) == NULL)
		goto out;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
		if (!sk_X509_push(chain, x)) {
			X509_free(x);
			goto out;
		}
	ERR_clear_error();
	if (leaf == NULL) {
		fprintf(out, "%s: no PEM certificate found\n", pem_path);
		goto out;
	}
	if ((xctx = X509_STORE_CTX_new()) == NULL ||
	    X509_STORE_CTX_init(xctx, SSL_CTX_get_cert_store(tr->tr_ctx),
	    leaf, chain) != 1) {
		fprintf(out, "cannot set up verification: %s\n",
		    log_tls_errors(tlserr, sizeof(tlserr)));
		goto out;
	}
	/* What libssl does before it verifies a peer, done the same way. */
	X509_STORE_CTX_set_default(xctx, r->r_dir == ROUTE_INBOUND ?
	    "ssl_client" : "ssl_server");
	X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(xctx),
	    SSL_CTX_get0_param(tr->tr_ctx));

	ok = tls_judge(tr, xctx, &j);
	fprintf(out, "route:      %s (%s)\n", r->r_name,
	    conf_route_dir_name(r->r_dir));
	fprintf(out, "peer:       %s\n", policy_primary(&j.tj_ids));
	policy_identities_str(&j.tj_ids, tlserr, sizeof(tlserr));
	fprintf(out, "identities: %s\n", tlserr);
	fprintf(out, "sha256:     %s\n", j.tj_fingerprint);
	if (j.tj_stage == STAGE_CHAIN || (j.tj_verify_err != 0 &&
	    j.tj_stage == STAGE_IDENTITY))
		fprintf(out, "chain:      failed at depth %d: %s "
		    "(verify error %d)\n", j.tj_depth, j.tj_error,
		    j.tj_verify_err);
	else
		fprintf(out, "chain:      ok\n");
	fprintf(out, "identity:   %s\n", j.tj_verdict.v_reason);
	if (ok)
		fprintf(out, "verdict:    accept (rule %s %s)\n",
		    conf_rule_kind_name(j.tj_verdict.v_rule->ar_kind),
		    j.tj_verdict.v_rule->ar_value != NULL ?
		    j.tj_verdict.v_rule->ar_value : "true");
	else
		fprintf(out, "verdict:    reject (stage %s, reason %s: %s)\n",
		    tls_stage_name(j.tj_stage), tls_reason_name(j.tj_reason),
		    j.tj_error);
	rc = ok ? 0 : 1;
out:
	tls_judgement_clear(&j);
	X509_STORE_CTX_free(xctx);
	sk_X509_pop_free(chain, X509_free);
	X509_free(leaf);
	BIO_free(bio);
	return rc;
}

static time_t
tls_time(const ASN1_TIME *t)
{
	struct tm	tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

void
tls_route_info(const struct tls_route *tr, struct tls_info *ti)
{
	STACK_OF(X509_OBJECT)	*objs;
	X509_OBJECT		*o;
	X509_CRL		*crl;
	struct identities	 ids;
	unsigned char		 sha[32];
	time_t			 next;
	int			 i;

	memset(ti, 0, sizeof(*ti));
	strcpy(ti->ti_fingerprint, "-");
	if (tr->tr_cert != NULL) {
		X509_NAME_oneline(X509_get_subject_name(tr->tr_cert),
		    ti->ti_subject, sizeof(ti->ti_subject));
		memset(&ids, 0, sizeof(ids));
		if (policy_identities(tr->tr_cert, &ids) == 0)
			policy_identities_str(&ids, ti->ti_sans,
			    sizeof(ti->ti_sans));
		policy_identities_free(&ids);
		tls_fingerprint(tr->tr_cert, sha, ti->ti_fingerprint);
		ti->ti_not_after = tls_time(X509_get0_notAfter(tr->tr_cert));
	}
	/* The CRL that runs out first decides when verification stops. */
	objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(tr->tr_ctx));
	for (i = 0; objs != NULL && i < sk_X509_OBJECT_num(objs); i++) {
		o = sk_X509_OBJECT_value(objs, i);
		if ((crl = X509_OBJECT_get0_X509_CRL(o)) == NULL)
			continue;
		next = tls_time(X509_CRL_get0_nextUpdate(crl));
		if (next != 0 && (ti->ti_crl_next_update == 0 ||
		    next < ti->ti_crl_next_update))
			ti->ti_crl_next_update = next;
	}
	ERR_clear_error();
}

int
tls_route_check_own(const struct tls_route *tr, char *err, size_t errlen)
{
	STACK_OF(X509)	*chain = NULL;
	X509_STORE_CTX	*xctx;
	int		 ok, e;

	if (tr->tr_cert == NULL) {
		snprintf(err, errlen, "no certificate loaded");
		return -1;
	}
	if ((xctx = X509_STORE_CTX_new()) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	SSL_CTX_get0_chain_certs(tr->tr_ctx, &chain);
	if (X509_STORE_CTX_init(xctx, SSL_CTX_get_cert_store(tr->tr_ctx),
	    tr->tr_cert, chain) != 1) {
		X509_STORE_CTX_free(xctx);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* Revocation of our own certificate is the peer's business. */
	X509_STORE_CTX_set_flags(xctx, 0);
	X509_VERIFY_PARAM_clear_flags(X509_STORE_CTX_get0_param(xctx),
	    X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	ok = X509_verify_cert(xctx) == 1;
	e = X509_STORE_CTX_get_error(xctx);
	X509_STORE_CTX_free(xctx);
	ERR_clear_error();
	if (!ok) {
		snprintf(err, errlen, "route %s: certificate %s does not "
		    "verify against CA %s: %s", tr->tr_route->r_name,
		    tr->tr_route->r_tls.tc_cert, tr->tr_route->r_tls.tc_ca,
		    X509_verify_cert_error_string(e));
		return -1;
	}
	return 0;
}
