"""The relay: bytes exact both ways, half-close, targets of every kind."""
import hashlib
import socket

from harness import (PlainConn, Skip, TlsConn, assert_echo, check,
                     have_ipv6, inbound_route, parse_line, random_bytes,
                     start_chain, start_inbound, try_client)

MB10 = 10 * 1024 * 1024


def conn_line(m, result="ok", timeout=5.0):
    line = m.wait_log(r"result=%s\b|\"result\": ?\"%s\"" % (result, result),
                      timeout=timeout)[0]
    return line, parse_line(line)


def test_relay_10mb_both_ways_inbound(env):
    up = random_bytes(MB10)
    down = random_bytes(MB10)
    backend = env.sink_source(down)
    m, port = start_inbound(env, target=backend.addr)
    c = TlsConn.connect("127.0.0.1", port)
    try:
        r = c.exchange(up, half_close=True, timeout=90, keep=False)
    finally:
        c.close()
    check(r.error is None, "transfer failed: %r" % r)
    got = backend.wait_results(1, timeout=20)[0]
    check(got["len"] == len(up) and
          got["sha256"] == hashlib.sha256(up).hexdigest(),
          "client -> target: %d bytes arrived, hash %s"
          % (got["len"], "ok" if got["sha256"] ==
             hashlib.sha256(up).hexdigest() else "differs"))
    check(r.received == len(down) and
          r.sha256.hexdigest() == hashlib.sha256(down).hexdigest(),
          "target -> client: %d bytes arrived, hash %s"
          % (r.received, "ok" if r.sha256.hexdigest() ==
             hashlib.sha256(down).hexdigest() else "differs"))
    check(r.clean, "the end of the stream came without close_notify")
    line, d = conn_line(m)
    check(str(d.get("bytes_in")) == str(MB10) and
          str(d.get("bytes_out")) == str(MB10),
          "conn line counts: %s" % line)


def test_relay_10mb_both_ways_outbound_chain(env):
    up = random_bytes(MB10)
    down = random_bytes(MB10)
    backend = env.sink_source(down)
    mi, mo, addr = start_chain(env, backend.addr)
    c = PlainConn.connect(addr)
    try:
        r = c.exchange(up, half_close=True, timeout=90, keep=False)
    finally:
        c.close()
    check(r.error is None, "transfer failed: %r" % r)
    got = backend.wait_results(1, timeout=20)[0]
    check(got["len"] == len(up) and
          got["sha256"] == hashlib.sha256(up).hexdigest(),
          "client -> target: %d of %d bytes, hash %s" % (
              got["len"], len(up), got["sha256"][:12]))
    check(r.received == len(down) and
          r.sha256.hexdigest() == hashlib.sha256(down).hexdigest(),
          "target -> client: %d of %d bytes" % (r.received, len(down)))
    for m in (mo, mi):
        line, d = conn_line(m)
        check(str(d.get("bytes_in")) == str(MB10) and
              str(d.get("bytes_out")) == str(MB10),
              "conn line counts: %s" % line)


def test_halfclose_tls_close_notify_then_read(env):
    # The client sends, then close_notify, and keeps reading: the
    # backend reads to EOF and only then answers with all it got.
    data = random_bytes(300 * 1024)
    backend = env.collect_reply()
    m, port = start_inbound(env, target=backend.addr)
    c = TlsConn.connect("127.0.0.1", port)
    try:
        r = c.exchange(data, half_close=True, timeout=30)
    finally:
        c.close()
    check(r.error is None, "half-close exchange failed: %r" % r)
    check(r.data == data, "after close_notify the client got %d of %d "
          "bytes back" % (r.received, len(data)))
    got = backend.wait_results(1)[0]
    check(got["len"] == len(data), "backend got %d bytes" % got["len"])


def test_halfclose_plain_shut_wr_outbound(env):
    data = random_bytes(300 * 1024)
    backend = env.collect_reply()
    mi, mo, addr = start_chain(env, backend.addr)
    c = PlainConn.connect(addr)
    try:
        r = c.exchange(data, half_close=True, timeout=30)
    finally:
        c.close()
    check(r.error is None and r.eof, "exchange failed: %r" % r)
    check(r.data == data, "after SHUT_WR the client got %d of %d bytes"
          % (r.received, len(data)))


