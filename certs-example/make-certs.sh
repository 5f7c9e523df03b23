#!/bin/bash
#
# make-certs.sh [OUTDIR] -- the demo PKI for mtlsd (default OUTDIR: out/
# next to this script).  Uses only the openssl command line (3.0 or later),
# ECDSA P-256 throughout.  See README.md for what each file is for.
#
# Idempotent: when OUTDIR/.complete exists and nothing in OUTDIR is due
# within 7 days (leaf and CA expiry, CRL nextUpdate, the start of the
# "future" leaf), it does nothing.  Otherwise it builds a new PKI in a
# directory beside OUTDIR and renames it into place, so a reader never sees
# a half-made OUTDIR.
#
# Every signature goes through "openssl ca", because in OpenSSL 3.0 it is
# the only command that takes explicit validity dates (-startdate/-enddate)
# and explicit CRL dates (-crl_lastupdate/-crl_nextupdate); "x509 -req" and
# "req -x509" only know -days, which cannot be negative.
#
# The private keys are demo material and are made world-readable (0644) on
# purpose: mtlsd re-reads them on SIGHUP after it has dropped to an
# unprivileged user.  Never use them for anything real; never commit them.

set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/out}
out=${out%/}
[ -n "$out" ] || { echo "make-certs: refusing to use / as OUTDIR" >&2; exit 2; }

# Leaves presented with the intermediate, and leaves presented alone.
CHAINED="server client other cnonly ipclient deep expired future revoked
    serveronly"
LONE="selfsigned untrusted"
# Leaves that must stay valid for the demo and the tests to mean anything.
GOOD_LEAVES="server client other cnonly ipclient deep serveronly revoked
    selfsigned untrusted"
OTHER_FILES="ca.crt ca.key ca-bundle.crt int.crt int.key rogue-ca.crt
    rogue-ca.key crl.pem crl-stale.pem crl-int-revoked.pem"
DAY=86400
MARGIN=$((7 * DAY))

log() { printf '%s\n' "$*"; }

# ts OFFSET: NOW + OFFSET seconds as the GeneralizedTime openssl wants;
# hts OFFSET: the same for people.
ts() { date -u -d "@$((NOW + $1))" +%Y%m%d%H%M%SZ; }
hts() { date -u -d "@$((NOW + $1))" '+%Y-%m-%d %H:%M UTC'; }

# epoch "Nov 26 01:37:33 2026 GMT" (the format openssl prints) -> seconds.
epoch() { date -u -d "$1" +%s; }

