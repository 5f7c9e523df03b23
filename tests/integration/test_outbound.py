"""
Outbound routes against a Python TLS server: what mtlsd sends (SNI, its
client certificate) and how it names the server it expects.
"""
from harness import (API_URI, WEB_URI, PlainConn, check, client_tls,
                     outbound_route)


def start_outbound(env, target, allow=None, server_name=None, **kw):
    port = env.port()
    route = outbound_route("db", "127.0.0.1:%d" % port, target,
                           allow or {"any": True})
    if server_name is not None:
        route["server_name"] = server_name
    route.update(kw)
    m = env.start_mtlsd(env.config(outbound=[route], tls=client_tls()))
    return m, ("127.0.0.1", port)


def echo_via(addr, data=b"via outbound\n"):
    c = PlainConn.connect(addr)
    try:
        return c.exchange(data, timeout=10)
    finally:
        c.close()


def test_outbound_sends_sni_and_client_chain(env):
    srv = env.tls_backend()
    m, addr = start_outbound(env, srv.addr, server_name="api.example.org")
    r = echo_via(addr)
    check(r.data == b"via outbound\n", "no echo: %r" % r)
    res = srv.wait_results(1)[0]
    check(srv.sni == ["api.example.org"], "SNI sent: %r" % srv.sni)
    sans = res["peer"].get("subjectAltName", ())
    check(("URI", WEB_URI) in sans, "the server saw client SANs %r" % (sans,))
    line = m.wait_log(r"result=ok|\"result\": ?\"ok\"")[0]
    check(API_URI in line, "conn line does not name the server: %s" % line)


def test_outbound_default_server_name_is_target_host(env):
    # server_name defaults to the host of target as written: "localhost"
    # is sent as SNI and checked as a host name.
    srv = env.tls_backend()
    m, addr = start_outbound(env, "localhost:%d" % srv.port)
    r = echo_via(addr)
    check(r.data == b"via outbound\n", "no echo: %r" % r)
    check(srv.sni == ["localhost"], "target localhost:%d without "
          "server_name sent SNI %r, not 'localhost'" % (srv.port, srv.sni))


def test_outbound_ip_target_sends_no_sni(env):
    srv = env.tls_backend()
    m, addr = start_outbound(env, "127.0.0.1:%d" % srv.port)
    r = echo_via(addr)
    check(r.data == b"via outbound\n", "no echo: %r" % r)
    check(srv.sni == [None], "an IP literal was sent as SNI: %r" % srv.sni)


def test_outbound_allow_rule_replaces_server_name(env):
    # A rule other than any names the server: server_name is then only
    # SNI, not checked.
    srv = env.tls_backend()
    m, addr = start_outbound(env, srv.addr, allow={"uri": [API_URI]},
                             server_name="wrong.example")
    r = echo_via(addr)
    check(r.data == b"via outbound\n", "the allow rule did not name the "
          "server: %r" % r)
    check(srv.sni == ["wrong.example"], "SNI %r" % srv.sni)


def test_outbound_ipv6_target_checks_ip_san(env):
    from harness import Skip, have_ipv6
    if not have_ipv6():
        raise Skip("no IPv6 loopback")
    srv = env.tls_backend(host="::1")
    m, addr = start_outbound(env, "[::1]:%d" % srv.port)
    r = echo_via(addr)
    check(r.data == b"via outbound\n", "no echo to [::1] (server_name "
          "::1 against IP SAN ::1): %r" % r)
    check(srv.sni == [None], "an IPv6 literal was sent as SNI: %r"
          % srv.sni)