def test_halfclose_server_first_outbound(env):
    # The target ends first; the client still sends afterwards.
    down = random_bytes(1024 * 1024)
    up = random_bytes(200 * 1024)
    backend = env.send_then_read(down)
    mi, mo, addr = start_chain(env, backend.addr)
    c = PlainConn.connect(addr)
    try:
        r = c.exchange(up, half_close=True, timeout=30, read_first=True)
    finally:
        c.close()
    check(r.data == down, "client got %d of %d bytes" % (r.received,
                                                         len(down)))
    got = backend.wait_results(1)[0]
    check(got["len"] == len(up) and
          got["sha256"] == hashlib.sha256(up).hexdigest(),
          "after its own half-close the target got %d of %d bytes"
          % (got["len"], len(up)))


def test_halfclose_server_first_tls(env):
    # Same through inbound, with the TLS client writing after it got
    # the server's close_notify.
    down = random_bytes(512 * 1024)
    up = random_bytes(100 * 1024)
    backend = env.send_then_read(down)
    m, port = start_inbound(env, target=backend.addr)
    c = TlsConn.connect("127.0.0.1", port)
    try:
        r = c.exchange(up, half_close=True, timeout=30, read_first=True)
    finally:
        c.close()
    check(r.data == down, "client got %d of %d bytes (%r)"
          % (r.received, len(down), r))
    got = backend.wait_results(1)[0]
    check(got["len"] == len(up),
          "after close_notify from the server, the target got %d of %d "
          "bytes the client sent" % (got["len"], len(up)))


def test_target_down(env):
    dead = env.port()		# nothing listens there
    m, port = start_inbound(env, target="127.0.0.1:%d" % dead)
    lport, outcome, data = try_client(port, "client")
    check(data == b"", "bytes came back from a dead target: %r" % data)
    check(outcome != "open", "the client connection stayed open")
    line, d = conn_line(m, "target_failed")
    check(d.get("peer", "").endswith(":%d" % lport),
          "target_failed line for another peer: %s" % line)
    check(str(dead) in line, "the line does not name the target: %s" % line)


def test_ipv6_listen_and_target(env):
    if not have_ipv6():
        raise Skip("no IPv6 loopback")
    echo = env.echo(host="::1")
    port = env.port("::1")
    conf = env.config(inbound=[inbound_route(
        "api6", "[::1]:%d" % port, "[::1]:%d" % echo.port,
        {"uri": ["spiffe://example.org/ns/prod/sa/web"]})])
    m = env.start_mtlsd(conf)
    assert_echo(port, host="::1")
    check(echo.connections == 1, "the IPv6 target saw %d connections"
          % echo.connections)
    line, d = conn_line(m)
    check("::1" in d.get("peer", ""), "peer is not IPv6: %s" % line)


def test_unix_target_inbound(env):
    path = env.path("echo.sock")
    echo = env.echo(unix=path)
    m, port = start_inbound(env, target="unix:" + path)
    data = random_bytes(64 * 1024)
    assert_echo(port, data=data)
    check(echo.connections == 1, "the unix target saw %d connections"
          % echo.connections)


def test_unix_listen_outbound(env):
    echo = env.echo()
    path = env.path("out.sock")
    mi, mo, addr = start_chain(env, echo.addr, out_listen="unix:" + path)
    data = random_bytes(64 * 1024)
    c = PlainConn.connect(addr)
    try:
        r = c.exchange(data, half_close=True, timeout=20)
    finally:
        c.close()
    check(r.data == data, "echo over a unix listener: %r" % r)