# fresh: the existing OUTDIR is complete and nothing in it is due soon.
fresh() {
	local now n v
	now=$(date -u +%s)
	[ -f "$out/.complete" ] || return 1
	for n in $OTHER_FILES; do
		[ -f "$out/$n" ] || return 1
	done
	for n in $CHAINED $LONE; do
		[ -f "$out/$n.crt" ] && [ -f "$out/$n.key" ] &&
		    [ -f "$out/$n.leaf.crt" ] || return 1
	done
	for n in ca int rogue-ca; do
		openssl x509 -noout -checkend "$MARGIN" \
		    -in "$out/$n.crt" >/dev/null 2>&1 || return 1
	done
	for n in $GOOD_LEAVES; do
		openssl x509 -noout -checkend "$MARGIN" \
		    -in "$out/$n.leaf.crt" >/dev/null 2>&1 || return 1
	done
	# The "future" leaf must still be in the future, and the good CRL
	# must not go stale, for a while yet.
	v=$(openssl x509 -noout -startdate -in "$out/future.leaf.crt" \
	    2>/dev/null) || return 1
	[ "$(epoch "${v#notBefore=}")" -gt $((now + MARGIN)) ] || return 1
	v=$(openssl crl -noout -nextupdate -in "$out/crl.pem" 2>/dev/null) ||
	    return 1
	[ "$(epoch "${v#nextUpdate=}")" -gt $((now + MARGIN)) ] || return 1
	return 0
}

if fresh; then
	log "make-certs: $out is up to date"
	exit 0
fi

# Replace only a directory that this script made (or an empty one).
if [ -e "$out" ] && [ ! -f "$out/.complete" ] && [ ! -f "$out/ca.key" ] &&
    [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
	echo "make-certs: $out exists and was not made by make-certs.sh;" \
	    "not touching it" >&2
	exit 2
fi

mkdir -p "$(dirname "$out")"
work=$(mktemp -d)
stage=$(mktemp -d "$out.new.XXXXXX")
trap 'rm -rf "$work" "$stage"' EXIT
trap 'exit 1' HUP INT TERM

# run CMD...: quiet unless it fails (openssl ca is chatty on stderr).
run() {
	if ! "$@" >"$work/run.log" 2>&1; then
		cat "$work/run.log" >&2
		echo "make-certs: failed: $*" >&2
		exit 1
	fi
}

# Dates, all relative to one NOW so that every certificate agrees.
NOW=$(date -u +%s)
NOW_M2D=$(ts $((-2 * DAY)))
NOW_M1H=$(ts -3600)
LEAF_END=$(ts $((825 * DAY)))
INT_END=$(ts $((1826 * DAY)))
ROOT_END=$(ts $((3652 * DAY)))
EXPIRED_START=$(ts $((-60 * DAY)))
EXPIRED_END=$(ts $((-1 * DAY)))
FUTURE_START=$(ts $((30 * DAY)))
CRL_NEXT=$(ts $((30 * DAY)))
STALE_LAST=$(ts $((-10 * DAY)))
STALE_NEXT=$(ts $((-2 * DAY)))

# A minimal config for "openssl req" (it reads the subject from -subj, but
# insists on a distinguished_name section).
cat >"$work/req.cnf" <<'EOF'
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
EOF

# ca_init NAME CERT KEY: an "openssl ca" database and config for one issuer.
ca_init() {
	local d=$work/db-$1
	mkdir -p "$d/new"
	: >"$d/index.txt"
	openssl rand -hex 16 >"$d/serial"
	echo 1000 >"$d/crlnumber"
	cat >"$work/$1.cnf" <<EOF
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = $d
database = \$dir/index.txt
new_certs_dir = \$dir/new
serial = \$dir/serial
crlnumber = \$dir/crlnumber
certificate = $2
private_key = $3
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
copy_extensions = none
crl_extensions = crl_ext
[ policy_any ]
organizationName = optional
organizationalUnitName = optional
commonName = supplied
[ crl_ext ]
authorityKeyIdentifier = keyid:always
EOF
}

# ext_ca NAME [PATHLEN]: extensions of a CA certificate.
ext_ca() {
	{
		if [ -n "${2-}" ]; then
			echo "basicConstraints = critical, CA:TRUE, pathlen:$2"
		else
			echo "basicConstraints = critical, CA:TRUE"
		fi
		echo "keyUsage = critical, keyCertSign, cRLSign"
		echo "subjectKeyIdentifier = hash"
		echo "authorityKeyIdentifier = keyid:always"
	} >"$work/$1.ext"
}

# ext_leaf NAME EKU [SAN]: extensions of an end-entity certificate.
ext_leaf() {
	{
		echo "basicConstraints = critical, CA:FALSE"
		echo "keyUsage = critical, digitalSignature"
		echo "extendedKeyUsage = $2"
		echo "subjectKeyIdentifier = hash"
		echo "authorityKeyIdentifier = keyid:always"
		if [ -n "${3-}" ]; then
			echo "subjectAltName = $3"
		fi
	} >"$work/$1.ext"
}

# issue CA NAME SUBJECT START END [-selfsign]: key, CSR, certificate.
# The certificate goes to NAME.leaf.crt (callers rename CA certificates).
issue() {
	local ca=$1 name=$2 subj=$3 start=$4 end=$5
	shift 5
	run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
	    -out "$stage/$name.key"
	chmod 644 "$stage/$name.key"
	run openssl req -new -config "$work/req.cnf" -key "$stage/$name.key" \
	    -subj "$subj" -out "$work/$name.csr"
	run openssl ca -batch -config "$work/$ca.cnf" -notext \
	    -in "$work/$name.csr" -out "$stage/$name.leaf.crt" \
	    -startdate "$start" -enddate "$end" \
	    -extfile "$work/$name.ext" "$@"
}

# --- CAs ------------------------------------------------------------------

ca_init root "$stage/ca.crt" "$stage/ca.key"
ext_ca ca
issue root ca "/CN=mtlsd demo root" "$NOW_M2D" "$ROOT_END" \
    -selfsign -keyfile "$stage/ca.key"
mv "$stage/ca.leaf.crt" "$stage/ca.crt"
cp "$stage/ca.crt" "$stage/ca-bundle.crt"

ext_ca int 0
issue root int "/CN=mtlsd demo intermediate" "$NOW_M2D" "$INT_END"
mv "$stage/int.leaf.crt" "$stage/int.crt"
ca_init int "$stage/int.crt" "$stage/int.key"

ca_init rogue "$stage/rogue-ca.crt" "$stage/rogue-ca.key"
ext_ca rogue-ca
issue rogue rogue-ca "/CN=rogue root" "$NOW_M2D" "$ROOT_END" \
    -selfsign -keyfile "$stage/rogue-ca.key"
mv "$stage/rogue-ca.leaf.crt" "$stage/rogue-ca.crt"

# --- Leaves -----------------------------------------------------------------

BOTH="serverAuth, clientAuth"
WEB_SUBJ="/O=Example Org/OU=web-team/CN=web"
WEB_SAN="URI:spiffe://example.org/ns/prod/sa/web, DNS:web.example.org,"
WEB_SAN="$WEB_SAN email:web@example.org"

# leaf CA NAME SUBJECT SAN [START END [EKU]] -- SAN may be empty.
leaf() {
	ext_leaf "$2" "${7:-$BOTH}" "$4"
	issue "$1" "$2" "$3" "${5:-$NOW_M2D}" "${6:-$LEAF_END}"
}

SERVER_SAN="URI:spiffe://example.org/ns/prod/sa/api, DNS:api.example.org,"
SERVER_SAN="$SERVER_SAN DNS:localhost, IP:127.0.0.1, IP:::1"
leaf int server "/CN=api.example.org" "$SERVER_SAN"
leaf int client "$WEB_SUBJ" "$WEB_SAN"
leaf int other "/CN=intruder" \
    "URI:spiffe://example.org/ns/dev/sa/intruder, DNS:intruder.example.org"
leaf int cnonly "/O=Example Org/OU=ops/CN=cnonly.example.org" ""
leaf int ipclient "/CN=ipclient" "IP:127.0.0.5, IP:::5"
leaf int deep "/CN=deep" "DNS:a.b.example.org"
leaf int expired "$WEB_SUBJ" "$WEB_SAN" "$EXPIRED_START" "$EXPIRED_END"
leaf int future "$WEB_SUBJ" "$WEB_SAN" "$FUTURE_START" "$LEAF_END"
leaf int revoked "$WEB_SUBJ" "$WEB_SAN"
leaf int serveronly "$WEB_SUBJ" "$WEB_SAN" "" "" "serverAuth"
leaf rogue untrusted "$WEB_SUBJ" "$WEB_SAN"

# A self-signed leaf needs its own (throw-away) database.
ca_init self "$stage/selfsigned.leaf.crt" "$stage/selfsigned.key"
ext_leaf selfsigned "$BOTH" "$WEB_SAN"
issue self selfsigned "$WEB_SUBJ" "$NOW_M2D" "$LEAF_END" \
    -selfsign -keyfile "$stage/selfsigned.key"

# What a peer presents: the leaf, then the intermediate.  The rogue and
# self-signed leaves have no intermediate to add.
for n in $CHAINED; do
	cat "$stage/$n.leaf.crt" "$stage/int.crt" >"$stage/$n.crt"
done
for n in $LONE; do
	cp "$stage/$n.leaf.crt" "$stage/$n.crt"
done

# --- CRLs -------------------------------------------------------------------
#
# With X509_V_FLAG_CRL_CHECK_ALL, OpenSSL wants a CRL from the issuer of
# every certificate in the chain, the self-signed root included, so each
# file holds one CRL from the intermediate and one from the root.

crl() {	# crl CA OUTFILE LASTUPDATE NEXTUPDATE
	run openssl ca -batch -config "$work/$1.cnf" -gencrl -out "$2" \
	    -crl_lastupdate "$3" -crl_nextupdate "$4"
}

run openssl ca -batch -config "$work/int.cnf" \
    -revoke "$stage/revoked.leaf.crt" -crl_reason keyCompromise
crl int "$work/int.crl" "$NOW_M1H" "$CRL_NEXT"
crl int "$work/int-stale.crl" "$STALE_LAST" "$STALE_NEXT"
crl root "$work/root.crl" "$NOW_M1H" "$CRL_NEXT"
crl root "$work/root-stale.crl" "$STALE_LAST" "$STALE_NEXT"
run openssl ca -batch -config "$work/root.cnf" \
    -revoke "$stage/int.crt" -crl_reason CACompromise
crl root "$work/root-int-revoked.crl" "$NOW_M1H" "$CRL_NEXT"

cat "$work/int.crl" "$work/root.crl" >"$stage/crl.pem"
cat "$work/int-stale.crl" "$work/root-stale.crl" >"$stage/crl-stale.pem"
cat "$work/root-int-revoked.crl" "$work/int.crl" >"$stage/crl-int-revoked.pem"

echo "$NOW" >"$stage/.complete"
chmod 755 "$stage"

# --- Swap into place --------------------------------------------------------

# Concurrent runs (parallel test jobs) may race here; whichever complete
# PKI ends up in place is as good as ours.
for try in 1 2 3; do
	rm -rf "$out"
	if mv -T "$stage" "$out" 2>/dev/null || [ -f "$out/.complete" ]; then
		break
	fi
	if [ "$try" -eq 3 ]; then
		echo "make-certs: cannot create $out" >&2
		exit 1
	fi
done

cat <<EOF
make-certs: demo PKI in $out (ECDSA P-256)
  ca.crt ca-bundle.crt   root "mtlsd demo root" (trust anchor)
  int.crt                intermediate "mtlsd demo intermediate" (pathlen 0)
  rogue-ca.crt           unrelated root "rogue root"
  NAME.crt NAME.key NAME.leaf.crt  (NAME.crt = leaf + intermediate):
    server      spiffe://example.org/ns/prod/sa/api, api.example.org, localhost, 127.0.0.1, ::1
    client      spiffe://example.org/ns/prod/sa/web, web.example.org, web@example.org
    other       spiffe://example.org/ns/dev/sa/intruder (wrong identity)
    cnonly      no SAN, CN cnonly.example.org
    ipclient    IP 127.0.0.5, ::5
    deep        DNS a.b.example.org
    expired     client identity, notAfter $(hts $((-1 * DAY)))
    future      client identity, notBefore $(hts $((30 * DAY)))
    revoked     client identity, listed in crl.pem
    serveronly  client identity, extendedKeyUsage serverAuth only
    selfsigned  client identity, self-signed
    untrusted   client identity, issued by rogue root
  crl.pem              intermediate + root CRLs, nextUpdate $(hts $((30 * DAY)))
  crl-stale.pem        the same, nextUpdate $(hts $((-2 * DAY))) (stale)
  crl-int-revoked.pem  root CRL revoking the intermediate + intermediate CRL
EOF
