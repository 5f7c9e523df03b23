/*
 * Fuzzes the inbound TLS server path: the input is what a client sends,
 * fed through a memory BIO into a real handshake on a real route built by
 * conf_load_string() and tls_route_new(), then the record layer
 * (SSL_read until the input ends), as session.c drives it: ERR_clear_error,
 * SSL_do_handshake, tls_handshake_done() or tls_handshake_failed(), and
 * tls_judgement_fields() as the close line would.  What the server writes
 * goes to a null BIO.
 *
 * To let the fuzzer get past the ClientHello, the process is made
 * deterministic, as OpenSSL's own fuzzers do:
 *  - randomness comes from a fixed-seed generator (RAND_set_rand_method),
 *    reset at the start of each connection, so the server's random, key
 *    share and signatures repeat and a recorded client flight stays valid;
 *  - time() is fixed at FUZZ_NOW, so that validity periods, the CRL and
 *    session tickets do not depend on the day;
 *  - the PKI (CA, server, clients, CRL) is generated at start-up from the
 *    same generator, with fixed dates.
 * tls_route_new() takes file names, so the PEM files are memfds named by
 * /proc/self/fd/N: nothing touches the file system.
 *
 * An input may hold a second connection after FUZZ_NEXT: it runs on the
 * same route, so that a session ticket from the first can resume, which
 * is the one path where tls_handshake_done() judges on its own.  The
 * server's session cache is turned off (tickets still work): nothing
 * carries over from one input to the next.
 *
 * Checked beyond "never crash, never leak": a completed full handshake was
 * judged and accepted by the verify step, its peer certificate verified
 * and allowed by the policy when judged again here; a failed one has a
 * stage, a reason and words.
 *
 * FUZZ_TLS_RECORD=DIR build/fuzz/fuzz_tls_server  writes the seed corpus:
 * real clients (TLS 1.3 and 1.2; accepted, no certificate, wrong
 * identity, revoked, untrusted, expired, not yet valid; resumed) talk to
 * this server, what they send is saved, then replayed here to show it
 * still gets as far.
 */
#define OPENSSL_SUPPRESS_DEPRECATED	/* RAND_set_rand_method() */

#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "mtlsd/conf.h"
#include "mtlsd/log.h"
#include "mtlsd/policy.h"
#include "mtlsd/tls.h"

#define FUZZ_NOW		((time_t)1767225600)	/* 2026-01-01 */
#define FUZZ_NEXT		"\xff" "MTLSD-NEXT-CONNECTION" "\xff"
#define FUZZ_NEXT_LEN		(sizeof(FUZZ_NEXT) - 1)
#define FUZZ_MAXCONN		2
#define FUZZ_SEED_PKI		0x6d746c7364504b49ULL
#define FUZZ_SEED_SERVER	0x6d746c7364535256ULL
#define FUZZ_SEED_CLIENT	0x6d746c7364434c49ULL

/* The client certificates: one per way a peer can fare. */
enum fuzz_client {
	CLIENT_GOOD,		/* allowed by the uri rule */
	CLIENT_INTRUDER,	/* chains, but no rule allows it */
	CLIENT_REVOKED,		/* in the CRL */
	CLIENT_UNTRUSTED,	/* self-signed */
	CLIENT_EXPIRED,
	CLIENT_FUTURE,		/* not valid yet */
	CLIENT_NONE,		/* sends no certificate */
	CLIENT__COUNT
};

struct fuzz_pki {
	EVP_PKEY	*ca_key, *srv_key;
	X509		*ca, *srv;
	X509_CRL	*crl;
	EVP_PKEY	*cl_key[CLIENT__COUNT];
	X509		*cl[CLIENT__COUNT];
};

/* What one connection came to, for the record mode's report. */
struct fuzz_result {
	int		 done;		/* the handshake completed */
	int		 reused;
	int		 accepted;	/* tls_handshake_done() said yes */
	enum tls_stage	 stage;
	enum tls_reason	 reason;
	size_t		 appdata;	/* bytes SSL_read returned */
	char		 error[POLICY_TEXT_MAX];
};

