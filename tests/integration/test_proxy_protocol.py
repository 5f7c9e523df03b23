"""PROXY protocol v2 to the target (inbound proxy_protocol = true)."""
import socket
import struct

from harness import (Skip, TlsConn, WEB_URI, check, have_ipv6,
                     inbound_route, leaf_sha256)

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def read_exact(conn, n):
    buf = b""
    while len(buf) < n:
        b = conn.recv(n - len(buf))
        if not b:
            raise AssertionError("EOF inside the PROXY header (%d of %d "
                                 "bytes)" % (len(buf), n))
        buf += b
    return buf


def parse_tlvs(b):
    out = {}
    i = 0
    while i < len(b):
        check(i + 3 <= len(b), "a truncated TLV at %d" % i)
        t, n = b[i], struct.unpack(">H", b[i + 1:i + 3])[0]
        check(i + 3 + n <= len(b), "TLV 0x%02x overruns the header" % t)
        out.setdefault(t, []).append(b[i + 3:i + 3 + n])
        i += 3 + n
    return out


def h_pp2(srv, conn):
    """Reads and parses the PROXY v2 header, then echoes the rest."""
    head = read_exact(conn, 16)
    if head[:12] != SIG:
        # No header: keep what came for the test to see.
        return {"raw": head}
    ver_cmd, fam, n = head[12], head[13], struct.unpack(">H", head[14:16])[0]
    body = read_exact(conn, n)
    d = {"ver_cmd": ver_cmd, "fam": fam}
    if fam == 0x11:
        d["src"] = (socket.inet_ntop(socket.AF_INET, body[0:4]),
                    struct.unpack(">H", body[8:10])[0])
        d["dst"] = (socket.inet_ntop(socket.AF_INET, body[4:8]),
                    struct.unpack(">H", body[10:12])[0])
        rest = body[12:]
    elif fam == 0x21:
        d["src"] = (socket.inet_ntop(socket.AF_INET6, body[0:16]),
                    struct.unpack(">H", body[32:34])[0])
        d["dst"] = (socket.inet_ntop(socket.AF_INET6, body[16:32]),
                    struct.unpack(">H", body[34:36])[0])
        rest = body[36:]
    else:
        rest = body
    d["tlvs"] = parse_tlvs(rest)
    while True:
        b = conn.recv(65536)
        if not b:
            break
        conn.sendall(b)
    conn.shutdown(socket.SHUT_WR)
    return d


def run_pp2(env, host):
    srv = env._server(h_pp2, host=host)
    port = env.port(host)
    listen = ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
    conf = env.config(inbound=[inbound_route(
        "api", listen, srv.addr, {"uri": [WEB_URI]}, proxy_protocol=True)])
    m = env.start_mtlsd(conf)
    c = TlsConn.connect(host, port, server_hostname="localhost")
    lport = c.local_port()
    data = b"after the header\n" * 50
    try:
        r = c.exchange(data, timeout=10)
        cipher = c.obj.cipher()[0]
    finally:
        c.close()
    got = srv.wait_results(1)[0]
    check("raw" not in got, "the target got no PROXY v2 header but %r"
          % got.get("raw"))
    check(r.data == data, "the payload after the header: %r" % r)
    return got, lport, port, cipher


def check_tlvs(got, cipher):
    t = got["tlvs"]
    check(got["ver_cmd"] == 0x21, "version/command 0x%02x, not 0x21"
          % got["ver_cmd"])
    check(t.get(0x02) == [b"localhost"], "AUTHORITY (SNI): %r"
          % t.get(0x02))
    check(0x20 in t, "no PP2_TYPE_SSL TLV: %r" % sorted(t))
    ssl_tlv = t[0x20][0]
    client, verify = ssl_tlv[0], struct.unpack(">I", ssl_tlv[1:5])[0]
    check(client & 0x01 and client & 0x02, "PP2_TYPE_SSL client 0x%02x "
          "lacks PP2_CLIENT_SSL|PP2_CLIENT_CERT_CONN" % client)
    check(verify == 0, "PP2_TYPE_SSL verify %d, not 0" % verify)
    sub = parse_tlvs(ssl_tlv[5:])
    check(sub.get(0x21) == [b"TLSv1.3"], "SSL_VERSION %r" % sub.get(0x21))
    check(sub.get(0x23) == [cipher.encode()], "SSL_CIPHER %r, the client "
          "negotiated %s" % (sub.get(0x23), cipher))
    check(sub.get(0x22) == [b"web"], "SSL_CN %r" % sub.get(0x22))
    check(t.get(0xE0) == [WEB_URI.encode()], "0xE0 identity %r"
          % t.get(0xE0))
    check(t.get(0xE1) == [b"api"], "0xE1 route %r" % t.get(0xE1))
    check(t.get(0xE2) == [bytes.fromhex(leaf_sha256("client"))],
          "0xE2 sha256 %r" % t.get(0xE2))


def test_proxy_v2_header_ipv4(env):
    got, lport, port, cipher = run_pp2(env, "127.0.0.1")
    check(got["fam"] == 0x11, "family 0x%02x, not TCP4" % got["fam"])
    check(got["src"] == ("127.0.0.1", lport), "source %r, the client is "
          "127.0.0.1:%d" % (got["src"], lport))
    check(got["dst"] == ("127.0.0.1", port), "destination %r, the "
          "listener is 127.0.0.1:%d" % (got["dst"], port))
    check_tlvs(got, cipher)


def test_proxy_v2_header_ipv6(env):
    if not have_ipv6():
        raise Skip("no IPv6 loopback")
    got, lport, port, cipher = run_pp2(env, "::1")
    check(got["fam"] == 0x21, "family 0x%02x, not TCP6" % got["fam"])
    check(got["src"] == ("::1", lport), "source %r" % (got["src"],))
    check_tlvs(got, cipher)
