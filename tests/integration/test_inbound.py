"""
Inbound routes: every allow rule kind accepts its peer and refuses the
others; every refused peer never reaches the target and is explained in
one log line.
"""
import json

from harness import (INTRUDER_URI, WEB_URI, assert_echo, assert_rejected,
                     check, server_tls, start_inbound,
                     parse_line, tls_echo, try_client)

WEB_IDS = (WEB_URI, "web.example.org", "web@example.org")


def rule_case(env, allow, good, bad, bad_ids=(), bad_fp=True):
    """
    allow accepts cert `good` (bytes echoed) and refuses each of `bad`
    at the identity stage; the refused never reach the target.
    """
    echo = env.echo()
    m, port = start_inbound(env, allow=allow, target=echo.addr)
    for g in good:
        assert_echo(port, g)
    n = echo.connections
    check(n == len(good), "target saw %d connections for %d good peers"
          % (n, len(good)))
    for b in bad:
        assert_rejected(m, port, b, None, "identity",
                        ["identity not allowed"], bad_ids,
                        fingerprint_of=b if bad_fp else None)
    check(echo.connections == n, "a refused peer reached the target "
          "(%d connections, expected %d)" % (echo.connections, n))
    return m


# --------------------------------------------------------- rule kinds

def test_rule_uri_exact(env):
    rule_case(env, {"uri": [WEB_URI]}, ["client"], ["other"],
              [INTRUDER_URI, "intruder.example.org"])


def test_rule_uri_exact_is_not_prefix(env):
    # A URI rule is exact: a prefix of the peer's URI does not match.
    rule_case(env, {"uri": ["spiffe://example.org/ns/prod/sa/we",
                            "spiffe://example.org/ns/prod/sa"]},
              [], ["client"], [WEB_URI])


def test_rule_uri_star(env):
    m = rule_case(env, {"uri": ["spiffe://example.org/ns/*/sa/web"]},
                  ["client"], ["other"], [INTRUDER_URI])


def test_rule_uri_star_is_one_segment(env):
    # "*" is exactly one segment: ns/* does not reach ns/prod/sa/web.
    rule_case(env, {"uri": ["spiffe://example.org/ns/*",
                            "spiffe://example.org/*/prod/sa/web/*"]},
              [], ["client"], [WEB_URI])


def test_rule_uri_double_star(env):
    rule_case(env, {"uri": ["spiffe://example.org/ns/prod/**"]},
              ["client"], ["other"], [INTRUDER_URI])


def test_rule_uri_double_star_whole_domain(env):
    rule_case(env, {"uri": ["spiffe://example.org/**"]},
              ["client", "other"], ["cnonly"], ["cnonly.example.org"])


def test_rule_dns_exact(env):
    rule_case(env, {"dns": ["web.example.org"]}, ["client"], ["other"],
              ["intruder.example.org"])


def test_rule_dns_case_insensitive(env):
    rule_case(env, {"dns": ["WEB.Example.ORG"]}, ["client"], ["deep"],
              ["a.b.example.org"])


def test_rule_dns_wildcard(env):
    # *.example.org is one label: a.b.example.org is refused.
    rule_case(env, {"dns": ["*.example.org"]}, ["client", "other"],
              ["deep"], ["a.b.example.org"])


def test_rule_ip(env):
    rule_case(env, {"ip": ["127.0.0.5"]}, ["ipclient"], ["client"],
              [WEB_URI])


def test_rule_ip_v6(env):
    rule_case(env, {"ip": ["::5", "0:0:0:0:0:0:0:6"]}, ["ipclient"], ["client"],
              [WEB_URI])


def test_rule_ip_v6_any_spelling(env):
    # An IP rule is an address, whatever its spelling.
    rule_case(env, {"ip": ["0:0:0:0:0:0:0:5"]}, ["ipclient"], ["client"],
              [WEB_URI])


def test_rule_email(env):
    rule_case(env, {"email": ["web@example.org"]}, ["client"], ["other"],
              [INTRUDER_URI])


def test_rule_cn(env):
    rule_case(env, {"cn": ["cnonly.example.org"]}, ["cnonly"], ["other"],
              [INTRUDER_URI])


def test_rule_ou(env):
    rule_case(env, {"ou": ["web-team"]}, ["client"], ["cnonly"],
              ["cnonly.example.org"])


def test_rule_o(env):
    rule_case(env, {"o": ["Example Org"]}, ["client", "cnonly"], ["other"],
              [INTRUDER_URI])


def test_rule_any(env):
    # any = true takes every verified peer, and still no unverified one.
    echo = env.echo()
    m, port = start_inbound(env, allow={"any": True}, target=echo.addr)
    for g in ("client", "other", "cnonly", "deep", "ipclient"):
        assert_echo(port, g)
    n = echo.connections
    assert_rejected(m, port, "untrusted", None, "chain", [], [WEB_URI],
                    fingerprint_of="untrusted")
    check(echo.connections == n, "an untrusted peer reached the target")


