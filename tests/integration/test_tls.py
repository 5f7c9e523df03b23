"""TLS versions, and real clients: openssl s_client and curl."""
import hashlib
import os
import ssl
import subprocess

import harness
from harness import (assert_echo, assert_rejected, check, parse_line,
                     random_bytes, server_tls, start_inbound, try_client)


def test_tls11_refused_by_server(env):
    rec = env.recorder()
    m, port = start_inbound(env, target=rec.addr)
    # SECLEVEL=0 lets the client offer TLS 1.1: the refusal is the server's.
    lport, outcome, data = try_client(
        port, "client", min_version=ssl.TLSVersion.TLSv1_1,
        max_version=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT@SECLEVEL=0")
    check(outcome.startswith("handshake"), "TLS 1.1 handshake did not fail: "
          "%s" % outcome)
    check("PROTOCOL_VERSION" in outcome.upper().replace(" ", "_") or
          "UNSUPPORTED_PROTOCOL" in outcome.upper(),
          "TLS 1.1 was not refused with a protocol_version alert: %s"
          % outcome)
    line = m.wait_log(r"reject.*:%d\b" % lport)[0]
    check(parse_line(line).get("stage") == "handshake",
          "stage handshake missing: %s" % line)
    check(rec.connections == 0, "a TLS 1.1 client reached the target")


def test_tls11_refused_s_client(env):
    rec = env.recorder()
    m, port = start_inbound(env, target=rec.addr)
    rc, out, err = env.s_client(port, extra=["-tls1_1", "-cipher",
                                             "DEFAULT@SECLEVEL=0"],
                                input_bytes=b"hello\n")
    err = err.decode("utf-8", "replace")
    check(rc not in (0, None), "s_client -tls1_1 succeeded (rc %s)" % rc)
    check(b"hello" not in out, "bytes came back over TLS 1.1")
    check("protocol version" in err or "unsupported protocol" in err,
          "the refusal was not a protocol version alert: %s" % err[-400:])
    m.wait_log(r"reject.*handshake")
    check(rec.connections == 0, "a TLS 1.1 client reached the target")


def test_tls12_works_by_default(env):
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr)
    c, r = assert_echo(port, max_version=ssl.TLSVersion.TLSv1_2)
    check(c.version() == "TLSv1.2", "negotiated %s" % c.version())
    lines = m.wait_log(r"result=ok|\"result\": ?\"ok\"")
    check("TLSv1.2" in lines[0], "the conn line does not say TLSv1.2: %s"
          % lines[0])


def test_tls12_refused_with_min_13(env):
    rec = env.recorder()
    m, port = start_inbound(env, target=rec.addr,
                            tls=server_tls(min_version="1.3"))
    assert_rejected(m, port, "client", rec, "handshake", [],
                    max_version=ssl.TLSVersion.TLSv1_2)
    # ... and TLS 1.3 still goes through.
    echo = env.echo()
    m2, port2 = start_inbound(env, target=echo.addr,
                              tls=server_tls(min_version="1.3"))
    c, r = assert_echo(port2)
    check(c.version() == "TLSv1.3", "negotiated %s" % c.version())


def test_tls13_works(env):
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr)
    c, r = assert_echo(port, min_version=ssl.TLSVersion.TLSv1_3)
    check(c.version() == "TLSv1.3", "negotiated %s" % c.version())
    line = m.wait_log(r"result=ok|\"result\": ?\"ok\"")[0]
    check("TLSv1.3" in line, "conn line does not say TLSv1.3: %s" % line)


def test_s_client_echo(env):
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr)
    data = b"through s_client\n"
    out, err = env.s_client_echo(port, data,
                                 extra=["-servername", "localhost"])
    check(data in out, "s_client got no echo: %r %r" % (out, err[-300:]))


def test_curl_http_backend(env):
    http = env.http()
    m, port = start_inbound(env, target=http.addr)
    rc, out, err = env.curl("https://localhost:%d/" % port)
    text = out.decode("utf-8", "replace")
    check(rc == 0, "curl exit %s: %s" % (rc, err.decode()[-300:]))
    check("HTTP 200" in text, "curl did not get 200: %r" % text)
    check("hello from the backend" in text, "curl body: %r" % text)
    line = m.wait_log(r"result=ok|\"result\": ?\"ok\"")[0]
    check("spiffe://example.org/ns/prod/sa/web" in line,
          "conn line lacks the identity: %s" % line)


def test_curl_refused_without_cert(env):
    rec = env.recorder()
    m, port = start_inbound(env, target=rec.addr)
    rc, out, err = env.curl("https://localhost:%d/" % port, cert_name=None)
    check(rc not in (0, None), "curl without a client certificate "
          "succeeded: %r" % out)
    check(b"HTTP 200" not in out, "curl without a certificate got 200")
    m.wait_log(r"reject.*handshake")
    check(rec.connections == 0, "a peer without a certificate reached the "
          "target")