def test_outbound_server_name_wrong(env):
    rec = env.recorder()
    mi, mo, addr = start_chain(env, rec.addr, out_allow={"any": True},
                               server_name="wrong.example")
    c = PlainConn.connect(addr)
    lport = c.local_port()
    try:
        r = c.exchange(b"must not pass\n", half_close=False, timeout=10,
                       expect=1)
    finally:
        c.close()
    check(r.data == b"", "bytes came back: %r" % r.data)
    check(r.eof or r.error is not None, "the client was not closed: %r" % r)
    line = mo.wait_log(r"reject.*:%d\b" % lport)[0]
    check("wrong.example" in line, "reject line does not name the server "
          "name: %s" % line)
    check("api.example.org" in line or
          "spiffe://example.org/ns/prod/sa/api" in line,
          "reject line does not name the server's identity: %s" % line)
    check(rec.connections == 0, "the target was reached")


def test_outbound_server_name_right(env):
    echo = env.echo()
    mi, mo, addr = start_chain(env, echo.addr, out_allow={"any": True},
                               server_name="api.example.org")
    c = PlainConn.connect(addr)
    try:
        r = c.exchange(b"hello api\n", timeout=10)
    finally:
        c.close()
    check(r.data == b"hello api\n", "no echo with the right name: %r" % r)


def test_outbound_server_name_ip(env):
    # server_name as an IP address is checked against the IP SANs.
    echo = env.echo()
    mi, mo, addr = start_chain(env, echo.addr, out_allow={"any": True},
                               server_name="127.0.0.1")
    c = PlainConn.connect(addr)
    try:
        r = c.exchange(b"by address\n", timeout=10)
    finally:
        c.close()
    check(r.data == b"by address\n", "no echo with server_name 127.0.0.1: "
          "%r" % r)
    rec = env.recorder()
    mi2, mo2, addr2 = start_chain(env, rec.addr, out_allow={"any": True},
                                  server_name="127.0.0.9")
    c = PlainConn.connect(addr2)
    try:
        r = c.exchange(b"x", half_close=False, timeout=10, expect=1)
    finally:
        c.close()
    check(r.data == b"", "an IP the server does not have was accepted")
    mo2.wait_log(r"reject")
    check(rec.connections == 0, "the target was reached")


def test_outbound_allow_uri_mismatch(env):
    rec = env.recorder()
    mi, mo, addr = start_chain(
        env, rec.addr, out_allow={"uri": ["spiffe://example.org/ns/prod/sa/db"]})
    c = PlainConn.connect(addr)
    lport = c.local_port()
    try:
        r = c.exchange(b"must not pass\n", half_close=False, timeout=10,
                       expect=1)
    finally:
        c.close()
    check(r.data == b"", "bytes came back: %r" % r.data)
    line = mo.wait_log(r"reject.*:%d\b" % lport)[0]
    check(parse_line(line).get("stage") == "identity",
          "stage identity missing: %s" % line)
    check("spiffe://example.org/ns/prod/sa/api" in line,
          "reject line does not name the server's URI: %s" % line)
    check("spiffe://example.org/ns/prod/sa/db" in line,
          "reject line does not name the rule: %s" % line)
    check(rec.connections == 0, "the target was reached")


def test_outbound_untrusted_server(env):
    # The remote presents a certificate from another CA.
    import harness
    rec = env.recorder()
    mi, mo, addr = start_chain(
        env, rec.addr, out_allow={"any": True}, server_name="localhost",
        in_allow={"any": True},
        in_tls=harness.server_tls(cert=harness.cert("untrusted.crt"),
                                  key=harness.cert("untrusted.key"),
                                  ca=harness.cert("ca-bundle.crt")))
    c = PlainConn.connect(addr)
    try:
        r = c.exchange(b"x", half_close=False, timeout=10, expect=1)
    finally:
        c.close()
    check(r.data == b"", "an untrusted server was accepted")
    line = mo.wait_log(r"reject")[0]
    check(parse_line(line).get("stage") == "chain",
          "stage chain missing: %s" % line)
    check(rec.connections == 0, "the target was reached")


CONTRACT_RESULTS = ("ok", "handshake_failed", "identity_rejected",
                    "target_failed", "timeout", "limit")


