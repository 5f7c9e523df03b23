/*
 * Identity policy: which identities a certificate presents, and whether a
 * route's allow rules accept them.  No I/O: the same code judges a live
 * handshake and `mtlsd --explain`.
 */
#ifndef MTLSD_POLICY_H
#define MTLSD_POLICY_H

#include <stddef.h>

#include <openssl/x509.h>

#include "mtlsd/conf.h"

#define POLICY_TEXT_MAX	512

/* One identity of a certificate, in the kinds the allow rules use. */
struct identity {
	enum rule_kind		 id_kind;	/* never RULE_ANY */
	char			*id_value;	/* IP in canonical text form */
};

struct identities {
	struct identity		*ids_list;
	size_t			 ids_count;
};

struct verdict {
	int			 v_accept;
	const struct allow_rule	*v_rule;	/* the rule that matched */
	char			 v_identity[POLICY_TEXT_MAX]; /* what matched */
	/* The whole matched value, never cut; valid while ids live. */
	const char		*v_match;
	char			 v_reason[POLICY_TEXT_MAX];
};

/*
 * Collects the URI, DNS, IP and email SANs and the subject CN, OU and O of
 * cert, in that order (SANs in certificate order).  Values holding a NUL or
 * control character are left out: they cannot be trusted as text.
 * Returns 0, or -1 when out of memory (*out is then empty).
 */
int	 policy_identities(X509 *cert, struct identities *out);
void	 policy_identities_free(struct identities *ids);

/*
 * The identity a log line names: the first URI SAN, else the first DNS SAN,
 * else the CN, else "-".
 */
const char *policy_primary(const struct identities *ids);

/* "uri:spiffe://a/b dns:x.example cn:x" -- every identity, for logs. */
void	 policy_identities_str(const struct identities *ids, char *buf,
	    size_t len);

/*
 * Judges ids against allow.  v_accept is 1 when a rule matched; then
 * v_rule and v_identity say which.  v_reason always holds a sentence,
 * e.g. "identity not allowed: spiffe://x/y (allowed: uri spiffe://x/z)".
 */
void	 policy_judge(const struct allow *allow, const struct identities *ids,
	    struct verdict *v);

/*
 * Checks one rule value when the configuration is read: a malformed
 * pattern is an error, never a rule that silently matches nothing or
 * everything.  Returns 0, or -1 with a sentence in err.
 */
int	 policy_rule_check(enum rule_kind kind, const char *value, char *err,
	    size_t errlen);

/* The single matchers, exposed for tests and fuzzing. */
int	 policy_match_uri(const char *pattern, const char *uri);
int	 policy_match_dns(const char *pattern, const char *name);
int	 policy_match_ip(const char *pattern, const char *ip);
int	 policy_match_email(const char *pattern, const char *email);

#endif
