#!/bin/bash
#
# check-certs.sh [OUTDIR] -- check that the demo PKI made by make-certs.sh
# (default OUTDIR: out/ next to this script) gives every scenario the
# verdict its name promises, as OpenSSL's own verifier sees it.  Prints one
# "ok"/"not ok" line per check (TAP style) and exits 1 on any mismatch.

set -eu

here=$(cd "$(dirname "$0")" && pwd)
d=${1:-$here/out}
d=${d%/}

if [ ! -f "$d/.complete" ]; then
	echo "check-certs: $d is not a complete PKI (run make-certs.sh)" >&2
	exit 1
fi

n=0
failed=0

pass() { n=$((n + 1)); echo "ok $n - $1"; }
fail() {
	n=$((n + 1))
	failed=$((failed + 1))
	echo "not ok $n - $1"
	if [ -n "${2-}" ]; then
		printf '%s\n' "$2" | sed 's/^/#   /'
	fi
}

# verify [OPTION...] NAME: verify NAME.leaf.crt against the demo root, with
# the intermediate offered as untrusted (as a peer would send it).
verify() {
	local name
	name=${*: -1}
	set -- "${@:1:$#-1}"
	openssl verify -CAfile "$d/ca-bundle.crt" -untrusted "$d/int.crt" \
	    "$@" "$d/$name.leaf.crt" 2>&1
}

# expect_ok DESC [OPTION...] NAME
expect_ok() {
	local desc=$1 out
	shift
	if out=$(verify "$@"); then
		pass "$desc"
	else
		fail "$desc" "$out"
	fi
}

# expect_err DESC DEPTH MESSAGE [OPTION...] NAME: verification fails, and
# the first error OpenSSL reports is MESSAGE at DEPTH.
expect_err() {
	local desc=$1 depth=$2 msg=$3 out first
	shift 3
	if out=$(verify "$@"); then
		fail "$desc (verified OK)" "$out"
		return
	fi
	first=$(printf '%s\n' "$out" | grep -m1 '^error [0-9]* at ' || true)
	case $first in
	*" at $depth depth lookup: $msg")
		pass "$desc" ;;
	*)
		fail "$desc (want: $msg at depth $depth)" "$out" ;;
	esac
}

# check DESC COMMAND...: the command succeeds.
check() {
	local desc=$1 out
	shift
	if out=$("$@" 2>&1); then
		pass "$desc"
	else
		fail "$desc" "$out"
	fi
}

ncerts() { grep -c -- '-----BEGIN CERTIFICATE-----' "$1" || true; }
ncrls() { grep -c -- '-----BEGIN X509 CRL-----' "$1" || true; }
san() {
	openssl x509 -noout -ext subjectAltName -in "$d/$1.leaf.crt" 2>/dev/null
}

# key_matches NAME: NAME.key is the private half of NAME.leaf.crt.
key_matches() {
	[ "$(openssl pkey -pubout -in "$d/$1.key")" = \
	    "$(openssl x509 -noout -pubkey -in "$d/$1.leaf.crt")" ]
}

# chain_ok NAME: NAME.crt starts with NAME.leaf.crt and holds N certs.
chain_ok() {
	[ "$(openssl x509 -in "$d/$1.crt")" = \
	    "$(openssl x509 -in "$d/$1.leaf.crt")" ] &&
	    [ "$(ncerts "$d/$1.crt")" -eq "$2" ]
}

# has_text NAME TEXT...: the text form of NAME.leaf.crt contains each TEXT.
has_text() {
	local name=$1 txt t
	shift
	txt=$(openssl x509 -noout -text -in "$d/$name.leaf.crt")
	for t in "$@"; do
		case $txt in
		*"$t"*) ;;
		*) echo "missing: $t"; return 1 ;;
		esac
	done
}

is_p256() {
	openssl pkey -noout -text -in "$d/$1.key" | grep -q 'NIST CURVE: P-256'
}

# --- The PKI itself ---------------------------------------------------------

check "ca-bundle.crt is the root alone" \
    test "$(ncerts "$d/ca-bundle.crt")" -eq 1
check "root is self-signed" \
    openssl verify -CAfile "$d/ca.crt" "$d/ca.crt"
check "root is 'mtlsd demo root'" test \
    "$(openssl x509 -noout -subject -in "$d/ca-bundle.crt")" = \
    "subject=CN = mtlsd demo root"
check "intermediate is 'mtlsd demo intermediate'" test \
    "$(openssl x509 -noout -subject -in "$d/int.crt")" = \
    "subject=CN = mtlsd demo intermediate"
check "rogue root is 'rogue root'" test \
    "$(openssl x509 -noout -subject -in "$d/rogue-ca.crt")" = \
    "subject=CN = rogue root"
check "intermediate chains to the root" \
    openssl verify -CAfile "$d/ca.crt" "$d/int.crt"