def test_halfclose_tls_fin_without_close_notify(env):
    # A TLS client that ends its side with a plain TCP FIN (no
    # close_notify) and waits for the answer: mtlsd passes the end on
    # (session.c: "every byte it sent was delivered; pass the end on"),
    # so the answer must still come back.
    backend = env.collect_reply()
    m, port = start_inbound(env, target=backend.addr)
    data = b"request ended by FIN only\n" * 100
    c = TlsConn.connect("127.0.0.1", port)
    try:
        c.obj.write(data)
        c._finish(__import__("time").monotonic() + 5)
        c.sock.shutdown(socket.SHUT_WR)
        c.wr_shut = True
        r = c.exchange(b"", half_close=False, timeout=10)
    finally:
        c.close()
    got = backend.wait_results(1)[0] if backend.results else None
    check(r.data == data, "the answer to a request ended without "
          "close_notify was lost: got %d of %d bytes (%r; backend %r %r)"
          % (r.received, len(data), r.error, got, backend.errors))


def test_unclean_close_conn_line(env):
    # The client gets its echo, then closes TCP without close_notify.
    # The conn line must still give the TLS version and cipher that were
    # negotiated, and a result from the contract's list.
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr)
    c = TlsConn.connect("127.0.0.1", port)
    try:
        r = c.exchange(b"hi\n", half_close=False, timeout=5, expect=3)
        check(r.data == b"hi\n", "no echo: %r" % r)
    finally:
        c.close()		# no close_notify
    line = m.wait_log(r"\bconn\b|\"event\": ?\"conn\"")[0]
    d = parse_line(line)
    check(d.get("tls") == "TLSv1.3", "conn line lost the TLS version: %s"
          % line)
    check(d.get("cipher", "-") != "-", "conn line lost the cipher: %s"
          % line)
    check(d.get("result") in CONTRACT_RESULTS, "result %r is not one of "
          "the contract's %s: %s" % (d.get("result"), CONTRACT_RESULTS,
                                      line))


def test_connect_timeout(env):
    target = env.unreachable()
    m, port = start_inbound(env, target=target,
                            limits={"connect_timeout": 1.0})
    t0 = __import__("time").monotonic()
    lport, outcome, data = try_client(port, "client", timeout=6)
    took = __import__("time").monotonic() - t0
    check(data == b"" and outcome != "open", "client not closed: %s"
          % outcome)
    check(0.7 <= took <= 4.0, "connect_timeout 1.0 took %.1f s" % took)
    line, d = conn_line(m, "timeout")
    check("target" in line, "the timeout line does not say the target was "
          "not reached: %s" % line)


def test_outbound_handshake_timeout(env):
    # The remote accepts TCP and never answers the ClientHello.
    silent = env.silent()
    port = env.port()
    conf = env.config(outbound=[{
        "name": "db", "listen": "127.0.0.1:%d" % port,
        "target": silent.addr, "server_name": "api.example.org",
        "allow": {"any": True}}], tls=__import__("harness").client_tls(),
        limits={"handshake_timeout": 1.0})
    m = env.start_mtlsd(conf)
    t0 = __import__("time").monotonic()
    c = PlainConn.connect(("127.0.0.1", port))
    try:
        r = c.exchange(b"hello?\n", half_close=False, timeout=6)
    finally:
        c.close()
    took = __import__("time").monotonic() - t0
    check(r.data == b"", "bytes came back: %r" % r.data)
    check(0.7 <= took <= 4.0, "outbound handshake_timeout 1.0 took %.1f s"
          % took)
    line = m.wait_log(r"result=timeout|\"result\": ?\"timeout\"")[0]
    check("handshake" in line.lower(), "the line does not say handshake: "
          "%s" % line)


def hosts_name_for_loopback():
    """A name other than localhost that /etc/hosts maps to 127.0.0.1."""
    try:
        with open("/etc/hosts") as f:
            for l in f:
                w = l.split("#")[0].split()
                if len(w) >= 2 and w[0] == "127.0.0.1":
                    for n in w[1:]:
                        if n != "localhost" and "." not in n:
                            return n
    except OSError:
        pass
    return None