def test_tls13_key_update(env):
    # A KeyUpdate that asks for ours in return: the relay goes on.
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr)
    out, err = env.s_client_script(port, [b"before\n", b"K\n", b"after\n"])
    check("KEYUPDATE" in err, "s_client sent no KeyUpdate: %s" % err[-300:])
    check(out == b"before\nafter\n", "echo around a KeyUpdate: %r" % out)


def test_tls13_key_update_while_our_writes_wait(env):
    # The client lets 4 MiB pile up behind a 4 KiB window, so mtlsd's
    # writes to it wait; then, 20 times, it reads a little and asks for a
    # KeyUpdate.  mtlsd's answer must queue behind the waiting data
    # (OpenSSL 3.0 left to itself fails such a connection: "bad length"),
    # and every byte arrive, both ways.
    tool = harness.tool_binary("keyupdate_client")
    down = random_bytes(4 * 1024 * 1024)
    backend = env.sink_source(down)
    m, port = start_inbound(env, target=backend.addr)
    p = subprocess.run([tool, str(port), harness.CERTS, "20"],
                       capture_output=True, text=True, timeout=90)
    check(p.returncode == 0, "client failed (%d): %s" % (
        p.returncode, p.stderr[-400:]))
    want = "bytes=%d sha256=%s" % (len(down),
                                   hashlib.sha256(down).hexdigest())
    check(p.stdout.strip() == want, "client got %r, want %r" % (
        p.stdout.strip()[:120], want[:40]))
    got = backend.wait_results(1, timeout=20)[0]
    check(got["len"] == 80 and
          got["sha256"] == hashlib.sha256(b"ping" * 20).hexdigest(),
          "the bytes after the KeyUpdates did not reach the target: %r"
          % got)
    line = m.wait_log(r"result=\w+", timeout=10)[0]
    check(parse_line(line).get("result") == "ok",
          "the session did not end well: %s" % line)


def test_tls13_key_update_flood_is_not_queued_without_end(env):
    # A client that never reads and keeps asking for KeyUpdates makes
    # libssl queue an answer each time.  mtlsd must stop reading it once
    # its queue passes 32 KiB, not let the queue grow (to the 1 MiB cap,
    # which would end the session): the client's writes end up waiting,
    # and the session is still there.
    tool = harness.tool_binary("keyupdate_client")
    sink = env.sink()
    m, port = start_inbound(env, target=sink.addr)
    p = subprocess.run([tool, str(port), harness.CERTS, "flood", "2000000"],
                       capture_output=True, text=True, timeout=120)
    check(p.returncode == 0 and p.stdout.startswith("blocked="),
          "mtlsd did not stop reading the flooding client (%d): %s %s" % (
              p.returncode, p.stdout.strip(), p.stderr[-300:]))
    # The client has gone (its unread data makes its close a reset):
    # that, not mtlsd, must be what ended the session.
    line = m.wait_log(r"result=\w+", timeout=10)[0]
    d = parse_line(line)
    check("reset" in str(d.get("reason")) and
          "buffer" not in str(d.get("reason")),
          "the session ended for another reason: %s" % line)
    check(int(d.get("bytes_in", 0)) < 1024 * 1024,
          "mtlsd went on reading the flood: %s" % line)


def test_tls12_renegotiation_refused(env):
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr)
    out, err = env.s_client_script(port, [b"before\n", b"R\n", b"after\n"],
                                   extra=["-tls1_2"])
    check(out.startswith(b"before\n"), "no echo before renegotiation: %r"
          % out)
    check("RENEGOTIATING" in err, "s_client did not try: %s" % err[-300:])
    check(b"after" not in out, "a renegotiated connection went on: %r %s"
          % (out, err[-300:]))


def test_route_tls_overrides_field_by_field(env):
    # A route's own tls { min_version } changes only that field: the
    # certificate still comes from the global tls { }.
    from harness import inbound_route, WEB_URI, leaf_sha256, \
        peer_fingerprint
    echo = env.echo()
    pa, pb = env.port(), env.port()
    conf = env.config(inbound=[
        inbound_route("a", "127.0.0.1:%d" % pa, echo.addr,
                      {"uri": [WEB_URI]}),
        inbound_route("b", "127.0.0.1:%d" % pb, echo.addr,
                      {"uri": [WEB_URI]}, tls={"min_version": "1.3"})])
    m = env.start_mtlsd(conf)
    assert_echo(pa, max_version=ssl.TLSVersion.TLSv1_2)
    lport, outcome, data = try_client(pb, "client",
                                      max_version=ssl.TLSVersion.TLSv1_2)
    check(outcome.startswith("handshake"), "route b took TLS 1.2: %s"
          % outcome)
    assert_echo(pb)
    check(peer_fingerprint(pb) == leaf_sha256("server"),
          "route b lost the global certificate")