for k in ca int rogue-ca; do
	check "$k.key is ECDSA P-256" is_p256 "$k"
done
check "intermediate has pathlen 0" sh -c \
    "openssl x509 -noout -ext basicConstraints -in '$d/int.crt' |
    grep -q 'CA:TRUE, pathlen:0'"
check "crl.pem holds two CRLs" test "$(ncrls "$d/crl.pem")" -eq 2
check "crl-stale.pem holds two CRLs" test "$(ncrls "$d/crl-stale.pem")" -eq 2
check "crl-int-revoked.pem holds two CRLs" \
    test "$(ncrls "$d/crl-int-revoked.pem")" -eq 2

# --- Every leaf: key, chain file, algorithm ---------------------------------

for name in server client other cnonly ipclient deep expired future revoked \
    serveronly; do
	check "$name: key matches certificate" key_matches "$name"
	check "$name: $name.crt is leaf + intermediate" chain_ok "$name" 2
	check "$name: key is ECDSA P-256" is_p256 "$name"
done
for name in selfsigned untrusted; do
	check "$name: key matches certificate" key_matches "$name"
	check "$name: $name.crt is the leaf alone" chain_ok "$name" 1
done

# --- Identities -------------------------------------------------------------

check "server: SANs" has_text server \
    "URI:spiffe://example.org/ns/prod/sa/api" "DNS:api.example.org" \
    "DNS:localhost" "IP Address:127.0.0.1" "IP Address:0:0:0:0:0:0:0:1" \
    "Subject: CN = api.example.org"
check "client: SANs and subject" has_text client \
    "URI:spiffe://example.org/ns/prod/sa/web" "DNS:web.example.org" \
    "email:web@example.org" "O = Example Org, OU = web-team, CN = web"
check "other: SANs" has_text other \
    "URI:spiffe://example.org/ns/dev/sa/intruder" "DNS:intruder.example.org"
check "cnonly: subject" has_text cnonly \
    "O = Example Org, OU = ops, CN = cnonly.example.org"
check "cnonly: no SAN at all" test -z "$(san cnonly)"
check "ipclient: IP SANs only" test \
    "$(san ipclient | tail -n +2 | tr -d ' ')" = \
    "IPAddress:127.0.0.5,IPAddress:0:0:0:0:0:0:0:5"
check "deep: DNS SAN only" test \
    "$(san deep | tail -n +2 | tr -d ' ')" = "DNS:a.b.example.org"
for name in expired future revoked serveronly selfsigned untrusted; do
	check "$name: client's identity" has_text "$name" \
	    "URI:spiffe://example.org/ns/prod/sa/web"
done

# --- Verdicts -----------------------------------------------------------------

for name in server client other cnonly ipclient deep serveronly; do
	expect_ok "$name verifies" "$name"
	expect_ok "$name verifies with crl.pem" \
	    -crl_check_all -CRLfile "$d/crl.pem" "$name"
done
expect_ok "revoked verifies without a CRL" revoked
expect_err "revoked is revoked by crl.pem" 0 "certificate revoked" \
    -crl_check_all -CRLfile "$d/crl.pem" revoked
expect_err "crl-stale.pem has expired" 0 "CRL has expired" \
    -crl_check_all -CRLfile "$d/crl-stale.pem" client
expect_err "crl-int-revoked.pem revokes the intermediate" 1 \
    "certificate revoked" \
    -crl_check_all -CRLfile "$d/crl-int-revoked.pem" client
expect_err "expired has expired" 0 "certificate has expired" expired
expect_err "future is not yet valid" 0 "certificate is not yet valid" future
expect_err "untrusted has an unknown issuer" 0 \
    "unable to get local issuer certificate" untrusted
expect_err "selfsigned is self-signed" 0 "self-signed certificate" selfsigned
check "untrusted does verify under rogue root" \
    openssl verify -CAfile "$d/rogue-ca.crt" "$d/untrusted.crt"

expect_ok "client is fit for TLS client auth" -purpose sslclient client
expect_ok "client is fit for TLS server auth" -purpose sslserver client
expect_ok "server is fit for TLS server auth" -purpose sslserver server
expect_ok "server is fit for TLS client auth" -purpose sslclient server
expect_ok "serveronly is fit for TLS server auth" -purpose sslserver serveronly
expect_err "serveronly is unfit for TLS client auth" 0 \
    "unsuitable certificate purpose" -purpose sslclient serveronly

# What a peer presents (NAME.crt) is enough on its own to build the chain.
for name in server client other cnonly ipclient deep; do
	check "$name.crt is a complete chain" openssl verify \
	    -CAfile "$d/ca-bundle.crt" -untrusted "$d/$name.crt" \
	    "$d/$name.leaf.crt"
done

echo "1..$n"
if [ "$failed" -ne 0 ]; then
	echo "check-certs: $failed of $n checks failed" >&2
	exit 1
fi
echo "check-certs: all $n checks passed"