def test_outbound_target_by_name(env):
    name = hosts_name_for_loopback()
    if name is None:
        raise Skip("no loopback name in /etc/hosts")
    echo = env.echo()
    mi, in_port = start_inbound(env, target=echo.addr)
    port = env.port()
    conf = env.config(outbound=[{
        "name": "db", "listen": "127.0.0.1:%d" % port,
        "target": "%s:%d" % (name, in_port),
        "server_name": "api.example.org", "allow": {"any": True}}],
        tls=__import__("harness").client_tls())
    mo = env.start_mtlsd(conf)
    c = PlainConn.connect(("127.0.0.1", port))
    try:
        r = c.exchange(b"by name\n", timeout=10)
    finally:
        c.close()
    check(r.data == b"by name\n", "no echo through target %s: %r"
          % (name, r))


def test_inbound_listen_unix(env):
    echo = env.echo()
    path = env.path("in.sock")
    conf = env.config(inbound=[inbound_route(
        "api", "unix:" + path, echo.addr,
        {"uri": ["spiffe://example.org/ns/prod/sa/web"]})])
    m = env.start_mtlsd(conf)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    import harness
    c = TlsConn(s, harness.client_context(), "localhost")
    try:
        c.handshake()
        r = c.exchange(b"over unix\n", timeout=10)
    finally:
        c.close()
    check(r.data == b"over unix\n", "no echo over a unix listener: %r" % r)


def test_tls_session_resumption(env):
    # A resumed session skips the chain check; its identity is still
    # judged, and the conn line still names it.
    import harness
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr)
    ctx = harness.client_context()
    sess = None
    for i in range(2):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        c = TlsConn(s, ctx, "localhost")
        if sess is not None:
            c.obj = ctx.wrap_bio(c.inc, c.out, server_hostname="localhost",
                                 session=sess)
        try:
            c.handshake()
            r = c.exchange(b"round %d\n" % i, timeout=10)
            check(r.data == b"round %d\n" % i, "no echo in round %d: %r"
                  % (i, r))
            if i == 1:
                check(c.obj.session_reused, "the session was not resumed")
            sess = c.obj.session
        finally:
            c.close()
    lines = m.wait_log(r"result=ok", count=2)
    check(all(harness.WEB_URI in l for l in lines),
          "a resumed session is logged without its identity:\n%s"
          % "\n".join(lines))


def test_concurrent_clients_all_workers(env):
    # Default workers (one per CPU): 16 clients at once, each its own
    # bytes back, and one conn line each.
    import threading
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr, workers=None)
    n = 16
    bad = []

    def one(i):
        data = random_bytes(128 * 1024 + i)
        try:
            c = TlsConn.connect("127.0.0.1", port, timeout=10)
            try:
                r = c.exchange(data, timeout=30)
            finally:
                c.close()
            if r.data != data:
                bad.append("client %d: %d of %d bytes (%r)"
                           % (i, r.received, len(data), r.error))
        except Exception as e:
            bad.append("client %d: %r" % (i, e))
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(40)
    check(not bad, "; ".join(bad))
    lines = m.wait_log(r"result=ok", count=n)
    check(len(lines) == n, "%d conn lines for %d clients" % (len(lines), n))


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for l in f:
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    return 0


def test_relay_backpressure_bounded_memory(env):
    # The target pushes 64 MB at a client that does not read: mtlsd must
    # stop reading from the target, not buffer it all.
    import time
    big = b"\0" * (64 * 1024 * 1024)
    backend = env.send_then_read(big)
    m, port = start_inbound(env, target=backend.addr)
    c = TlsConn.connect("127.0.0.1", port)
    try:
        first = c.exchange(b"", half_close=False, timeout=5, expect=1)
        time.sleep(0.5)
        before = rss_kb(m.pid)
        time.sleep(1.0)
        after = rss_kb(m.pid)
        check(after - before < 16 * 1024,
              "mtlsd grew by %d kB while its client did not read"
              % (after - before))
        check(m.alive(), "mtlsd died")
        # ... and once the client reads, everything arrives.
        r = c.exchange(b"", half_close=True, timeout=60, keep=False)
        total = first.received + r.received
        check(total == len(big), "client got %d of %d bytes (%r)"
              % (total, len(big), r.error))
    finally:
        c.close()
