"""Command line: versions, usage, -t, configuration errors, --explain."""
import re

from harness import (API_URI, WEB_URI, cert, check, conf_text, inbound_route,
                     outbound_route, port_is_free, server_tls, client_tls,
                     leaf_sha256)


def good_conf(env, port=None, allow=None):
    port = port or env.port()
    return env.config(inbound=[inbound_route(
        "api", "127.0.0.1:%d" % port, "127.0.0.1:%d" % env.port(),
        allow or {"uri": [WEB_URI]})]), port


def one_config_error(env, text, *needles):
    """mtlsd -c on a bad file: exit 2, one FILE:LINE: line, nothing bound."""
    path = env.write_conf(text)
    rc, out, err = env.run_mtlsd(["-c", path], timeout=15)
    check(rc == 2, "exit %s, not 2, for a bad configuration: %s" % (rc, err))
    lines = [l for l in err.splitlines() if l.strip()]
    check(len(lines) == 1, "a configuration error must be one line on "
          "stderr, got %d:\n%s" % (len(lines), err))
    check(re.match(re.escape(path) + r":\d+: \S", lines[0]),
          "not a FILE:LINE: message: %r" % lines[0])
    for n in needles:
        check(n in lines[0], "message lacks %r: %r" % (n, lines[0]))
    check("listening" not in out + err and "serving" not in out + err,
          "mtlsd started something on a bad configuration")
    return lines[0]


def route_text(port, target_port, allow_text, extra=""):
    return ("tls = %s;\ninbound = ( {\n  name = \"api\";\n"
            "  listen = \"127.0.0.1:%d\";\n  target = \"127.0.0.1:%d\";\n"
            "%s%s} );\n" % (lc_tls(), port, target_port, allow_text, extra))


def lc_tls():
    from harness import lc
    return lc(server_tls())


def test_version(env):
    rc, out, err = env.run_mtlsd(["-V"])
    check(rc == 0, "-V exit %s" % rc)
    check(re.search(r"mtlsd \d+\.\d+", out), "no mtlsd version: %r" % out)
    check("OpenSSL 3" in out, "no OpenSSL version: %r" % out)
    check(re.search(r"libevent \d", out), "no libevent version: %r" % out)
    rc2, out2, _ = env.run_mtlsd(["--version"])
    check(rc2 == 0 and out2 == out, "--version differs from -V")


def test_help_and_bad_option(env):
    rc, out, err = env.run_mtlsd(["-h"])
    check(rc == 0, "-h exit %s" % rc)
    check("usage" in (out + err).lower(), "-h prints no usage")
    rc, out, err = env.run_mtlsd(["--help"])
    check(rc == 0, "--help exit %s" % rc)
    rc, out, err = env.run_mtlsd(["--no-such-option"])
    check(rc == 2, "a bad option must exit 2, got %s" % rc)
    rc, out, err = env.run_mtlsd(["-Z"])
    check(rc == 2, "a bad option must exit 2, got %s" % rc)
    rc, out, err = env.run_mtlsd(["-c"])
    check(rc == 2, "-c without FILE must exit 2, got %s" % rc)


def test_check_prints_routes(env):
    pin, pout = env.port(), env.port()
    path = env.config(
        inbound=[inbound_route("api-in", "127.0.0.1:%d" % pin,
                               "127.0.0.1:%d" % env.port(),
                               {"uri": [WEB_URI]})],
        outbound=[outbound_route("db-out", "127.0.0.1:%d" % pout,
                                 "127.0.0.1:%d" % pin,
                                 {"uri": [API_URI]},
                                 server_name="api.example.org",
                                 tls=client_tls())])
    rc, out, err = env.run_mtlsd(["-t", "-c", path])
    check(rc == 0, "-t on a good configuration: exit %s: %s" % (rc, err))
    check("api-in" in out and "db-out" in out,
          "-t does not print every route name: %r" % out)
    check(port_is_free(pin) and port_is_free(pout), "-t left a port bound")
    rc, out2, err = env.run_mtlsd(["--check", "--config", path])
    check(rc == 0 and "api-in" in out2, "long forms --check --config fail")