/* Record mode: a client and this server, joined by memory BIOs. */
struct fuzz_link {
	SSL	*c, *s;
	BIO	*c_in, *c_out, *s_in, *s_out;
	BIO	*rec;		/* every byte the client sent */
	int	 c_done, s_done;
};

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);
time_t	time(time_t *);

static void	fuzz_fail(const char *, ...)
		    __attribute__((__format__(printf, 1, 2), noreturn));
static void	fuzz_die(const char *) __attribute__((noreturn));
static int	fuzz_rand_bytes(unsigned char *, int);
static int	fuzz_rand_seed(const void *, int);
static int	fuzz_rand_add(const void *, int, double);
static int	fuzz_rand_status(void);
static void	fuzz_rand_cleanup(void);
static void	fuzz_rand_reset(uint64_t *, uint64_t);
static X509	*fuzz_cert(EVP_PKEY *, X509 *, EVP_PKEY *, long, const char *,
		    const char *, const char *, const char *, const char *,
		    const char *);
static void	fuzz_make_pki(struct fuzz_pki *);
static char	*fuzz_memfd(const char *, int (*)(BIO *, const void *),
		    const void *, char *, size_t);
static int	fuzz_pem_cert(BIO *, const void *);
static int	fuzz_pem_key(BIO *, const void *);
static int	fuzz_pem_crl(BIO *, const void *);
static void	fuzz_one(const uint8_t *, size_t, int, struct fuzz_result *);
static void	fuzz_move(BIO *, BIO *, BIO *);
static void	fuzz_step(struct fuzz_link *, int);
static SSL_SESSION *fuzz_record_conn(SSL_CTX *, SSL_SESSION *, int, BIO *);
static void	fuzz_record(const char *);

static struct fuzz_pki	 pki;
static struct conf	*fuzz_conf;
static struct tls_route	*fuzz_tr;
static uint64_t		 rng_server, rng_client;
static uint64_t		*rng = &rng_server;	/* the side now running */
static const RAND_METHOD fuzz_rand = {
	fuzz_rand_seed, fuzz_rand_bytes, fuzz_rand_cleanup, fuzz_rand_add,
	fuzz_rand_bytes, fuzz_rand_status
};