def test_rule_several_kinds(env):
    # Rules of several kinds: any one matching is enough.
    rule_case(env, {"uri": [INTRUDER_URI], "ip": ["127.0.0.5"],
                    "cn": ["cnonly.example.org"]},
              ["other", "ipclient", "cnonly"], ["client"], [WEB_URI])


# ---------------------------------------------------- refused chains

def chain_case(env, cert_name, words, tls=None, stage="chain"):
    rec = env.recorder()
    m, port = start_inbound(env, target=rec.addr, tls=tls)
    return assert_rejected(m, port, cert_name, rec, stage, words,
                           [WEB_URI], fingerprint_of=cert_name)


def test_reject_expired(env):
    chain_case(env, "expired", ["certificate has expired"])


def test_reject_not_yet_valid(env):
    chain_case(env, "future", ["not yet valid"])


def test_reject_untrusted_ca(env):
    line = chain_case(env, "untrusted", [])
    check("untrusted" in line or "issuer" in line,
          "reject line does not say why the chain failed: %s" % line)


def test_reject_self_signed(env):
    chain_case(env, "selfsigned", ["self-signed"])


def test_reject_serveronly_eku(env):
    chain_case(env, "serveronly", ["purpose"])


def test_reject_revoked(env):
    tls = server_tls(crl=__import__("harness").cert("crl.pem"))
    rec = env.recorder()
    m, port = start_inbound(env, target=rec.addr, tls=tls)
    assert_rejected(m, port, "revoked", rec, "chain", ["revoked"],
                    [WEB_URI], fingerprint_of="revoked")
    # The CRL does not stop the good client.
    m2, port2 = start_inbound(env, target=env.echo().addr, tls=tls)
    assert_echo(port2, "client")


def test_reject_stale_crl(env):
    # A CRL past nextUpdate fails closed: even the good client is refused.
    import harness
    chain_case(env, "client", ["crl has expired"],
               tls=server_tls(crl=harness.cert("crl-stale.pem")))


def test_stale_crl_within_grace(env):
    import harness
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr, tls=server_tls(
        crl=harness.cert("crl-stale.pem"), crl_grace=30 * 86400.0))
    assert_echo(port, "client")
    # Grace does not forgive a revoked certificate... (the stale CRL
    # lists "revoked" as well).
    rec = env.recorder()
    m2, port2 = start_inbound(env, target=rec.addr, tls=server_tls(
        crl=harness.cert("crl-stale.pem"), crl_grace=30 * 86400.0))
    assert_rejected(m2, port2, "revoked", rec, "chain", ["revoked"],
                    [WEB_URI], fingerprint_of="revoked")


def test_reject_revoked_intermediate(env):
    import harness
    line = chain_case(env, "client", ["revoked"],
                      tls=server_tls(crl=harness.cert("crl-int-revoked.pem")))
    d = parse_line(line)
    if "depth" in d:
        check(str(d["depth"]) == "1", "the revoked intermediate is at "
              "depth 1: %s" % line)


def test_reject_no_client_certificate(env):
    rec = env.recorder()
    m, port = start_inbound(env, target=rec.addr)
    line = assert_rejected(m, port, None, rec, "handshake", ["certificate"])
    check("no certificate" in line.lower() or "no_certificate" in line
          or "did not return a certificate" in line,
          "reject line does not say the peer sent no certificate: %s" % line)


def test_reject_wrong_identity(env):
    rec = env.recorder()
    m, port = start_inbound(env, target=rec.addr)
    line = assert_rejected(m, port, "other", rec, "identity",
                           ["identity not allowed"],
                           [INTRUDER_URI, "intruder.example.org"],
                           fingerprint_of="other")
    check(WEB_URI in line, "reject line does not name the rule it failed: "
          "%s" % line)


def test_reject_lines_are_text_fields(env):
    # The text format: key=value pairs that a log shipper can split.
    rec = env.recorder()
    m, port = start_inbound(env, target=rec.addr)
    line = assert_rejected(m, port, "other", rec, "identity", [])
    d = parse_line(line)
    for k in ("route", "peer", "stage"):
        check(k in d, "reject line has no %s= field: %s" % (k, line))
    check(d["route"] == "api", "route=%r" % d.get("route"))


# ----------------------------------------------------------- JSON logs