def test_config_unknown_key(env):
    port = env.port()
    text = route_text(port, env.port(),
                      "  allow = { uri = [ \"%s\" ]; };\n" % WEB_URI,
                      "  alow_any = true;\n")
    one_config_error(env, text, "alow_any")
    check(port_is_free(port), "port bound after a configuration error")


def test_config_unknown_top_key(env):
    path, port = good_conf(env)
    with open(path) as f:
        text = f.read()
    one_config_error(env, text + "wokers = 2;\n", "wokers")


def test_config_inbound_target_not_local(env):
    port = env.port()
    text = ("tls = %s;\ninbound = ( {\n  name = \"api\";\n"
            "  listen = \"127.0.0.1:%d\";\n  target = \"10.0.0.1:8080\";\n"
            "  allow = { uri = [ \"%s\" ]; };\n} );\n"
            % (lc_tls(), port, WEB_URI))
    line = one_config_error(env, text, "api", "10.0.0.1")
    check(port_is_free(port), "port bound after a configuration error")
    lines = text.splitlines()
    want = {lines.index(l) + 1 for l in lines
            if "target =" in l or "inbound = (" in l}
    got = int(line.split(":")[1])
    check(got in want, "line %d does not point at the route or its target "
          "(%s): %r" % (got, sorted(want), line))


def test_config_outbound_listen_not_local(env):
    text = conf_text({"tls": client_tls(), "outbound": [outbound_route(
        "db", "0.0.0.0:%d" % env.port(), "127.0.0.1:%d" % env.port(),
        {"uri": [API_URI]}, server_name="api.example.org")]})
    one_config_error(env, text, "db", "0.0.0.0")


def test_config_missing_allow(env):
    port = env.port()
    text = route_text(port, env.port(), "")
    line = one_config_error(env, text, "allow")
    check("api" in line, "message does not name the route: %r" % line)
    check(port_is_free(port), "port bound after a configuration error")


def test_config_empty_allow(env):
    port = env.port()
    line = one_config_error(env, route_text(port, env.port(),
                                            "  allow = { uri = [ ]; };\n"),
                            "allow")
    check("empty" in line.lower() or "nothing" in line.lower(),
          "message does not say the allow is empty: %r" % line)
    # any = false is no rule either.
    one_config_error(env, route_text(port, env.port(),
                                     "  allow = { any = false; };\n"),
                     "allow")
    check(port_is_free(port), "port bound after a configuration error")


def test_config_bad_min_version(env):
    port = env.port()
    text = route_text(port, env.port(),
                      "  allow = { uri = [ \"%s\" ]; };\n" % WEB_URI,
                      "  tls = { min_version = \"1.1\"; };\n")
    one_config_error(env, text, "min_version")
    check(port_is_free(port), "port bound after a configuration error")


def test_config_missing_cert_file(env):
    port = env.port()
    missing = env.path("no-such-cert.crt")
    path = env.config(
        inbound=[inbound_route("api", "127.0.0.1:%d" % port,
                               "127.0.0.1:%d" % env.port(),
                               {"uri": [WEB_URI]})],
        tls=server_tls(cert=missing))
    rc, out, err = env.run_mtlsd(["-c", path])
    check(rc == 2, "missing certificate: exit %s, not 2" % rc)
    lines = [l for l in err.splitlines() if l.strip()]
    check(len(lines) == 1, "expected one error line, got:\n%s" % err)
    check(missing in lines[0], "the error does not name %s: %r"
          % (missing, lines[0]))
    check(lines[0].startswith(path + ":"), "not FILE:...: %r" % lines[0])
    check(port_is_free(port), "port bound after a configuration error")


def test_config_no_such_file(env):
    rc, out, err = env.run_mtlsd(["-c", env.path("absent.conf")])
    check(rc == 2, "a missing configuration file: exit %s, not 2" % rc)
    check("absent.conf" in err, "the error does not name the file: %r" % err)