static void
fuzz_fail(const char *fmt, ...)
{
	va_list	 ap;

	fprintf(stderr, "fuzz_tls_server: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* Set-up errors: not a finding, the harness cannot run. */
static void
fuzz_die(const char *what)
{
	fprintf(stderr, "fuzz_tls_server: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

/* The clock of this process: see the comment at the top. */
time_t
time(time_t *t)
{
	if (t != NULL)
		*t = FUZZ_NOW;
	return FUZZ_NOW;
}

/* splitmix64: fast, and the same bytes for the same seed everywhere. */
static int
fuzz_rand_bytes(unsigned char *buf, int num)
{
	uint64_t	z = 0;
	int		i;

	for (i = 0; i < num; i++) {
		if (i % 8 == 0) {
			z = (*rng += 0x9e3779b97f4a7c15ULL);
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
			z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
			z ^= z >> 31;
		}
		buf[i] = (unsigned char)(z >> (8 * (i % 8)));
	}
	return 1;
}

static int
fuzz_rand_seed(const void *buf, int num)
{
	(void)buf;
	(void)num;
	return 1;
}

static int
fuzz_rand_add(const void *buf, int num, double entropy)
{
	(void)buf;
	(void)num;
	(void)entropy;
	return 1;
}

static int
fuzz_rand_status(void)
{
	return 1;
}

static void
fuzz_rand_cleanup(void)
{
}

static void
fuzz_rand_reset(uint64_t *state, uint64_t seed)
{
	*state = seed;
	rng = state;
}

/*
 * One certificate: subject CN (and O, OU if given), signed by issuer's key
 * (self-signed when issuer is NULL), valid from nb to na (YYYYMMDDHHMMSSZ).
 * san and eku may be NULL; a NULL eku makes a CA.
 */
static X509 *
fuzz_cert(EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, long serial,
    const char *cn, const char *ou, const char *san, const char *eku,
    const char *nb, const char *na)
{
	X509V3_CTX	 v3;
	X509_EXTENSION	*ext;
	X509_NAME	*name;
	X509		*x;
	int		 ca = eku == NULL;
	struct {
		int		 nid;
		const char	*value;
	}		 exts[6];
	size_t		 i, n = 0;

	if ((x = X509_new()) == NULL || X509_set_version(x, 2) != 1 ||
	    ASN1_INTEGER_set(X509_get_serialNumber(x), serial) != 1 ||
	    ASN1_TIME_set_string_X509(X509_getm_notBefore(x), nb) != 1 ||
	    ASN1_TIME_set_string_X509(X509_getm_notAfter(x), na) != 1 ||
	    X509_set_pubkey(x, key) != 1)
		fuzz_die("cannot build a certificate");
	name = X509_get_subject_name(x);
	if ((ou != NULL && (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
	    (const unsigned char *)"Fuzz Org", -1, -1, 0) != 1 ||
	    X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_UTF8,
	    (const unsigned char *)ou, -1, -1, 0) != 1)) ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0) != 1 ||
	    X509_set_issuer_name(x, issuer != NULL ?
	    X509_get_subject_name(issuer) : name) != 1)
		fuzz_die("cannot name a certificate");

	exts[n].nid = NID_basic_constraints;
	exts[n++].value = ca ? "critical,CA:TRUE" : "critical,CA:FALSE";
	exts[n].nid = NID_key_usage;
	exts[n++].value = ca ? "critical,keyCertSign,cRLSign" :
	    "critical,digitalSignature";
	exts[n].nid = NID_subject_key_identifier;
	exts[n++].value = "hash";
	exts[n].nid = NID_authority_key_identifier;
	exts[n++].value = "keyid:always";
	if (eku != NULL) {
		exts[n].nid = NID_ext_key_usage;
		exts[n++].value = eku;
	}
	if (san != NULL) {
		exts[n].nid = NID_subject_alt_name;
		exts[n++].value = san;
	}
	X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
	for (i = 0; i < n; i++) {
		if ((ext = X509V3_EXT_conf_nid(NULL, &v3, exts[i].nid,
		    exts[i].value)) == NULL || X509_add_ext(x, ext, -1) != 1)
			fuzz_die("cannot add an extension");
		X509_EXTENSION_free(ext);
	}
	if (X509_sign(x, ikey, EVP_sha256()) == 0)
		fuzz_die("cannot sign a certificate");
	return x;
}

static void
fuzz_make_pki(struct fuzz_pki *p)
{
	static const char	 nb[] = "20250101000000Z";
	static const char	 na[] = "20450101000000Z";
	static const char	 good_san[] =
	    "URI:spiffe://fuzz.test/ns/prod/sa/web,DNS:web.fuzz.test,"
	    "IP:192.0.2.7,email:web@fuzz.test";
	X509_REVOKED		*rev;
	ASN1_TIME		*t;
	EVP_PKEY		**k;
	int			 i;

	for (i = 0; i < CLIENT__COUNT + 2; i++) {
		k = i == 0 ? &p->ca_key : i == 1 ? &p->srv_key :
		    &p->cl_key[i - 2];
		if ((*k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) ==
		    NULL)
			fuzz_die("cannot make a key");
	}
	p->ca = fuzz_cert(p->ca_key, NULL, p->ca_key, 1, "mtlsd fuzz root",
	    NULL, NULL, NULL, nb, na);
	p->srv = fuzz_cert(p->srv_key, p->ca, p->ca_key, 2,
	    "server.fuzz.test", NULL, "DNS:server.fuzz.test", "serverAuth",
	    nb, na);
	p->cl[CLIENT_GOOD] = fuzz_cert(p->cl_key[CLIENT_GOOD], p->ca,
	    p->ca_key, 10, "web", "web-team", good_san, "clientAuth", nb, na);
	p->cl[CLIENT_INTRUDER] = fuzz_cert(p->cl_key[CLIENT_INTRUDER], p->ca,
	    p->ca_key, 11, "intruder", "dev",
	    "URI:spiffe://fuzz.test/ns/dev/sa/intruder,DNS:intruder.fuzz.test",
	    "clientAuth", nb, na);
	p->cl[CLIENT_REVOKED] = fuzz_cert(p->cl_key[CLIENT_REVOKED], p->ca,
	    p->ca_key, 12, "web", "web-team", good_san, "clientAuth", nb, na);
	p->cl[CLIENT_UNTRUSTED] = fuzz_cert(p->cl_key[CLIENT_UNTRUSTED], NULL,
	    p->cl_key[CLIENT_UNTRUSTED], 13, "web", "web-team", good_san,
	    "clientAuth", nb, na);
	p->cl[CLIENT_EXPIRED] = fuzz_cert(p->cl_key[CLIENT_EXPIRED], p->ca,
	    p->ca_key, 14, "web", "web-team", good_san, "clientAuth", nb,
	    "20250601000000Z");
	p->cl[CLIENT_FUTURE] = fuzz_cert(p->cl_key[CLIENT_FUTURE], p->ca,
	    p->ca_key, 15, "web", "web-team", good_san, "clientAuth",
	    "20300101000000Z", na);
	p->cl[CLIENT_NONE] = NULL;

	/*
	 * The CRL revokes serial 12.  It went stale a day before FUZZ_NOW,
	 * within the route's crl_grace, so that every chain goes through
	 * tls_verify_cb()'s grace rule.
	 */
	if ((p->crl = X509_CRL_new()) == NULL ||
	    X509_CRL_set_version(p->crl, 1) != 1 ||
	    X509_CRL_set_issuer_name(p->crl,
	    X509_get_subject_name(p->ca)) != 1 ||
	    (t = ASN1_TIME_new()) == NULL)
		fuzz_die("cannot build the CRL");
	if (ASN1_TIME_set_string_X509(t, "20251201000000Z") != 1 ||
	    X509_CRL_set1_lastUpdate(p->crl, t) != 1 ||
	    ASN1_TIME_set_string_X509(t, "20251231000000Z") != 1 ||
	    X509_CRL_set1_nextUpdate(p->crl, t) != 1 ||
	    (rev = X509_REVOKED_new()) == NULL ||
	    ASN1_TIME_set_string_X509(t, "20251101000000Z") != 1 ||
	    X509_REVOKED_set_revocationDate(rev, t) != 1 ||
	    X509_REVOKED_set_serialNumber(rev,
	    X509_get_serialNumber(p->cl[CLIENT_REVOKED])) != 1 ||
	    X509_CRL_add0_revoked(p->crl, rev) != 1 ||
	    X509_CRL_sort(p->crl) != 1 ||
	    X509_CRL_sign(p->crl, p->ca_key, EVP_sha256()) == 0)
		fuzz_die("cannot make the CRL");
	ASN1_TIME_free(t);
}

static int
fuzz_pem_cert(BIO *b, const void *x)
{
	return PEM_write_bio_X509(b, (X509 *)(uintptr_t)x);
}

static int
fuzz_pem_key(BIO *b, const void *k)
{
	return PEM_write_bio_PrivateKey(b, (EVP_PKEY *)(uintptr_t)k, NULL,
	    NULL, 0, NULL, NULL);
}

static int
fuzz_pem_crl(BIO *b, const void *c)
{
	return PEM_write_bio_X509_CRL(b, (X509_CRL *)(uintptr_t)c);
}

/* A file only this process sees; returns its name, /proc/self/fd/N. */
static char *
fuzz_memfd(const char *name, int (*pem)(BIO *, const void *),
    const void *obj, char *path, size_t len)
{
	BIO	*b;
	int	 fd;

	if ((fd = memfd_create(name, 0)) == -1 ||
	    (b = BIO_new_fd(fd, BIO_NOCLOSE)) == NULL ||
	    pem(b, obj) != 1 || BIO_flush(b) != 1)
		fuzz_die("cannot write a memfd");
	BIO_free(b);
	snprintf(path, len, "/proc/self/fd/%d", fd);
	return path;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char	 cert[64], key[64], ca[64], crl[64], text[2048];

	(void)argc;
	(void)argv;
	/* Before anything else in OpenSSL draws a random byte. */
	fuzz_rand_reset(&rng_server, FUZZ_SEED_PKI);
	if (RAND_set_rand_method(&fuzz_rand) != 1)
		fuzz_die("cannot install the fixed random generator");
	if (tls_init() == -1)
		fuzz_die("tls_init");
	fuzz_make_pki(&pki);

	snprintf(text, sizeof(text),
	    "tls = { cert = \"%s\"; key = \"%s\"; ca = \"%s\"; crl = \"%s\";\n"
	    "  crl_grace = 604800; };\n"
	    "inbound = ( {\n"
	    "  name = \"fuzz\";\n"
	    "  listen = \"127.0.0.1:8443\";\n"
	    "  target = \"127.0.0.1:8080\";\n"
	    "  allow = {\n"
	    "    uri = [ \"spiffe://fuzz.test/ns/*/sa/web\", "
	    "\"spiffe://fuzz.test/ops/**\" ];\n"
	    "    dns = \"*.ops.fuzz.test\";\n"
	    "    ip = \"192.0.2.99\";\n"
	    "    email = \"ops@fuzz.test\";\n"
	    "    cn = \"admin\"; ou = \"ops\"; o = \"Fuzz Ops\";\n"
	    "  };\n"
	    "} );\n",
	    fuzz_memfd("cert", fuzz_pem_cert, pki.srv, cert, sizeof(cert)),
	    fuzz_memfd("key", fuzz_pem_key, pki.srv_key, key, sizeof(key)),
	    fuzz_memfd("ca", fuzz_pem_cert, pki.ca, ca, sizeof(ca)),
	    fuzz_memfd("crl", fuzz_pem_crl, pki.crl, crl, sizeof(crl)));
	if (conf_load_string(text, "fuzz_tls_server.conf", stderr,
	    &fuzz_conf) == -1)
		fuzz_die("the configuration does not load");
	if ((fuzz_tr = tls_route_new(fuzz_conf, &fuzz_conf->c_routes[0],
	    stderr)) == NULL)
		fuzz_die("tls_route_new failed");
	/*
	 * A session in the server's cache would carry over to the next
	 * input; stateless tickets still resume within one input.
	 */
	SSL_CTX_set_session_cache_mode(fuzz_tr->tr_ctx,
	    SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);

	if (getenv("FUZZ_TLS_RECORD") != NULL) {
		fuzz_record(getenv("FUZZ_TLS_RECORD"));
		exit(0);
	}
	return 0;
}

/* One connection of a client that sends the size bytes at data. */
static void
fuzz_one(const uint8_t *data, size_t size, int conn, struct fuzz_result *res)
{
	const struct route	*r = fuzz_tr->tr_route;
	struct tls_judgement	 j;
	struct identities	 ids;
	struct verdict		 v;
	struct log_field	 f[12];
	X509			*peer;
	SSL			*ssl;
	BIO			*rbio, *wbio;
	char			 errs[512], scratch[1024];
	unsigned char		 buf[4096];
	int			 n, rv, e;

	memset(res, 0, sizeof(*res));
	memset(&j, 0, sizeof(j));
	tls_judgement_clear(&j);
	fuzz_rand_reset(&rng_server, FUZZ_SEED_SERVER + (uint64_t)conn);
	ERR_clear_error();
	/* tls_ssl_new() leaves the transport to us: memory BIOs. */
	if ((ssl = tls_ssl_new(fuzz_tr, &j)) == NULL)
		fuzz_die("tls_ssl_new");
	if ((rbio = BIO_new_mem_buf(data, (int)size)) == NULL ||
	    (wbio = BIO_new(BIO_s_null())) == NULL)
		fuzz_die("BIO_new");
	SSL_set_bio(ssl, rbio, wbio);

	if ((rv = SSL_do_handshake(ssl)) == 1) {
		res->done = 1;
		res->reused = SSL_session_reused(ssl);
		res->accepted = tls_handshake_done(fuzz_tr, ssl, &j);
		if (res->accepted != (j.tj_stage == STAGE_NONE))
			fuzz_fail("tls_handshake_done said %d, stage %s",
			    res->accepted, tls_stage_name(j.tj_stage));
		if (!res->reused && !(j.tj_judged && res->accepted))
			fuzz_fail("a full handshake completed, but the "
			    "verify step did not accept: %s", j.tj_error);
		peer = SSL_get0_peer_certificate(ssl);
		if (res->accepted) {
			if (peer == NULL ||
			    SSL_get_verify_result(ssl) != X509_V_OK)
				fuzz_fail("accepted without a verified peer "
				    "certificate");
			/* The policy, asked again, agrees. */
			if (policy_identities(peer, &ids) == -1)
				fuzz_die("out of memory");
			policy_judge(&r->r_allow, &ids, &v);
			policy_identities_free(&ids);
			if (!v.v_accept)
				fuzz_fail("accepted, but the policy now says: "
				    "%s", v.v_reason);
			ERR_clear_error();
			while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0)
				res->appdata += (size_t)n;
			e = SSL_get_error(ssl, n);
			if (e == SSL_ERROR_ZERO_RETURN)
				SSL_shutdown(ssl);
			ERR_clear_error();
		}
	} else {
		e = SSL_get_error(ssl, rv);
		log_tls_errors(errs, sizeof(errs));
		if (e == SSL_ERROR_WANT_WRITE)
			fuzz_fail("a null BIO asked to wait for writing");
		/* The input ended mid-handshake, or the peer erred. */
		tls_handshake_failed(ssl, &j, errs);
		if (j.tj_stage == STAGE_NONE || j.tj_reason == REASON_NONE ||
		    j.tj_error[0] == '\0')
			fuzz_fail("failed handshake without stage, reason or "
			    "words");
		if (j.tj_stage == STAGE_IDENTITY && j.tj_verify_err == 0 &&
		    j.tj_verdict.v_accept)
			fuzz_fail("identity stage, but the verdict accepted");
	}
	memset(scratch, 0, sizeof(scratch));
	tls_judgement_fields(&j, f, sizeof(f) / sizeof(f[0]), scratch,
	    sizeof(scratch));
	res->stage = j.tj_stage;
	res->reason = j.tj_reason;
	snprintf(res->error, sizeof(res->error), "%s", j.tj_error);

	SSL_free(ssl);
	tls_judgement_clear(&j);
	ERR_clear_error();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_result	 res;
	const uint8_t		*next;
	size_t			 len;
	int			 conn;

	for (conn = 0; conn < FUZZ_MAXCONN; conn++) {
		next = memmem(data, size, FUZZ_NEXT, FUZZ_NEXT_LEN);
		len = next != NULL ? (size_t)(next - data) : size;
		fuzz_one(data, len, conn, &res);
		if (next == NULL)
			break;
		size -= len + FUZZ_NEXT_LEN;
		data = next + FUZZ_NEXT_LEN;
	}
	return 0;
}