def test_json_logs(env):
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr,
                            log={"level": "info", "format": "json"})
    data = b"json please\n" * 10
    c, r = tls_echo(port, data)
    check(r.data == data, "echo failed: %r" % r)
    lport, outcome, got = try_client(port, "other")
    check(got == b"", "refused peer got bytes")
    m.wait_log(r'"reject|reject"|identity_rejected')
    m.wait_log(r'"conn"|"result": ?"ok"')
    rc = m.stop()
    check(rc == 0, "exit %s after SIGTERM" % rc)
    objs = []
    for l in m.lines():
        try:
            o = json.loads(l)
        except ValueError:
            raise AssertionError("a stderr line is not JSON: %r" % l)
        check(isinstance(o, dict), "a line is JSON but not an object: %r"
              % l)
        objs.append(o)
    conns = [o for o in objs if o.get("result") == "ok"]
    check(len(conns) == 1, "expected one conn line with result ok, got %r"
          % conns)
    o = conns[0]
    for k in ("route", "peer", "identity", "bytes_in", "bytes_out",
              "result"):
        check(k in o, "JSON conn line lacks %r: %r" % (k, o))
    check(o["route"] == "api", "route %r" % o["route"])
    check(o["identity"] == WEB_URI, "identity %r" % o["identity"])
    check(str(o["peer"]).startswith("127.0.0.1:"), "peer %r" % o["peer"])
    check(int(o["bytes_in"]) == len(data) and
          int(o["bytes_out"]) == len(data),
          "bytes_in/out %r/%r, expected %d" % (o["bytes_in"],
                                               o["bytes_out"], len(data)))
    rej = [x for x in objs if str(x.get("peer", "")).endswith(":%d" % lport)]
    check(len(rej) == 1, "expected one JSON line for the refused peer: %r"
          % rej)
    check(rej[0].get("stage") == "identity" and
          INTRUDER_URI in json.dumps(rej[0]),
          "the JSON reject line does not explain: %r" % rej[0])


def test_reject_wrong_identity_tls12(env):
    # With TLS 1.2 the verdict comes before the client's Finished.
    import ssl
    rec = env.recorder()
    m, port = start_inbound(env, target=rec.addr)
    lport, outcome, data = try_client(port, "other",
                                      max_version=ssl.TLSVersion.TLSv1_2)
    check(outcome.startswith("handshake"), "a TLS 1.2 handshake with a "
          "refused identity completed: %s" % outcome)
    line = m.wait_log(r"reject.*:%d\b" % lport)[0]
    check("identity not allowed" in line, "reject line: %s" % line)
    check(rec.connections == 0, "the target was reached")


def test_reject_lines_rate_limited(env):
    # A flood of refused peers: lines are held back, and a later line
    # says how many were, so lines + suppressed == peers.
    import re
    import time
    rec = env.recorder()
    m, port = start_inbound(env, target=rec.addr)
    import threading
    n = 60
    ts = [threading.Thread(target=lambda: [try_client(port, None, timeout=3)
                                           for _ in range(n // 6)])
          for _ in range(6)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    took = time.monotonic() - t0
    time.sleep(1.2)
    try_client(port, None, timeout=3)
    n += 1
    m.wait_log(r"suppressed")
    deadline = time.monotonic() + 3
    while True:
        log = m.log()
        rejects = [l for l in log.splitlines()
                   if re.search(r"\breject\b", l) and "suppressed" not in l]
        held = sum(int(x) for x in re.findall(r"(\d+) rejection log lines? "
                                              r"suppressed", log))
        if len(rejects) + held >= n or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    check(len(rejects) < n, "no rate limit: %d lines for %d peers in "
          "%.1f s" % (len(rejects), n, took))
    check(len(rejects) + held == n, "%d lines + %d suppressed != %d peers"
          % (len(rejects), held, n))
    check(rec.connections == 0, "the target was reached")


def test_uri_star_needs_a_segment(env):
    # "ns/prod/sa/web/*" needs one more, non-empty segment.
    rule_case(env, {"uri": [WEB_URI + "/*"]}, [], ["client"], [WEB_URI])


def test_stale_crl_grace_too_short(env):
    import harness
    rec = env.recorder()
    m, port = start_inbound(env, target=rec.addr, tls=server_tls(
        crl=harness.cert("crl-stale.pem"), crl_grace=60.0))
    assert_rejected(m, port, "client", rec, "chain", ["crl has expired"],
                    [WEB_URI], fingerprint_of="client")


def test_ca_directory(env):
    # ca may be a hashed directory (openssl rehash).
    import os
    import shutil
    import harness
    d = env.path("cadir")
    os.mkdir(d)
    shutil.copy(harness.cert("ca-bundle.crt"), os.path.join(d, "root.pem"))
    rc, out, err = env.run(["openssl", "rehash", d])
    check(rc == 0, "openssl rehash failed: %r" % err)
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr, tls=server_tls(ca=d))
    assert_echo(port, "client")
    rec = env.recorder()
    m2, port2 = start_inbound(env, target=rec.addr, tls=server_tls(ca=d))
    assert_rejected(m2, port2, "untrusted", rec, "chain", [], [WEB_URI])


def test_log_level_warn(env):
    # level = warn: rejections still explained, served connections quiet.
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr,
                            log={"level": "warn", "format": "text"})
    assert_echo(port)
    lport, outcome, data = try_client(port, "other")
    m.wait_log(r"reject.*:%d\b" % lport)
    check(not [l for l in m.lines() if " info " in l],
          "info lines at level warn:\n%s" % m.log())