def test_explain_accept(env):
    path, _ = good_conf(env)
    rc, out, err = env.run_mtlsd(["-c", path, "--explain",
                                  cert("client.crt"), "--route", "api"])
    check(rc == 0, "explain of an allowed peer: exit %s: %s%s"
          % (rc, out, err))
    check("accept" in out.lower(), "explain does not say accept: %r" % out)
    check(WEB_URI in out, "explain does not show the identity: %r" % out)


def test_explain_wrong_identity(env):
    path, _ = good_conf(env)
    rc, out, err = env.run_mtlsd(["-c", path, "--explain",
                                  cert("other.crt"), "--route", "api"])
    text = out + err
    check(rc == 1, "explain of a wrong identity: exit %s, not 1" % rc)
    check("reject" in text.lower(), "explain does not say reject: %r" % text)
    check(WEB_URI in text, "explain does not name the rule: %r" % text)
    check("spiffe://example.org/ns/dev/sa/intruder" in text,
          "explain does not name the peer identity: %r" % text)
    check(leaf_sha256("other") in text.replace(":", "").lower(),
          "explain does not show the sha256 fingerprint: %r" % text)


def test_explain_expired(env):
    path, _ = good_conf(env)
    rc, out, err = env.run_mtlsd(["-c", path, "--explain",
                                  cert("expired.crt"), "--route", "api"])
    text = out + err
    check(rc == 1, "explain of an expired chain: exit %s, not 1" % rc)
    check("expired" in text.lower(), "explain does not name the expiry: %r"
          % text)


def test_explain_unknown_route(env):
    path, _ = good_conf(env)
    rc, out, err = env.run_mtlsd(["-c", path, "--explain",
                                  cert("client.crt"), "--route", "nope"])
    check(rc == 2, "explain with an unknown route: exit %s, not 2" % rc)
    check("nope" in out + err, "the error does not name the route")


def test_config_duplicate_route_name(env):
    t = env.port()
    text = conf_text({"tls": server_tls(), "inbound": [
        inbound_route("api", "127.0.0.1:%d" % env.port(), "127.0.0.1:%d" % t,
                      {"uri": [WEB_URI]}),
        inbound_route("api", "127.0.0.1:%d" % env.port(), "127.0.0.1:%d" % t,
                      {"uri": [WEB_URI]})]})
    one_config_error(env, text, "api")


def test_config_duplicate_listen(env):
    p = env.port()
    text = conf_text({"tls": server_tls(), "inbound": [
        inbound_route("a", "127.0.0.1:%d" % p, "127.0.0.1:%d" % env.port(),
                      {"uri": [WEB_URI]}),
        inbound_route("b", "127.0.0.1:%d" % p, "127.0.0.1:%d" % env.port(),
                      {"uri": [WEB_URI]})]})
    one_config_error(env, text, str(p))


def explain(env, path, pem, route="api"):
    rc, out, err = env.run_mtlsd(["-c", path, "--explain", cert(pem),
                                  "--route", route])
    return rc, (out + err)


def test_explain_chain_failures(env):
    # --explain gives the verdict the live route would.
    path, _ = good_conf(env)
    for pem, words in (("future.crt", "not yet valid"),
                       ("untrusted.crt", "issuer"),
                       ("selfsigned.crt", "self-signed"),
                       ("serveronly.crt", "purpose")):
        rc, text = explain(env, path, pem)
        check(rc == 1, "explain %s: exit %s, not 1" % (pem, rc))
        check(words in text.lower(), "explain %s does not say %r: %r"
              % (pem, words, text))
    crl = env.config(inbound=[inbound_route(
        "api", "127.0.0.1:%d" % env.port(), "127.0.0.1:%d" % env.port(),
        {"uri": [WEB_URI]})], tls=server_tls(crl=cert("crl.pem")))
    rc, text = explain(env, crl, "revoked.crt")
    check(rc == 1 and "revoked" in text.lower(),
          "explain of a revoked certificate: exit %s: %r" % (rc, text))
    rc, text = explain(env, crl, "client.crt")
    check(rc == 0, "explain of a good certificate with a CRL: exit %s: %r"
          % (rc, text))