/*
 * Record mode: a real client against this server, both in memory; what
 * the client sends is the seed.  The server runs on its own random stream,
 * reset per connection exactly as fuzz_one() does, so the recorded client
 * flights replay byte for byte.
 */
static void
fuzz_move(BIO *from, BIO *to, BIO *rec)
{
	char	 buf[4096];
	int	 n;

	while ((n = BIO_read(from, buf, sizeof(buf))) > 0) {
		BIO_write(to, buf, n);
		if (rec != NULL)
			BIO_write(rec, buf, n);
	}
}

static void
fuzz_step(struct fuzz_link *l, int client)
{
	SSL		*ssl = client ? l->c : l->s;
	int		*done = client ? &l->c_done : &l->s_done;
	unsigned char	 buf[1024];

	rng = client ? &rng_client : &rng_server;
	if (!*done && SSL_do_handshake(ssl) == 1)
		*done = 1;
	if (*done)
		while (SSL_read(ssl, buf, sizeof(buf)) > 0)
			;
	ERR_clear_error();
	if (client)
		fuzz_move(l->c_out, l->s_in, l->rec);
	else
		fuzz_move(l->s_out, l->c_in, NULL);
	rng = &rng_server;
}

/* One connection; the client's bytes are appended to rec. */
static SSL_SESSION *
fuzz_record_conn(SSL_CTX *cctx, SSL_SESSION *resume, int conn, BIO *rec)
{
	struct fuzz_link	 l;
	struct tls_judgement	 j;
	SSL_SESSION		*sess;
	static const char	 req[] = "GET / HTTP/1.0\r\n\r\n";
	int			 i;

	memset(&l, 0, sizeof(l));
	memset(&j, 0, sizeof(j));
	l.rec = rec;
	rng = &rng_client;
	if ((l.c = SSL_new(cctx)) == NULL ||
	    (l.c_in = BIO_new(BIO_s_mem())) == NULL ||
	    (l.c_out = BIO_new(BIO_s_mem())) == NULL)
		fuzz_die("client SSL");
	SSL_set_bio(l.c, l.c_in, l.c_out);
	SSL_set_connect_state(l.c);
	SSL_set_tlsext_host_name(l.c, "server.fuzz.test");
	if (resume != NULL)
		SSL_set_session(l.c, resume);

	fuzz_rand_reset(&rng_server, FUZZ_SEED_SERVER + (uint64_t)conn);
	if ((l.s = tls_ssl_new(fuzz_tr, &j)) == NULL ||
	    (l.s_in = BIO_new(BIO_s_mem())) == NULL ||
	    (l.s_out = BIO_new(BIO_s_mem())) == NULL)
		fuzz_die("server SSL");
	SSL_set_bio(l.s, l.s_in, l.s_out);

	for (i = 0; i < 20 && !(l.c_done && l.s_done); i++) {
		fuzz_step(&l, 1);
		fuzz_step(&l, 0);
	}
	if (l.c_done) {
		rng = &rng_client;
		SSL_write(l.c, req, sizeof(req) - 1);
		fuzz_step(&l, 1);
		fuzz_step(&l, 0);
		fuzz_step(&l, 1);	/* reads a TLS 1.3 ticket */
	}
	sess = l.c_done ? SSL_get1_session(l.c) : NULL;
	rng = &rng_client;
	SSL_shutdown(l.c);
	fuzz_step(&l, 1);
	SSL_free(l.c);
	SSL_free(l.s);
	tls_judgement_clear(&j);
	ERR_clear_error();
	rng = &rng_server;
	return sess;
}

