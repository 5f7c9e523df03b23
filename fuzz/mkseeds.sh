#!/bin/sh
#
# mkseeds.sh -- regenerates the binary seeds of fuzz/corpus/fuzz_policy
# from the demo PKI (make certs).  The other corpora are plain text files
# or, for fuzz_tls_server, written by the harness itself:
#   FUZZ_TLS_RECORD=fuzz/corpus/fuzz_tls_server build/fuzz/fuzz_tls_server
set -eu

pki=certs-example/out
out=fuzz/corpus/fuzz_policy
[ -f "$pki/client.leaf.crt" ] || { echo "run make certs first" >&2; exit 1; }
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# seed NAME CERT RULE...: RULE is KIND=PATTERN (KIND uri dns ip email cn
# ou o any); the layout is fuzz_policy.c's.
seed() {
	name=$1 cert=$2
	shift 2
	openssl x509 -in "$pki/$cert" -outform DER -out "$tmp/der"
	python3 - "$tmp/der" "$out/$name" "$@" <<'PY'
import struct, sys
kinds = ["uri", "dns", "ip", "email", "cn", "ou", "o", "any"]
der = open(sys.argv[1], "rb").read()
b = struct.pack(">H", len(der)) + der
for r in sys.argv[3:]:
    k, _, v = r.partition("=")
    v = v.encode()
    b += bytes([kinds.index(k), len(v)]) + v
open(sys.argv[2], "wb").write(b)
PY
}

seed client-uri client.leaf.crt uri=spiffe://example.org/ns/prod/sa/web
seed client-wild client.leaf.crt uri=spiffe://example.org/ns/*/sa/** \
    dns=*.example.org
seed client-miss client.leaf.crt uri=spiffe://example.org/ns/dev/sa/web \
    email=ops@example.org cn=api
seed client-email client.leaf.crt email=web@EXAMPLE.org ou=web-team \
    o=Example\ Org
seed cnonly cnonly.leaf.crt cn=cnonly.example.org dns=cnonly.example.org
seed deep deep.leaf.crt dns=*.b.example.org dns=*.example.org
seed ip ipclient.leaf.crt ip=127.0.0.5 ip=::5 ip=::ffff:127.0.0.5
seed server server.leaf.crt dns=localhost ip=::1 \
    uri=spiffe://example.org/ns/prod/sa/*
seed other-any other.leaf.crt dns=intruder.example.org any=
seed ca ca.crt cn=mtlsd\ demo\ root

# fuzz_pp2: raw headers for the reader (first byte even), and encoder
# inputs for the round trip (first byte odd); the layouts are fuzz_pp2.c's.
out=fuzz/corpus/fuzz_pp2
mkdir -p "$out"
python3 - "$out" <<'PY'
import os, socket, struct, sys
out = sys.argv[1]
SIG = b"\r\n\r\n\x00\r\nQUIT\n"

def tlv(t, v):
    return bytes([t]) + struct.pack(">H", len(v)) + v

def ssl(version=b"TLSv1.3", cipher=b"TLS_AES_128_GCM_SHA256", cn=b"web"):
    sub = tlv(0x21, version) + tlv(0x23, cipher) + tlv(0x22, cn)
    return tlv(0x20, bytes([0x03, 0, 0, 0, 0]) + sub)

def hdr(cmd, fam, addrs, tlvs):
    body = addrs + tlvs
    return SIG + bytes([0x20 | cmd, fam]) + struct.pack(">H", len(body)) + body

mtlsd = (tlv(0x02, b"api.example.org") + tlv(0x01, b"h2") + ssl() +
    tlv(0xe0, b"spiffe://example.org/ns/prod/sa/web") + tlv(0xe1, b"api") +
    tlv(0xe2, bytes(range(32))))
a4 = socket.inet_aton("192.0.2.7") + socket.inet_aton("127.0.0.1") + \
    struct.pack(">HH", 40000, 8443)
a6 = socket.inet_pton(socket.AF_INET6, "2001:db8::7") + \
    socket.inet_pton(socket.AF_INET6, "::1") + struct.pack(">HH", 40000, 8443)
au = b"/run/client.sock".ljust(108, b"\0") + b"/run/api.sock".ljust(108, b"\0")
raw = {
    "tcp4-mtlsd": hdr(1, 0x11, a4, mtlsd),
    "tcp6-mtlsd": hdr(1, 0x21, a6, mtlsd),
    "unix-mtlsd": hdr(1, 0x31, au, mtlsd),
    "udp4-bare": hdr(1, 0x12, a4, b""),
    "local-health": hdr(0, 0x00, b"", tlv(0x04, b"")),
    "unspec-tlvs": hdr(1, 0x00, b"", mtlsd),
    "tcp4-crc-noop": hdr(1, 0x11, a4,
        tlv(0x03, b"\0\0\0\0") + tlv(0x04, b"xx")),
    "truncated": hdr(1, 0x11, a4, mtlsd)[:40],
    "sig-only": SIG,
    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
}
for name, b in raw.items():
    open(os.path.join(out, "raw-" + name), "wb").write(b"\x00" + b)

def enc(fam, fields, bufsize=0, grow=0, src=b"", dst=b""):
    names = ["authority", "alpn", "version", "cipher", "cn", "identity",
        "route", "sha256"]
    mask = 0
    body = b""
    for i, n in enumerate(names):
        if n in fields:
            mask |= 1 << i
            body += struct.pack(">H", len(fields[n])) + fields[n]
    return (bytes([1, fam, mask]) + struct.pack(">H", bufsize) +
        bytes([grow]) + src.ljust(18, b"\0")[:18] + dst.ljust(18, b"\0")[:18] +
        body)

full = {"authority": b"api.example.org", "alpn": b"h2",
    "version": b"TLSv1.3", "cipher": b"TLS_AES_128_GCM_SHA256", "cn": b"web",
    "identity": b"spiffe://example.org/ns/prod/sa/web", "route": b"api",
    "sha256": bytes(range(32))}
s4 = socket.inet_aton("192.0.2.7").ljust(16, b"\0") + struct.pack(">H", 40000)
d4 = socket.inet_aton("127.0.0.1").ljust(16, b"\0") + struct.pack(">H", 8443)
s6 = socket.inet_pton(socket.AF_INET6, "2001:db8::7") + struct.pack(">H", 1)
encs = {
    "tcp4-full": enc(1 | 1 << 2, full, src=s4, dst=d4),
    "tcp6-full": enc(2 | 2 << 2, full, src=s6, dst=s6),
    "mapped": enc(1 | 2 << 2, full, src=s4, dst=s6),
    "unix": enc(3 | 3 << 2, {"identity": full["identity"]}, src=b"/run/x"),
    "none": enc(0, {}),
    "small-buffer": enc(1 | 1 << 2, full, bufsize=0x8000 | 60, src=s4, dst=d4),
    "too-big": enc(1 | 1 << 2, {"identity": b"x"}, grow=220, src=s4, dst=d4),
}
for name, b in encs.items():
    open(os.path.join(out, "enc-" + name), "wb").write(b)
PY