def test_explain_outbound_server_name(env):
    def conf(server_name):
        return env.config(outbound=[outbound_route(
            "db", "127.0.0.1:%d" % env.port(), "127.0.0.1:%d" % env.port(),
            {"any": True}, server_name=server_name)], tls=client_tls())
    rc, text = explain(env, conf("api.example.org"), "server.crt", "db")
    check(rc == 0, "explain of the right server: exit %s: %r" % (rc, text))
    rc, text = explain(env, conf("wrong.example"), "server.crt", "db")
    check(rc == 1, "explain of a server for another name: exit %s: %r"
          % (rc, text))
    check("wrong.example" in text, "explain does not name server_name: %r"
          % text)
    # A client-only certificate is no server.
    rc, text = explain(env, conf("localhost"), "client.crt", "db")
    check(rc == 1, "a client certificate accepted as a server: %r" % text)


def test_config_malformed_patterns(env):
    # A malformed pattern is an error, never a rule that matches nothing.
    for kind, pat in (("uri", "spiffe://example.org/ns/pr*/sa/web"),
                      ("uri", "spiffe://example.org/**/web"),
                      ("dns", "*.*.example.org"),
                      ("dns", "a*.example.org")):
        port = env.port()
        text = route_text(port, env.port(),
                          "  allow = { %s = [ \"%s\" ]; };\n" % (kind, pat))
        one_config_error(env, text, pat)
        check(port_is_free(port), "port bound after a configuration error")


def test_config_syntax_error(env):
    path, _ = good_conf(env)
    with open(path) as f:
        text = f.read()
    line = one_config_error(env, text + "limits = { max_connections = ; };\n")
    n = len(text.splitlines()) + 1
    check((":%d:" % n) in line, "the syntax error is not at line %d: %r"
          % (n, line))


def test_config_no_routes(env):
    text = conf_text({"tls": server_tls()})
    rc, out, err = env.run_mtlsd(["-c", env.write_conf(text)])
    check(rc == 2, "a configuration without routes: exit %s, not 2" % rc)
    check(len([l for l in err.splitlines() if l.strip()]) == 1,
          "expected one error line: %r" % err)


def test_config_key_does_not_match_cert(env):
    port = env.port()
    path = env.config(
        inbound=[inbound_route("api", "127.0.0.1:%d" % port,
                               "127.0.0.1:%d" % env.port(),
                               {"uri": [WEB_URI]})],
        tls=server_tls(key=cert("client.key")))
    rc, out, err = env.run_mtlsd(["-c", path])
    check(rc == 2, "a key that does not match: exit %s, not 2" % rc)
    check(cert("client.key") in err and "match" in err,
          "the error does not name the key and say it does not match: %r"
          % err)
    check(port_is_free(port), "port bound after a configuration error")


def test_config_own_cert_expired(env):
    port = env.port()
    path = env.config(
        inbound=[inbound_route("api", "127.0.0.1:%d" % port,
                               "127.0.0.1:%d" % env.port(),
                               {"uri": [WEB_URI]})],
        tls=server_tls(cert=cert("expired.crt"), key=cert("expired.key")))
    rc, out, err = env.run_mtlsd(["-t", "-c", path])
    check(rc == 2, "an expired own certificate: exit %s, not 2" % rc)
    check(cert("expired.crt") in err and "expired" in err,
          "the error does not name the certificate and its expiry: %r" % err)


def test_config_missing_crl_and_ca(env):
    for field in ("crl", "ca"):
        port = env.port()
        missing = env.path("absent-%s.pem" % field)
        path = env.config(
            inbound=[inbound_route("api", "127.0.0.1:%d" % port,
                                   "127.0.0.1:%d" % env.port(),
                                   {"uri": [WEB_URI]})],
            tls=server_tls(**{field: missing}))
        rc, out, err = env.run_mtlsd(["-c", path])
        check(rc == 2, "a missing %s: exit %s, not 2" % (field, rc))
        check(missing in err, "the error does not name %s: %r"
              % (missing, err))
        check(port_is_free(port), "port bound after a configuration error")