static void
fuzz_record(const char *dir)
{
	static const struct {
		const char		*name;
		enum fuzz_client	 client;
		int			 maxver;
		int			 resume;
	} seeds[] = {
		{ "tls13-accept", CLIENT_GOOD, TLS1_3_VERSION, 0 },
		{ "tls13-no-cert", CLIENT_NONE, TLS1_3_VERSION, 0 },
		{ "tls13-identity", CLIENT_INTRUDER, TLS1_3_VERSION, 0 },
		{ "tls13-revoked", CLIENT_REVOKED, TLS1_3_VERSION, 0 },
		{ "tls13-untrusted", CLIENT_UNTRUSTED, TLS1_3_VERSION, 0 },
		{ "tls13-expired", CLIENT_EXPIRED, TLS1_3_VERSION, 0 },
		{ "tls13-not-yet-valid", CLIENT_FUTURE, TLS1_3_VERSION, 0 },
		{ "tls13-resume", CLIENT_GOOD, TLS1_3_VERSION, 1 },
		{ "tls12-accept", CLIENT_GOOD, TLS1_2_VERSION, 0 },
		{ "tls12-no-cert", CLIENT_NONE, TLS1_2_VERSION, 0 },
		{ "tls12-identity", CLIENT_INTRUDER, TLS1_2_VERSION, 0 },
		{ "tls12-resume", CLIENT_GOOD, TLS1_2_VERSION, 1 },
	};
	struct fuzz_result	 res;
	SSL_CTX			*cctx;
	SSL_SESSION		*sess;
	BIO			*rec;
	FILE			*fp;
	char			 path[1024], *p, *data, *next;
	long			 len;
	size_t			 i, left, part;
	int			 conn;

	for (i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		fuzz_rand_reset(&rng_client, FUZZ_SEED_CLIENT + i);
		if ((cctx = SSL_CTX_new(TLS_client_method())) == NULL ||
		    (rec = BIO_new(BIO_s_mem())) == NULL)
			fuzz_die("client context");
		SSL_CTX_set_max_proto_version(cctx, seeds[i].maxver);
		SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT);
		if (pki.cl[seeds[i].client] != NULL &&
		    (SSL_CTX_use_certificate(cctx,
		    pki.cl[seeds[i].client]) != 1 ||
		    SSL_CTX_use_PrivateKey(cctx,
		    pki.cl_key[seeds[i].client]) != 1))
			fuzz_die("client certificate");
		sess = fuzz_record_conn(cctx, NULL, 0, rec);
		if (seeds[i].resume) {
			if (sess == NULL)
				fuzz_die("no session to resume");
			BIO_write(rec, FUZZ_NEXT, FUZZ_NEXT_LEN);
			SSL_SESSION_free(fuzz_record_conn(cctx, sess, 1, rec));
		}
		SSL_SESSION_free(sess);
		SSL_CTX_free(cctx);
		rng = &rng_server;

		len = BIO_get_mem_data(rec, &p);
		snprintf(path, sizeof(path), "%s/%s", dir, seeds[i].name);
		if ((fp = fopen(path, "wb")) == NULL ||
		    fwrite(p, 1, (size_t)len, fp) != (size_t)len ||
		    fclose(fp) != 0)
			fuzz_die(path);

		/* Replay it as the fuzzer will, and say how it went. */
		if ((data = malloc((size_t)len)) == NULL)
			fuzz_die("malloc");
		memcpy(data, p, (size_t)len);
		fprintf(stderr, "%-16s %5ld bytes:", seeds[i].name, len);
		for (conn = 0, p = data, left = (size_t)len;
		    conn < FUZZ_MAXCONN; conn++) {
			next = memmem(p, left, FUZZ_NEXT, FUZZ_NEXT_LEN);
			part = next != NULL ? (size_t)(next - p) : left;
			fuzz_one((const uint8_t *)p, part, conn, &res);
			fprintf(stderr, " [%s%s, %s/%s, %zu bytes read%s%s]",
			    res.done ? "done" : "failed",
			    res.reused ? " resumed" : "",
			    tls_stage_name(res.stage),
			    tls_reason_name(res.reason), res.appdata,
			    res.error[0] != '\0' ? ": " : "", res.error);
			if (next == NULL)
				break;
			left -= part + FUZZ_NEXT_LEN;
			p = next + FUZZ_NEXT_LEN;
		}
		fputc('\n', stderr);
		free(data);
		BIO_free(rec);
	}
}
