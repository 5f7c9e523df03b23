"""Timeouts, max_connections, and the signals that stop mtlsd."""
import signal
import socket
import time

from harness import (TlsConn, assert_echo, check, parse_line, start_inbound,
                     try_client)


def closed_within(sock, seconds):
    """Seconds until the peer closes sock (EOF or reset), or None."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - t0 < seconds:
        try:
            b = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic() - t0
        if not b:
            return time.monotonic() - t0
    return None


def test_idle_timeout(env):
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr,
                            limits={"idle_timeout": 1.0})
    c = TlsConn.connect("127.0.0.1", port)
    try:
        r = c.exchange(b"one line\n", half_close=False, timeout=5,
                       expect=len(b"one line\n"))
        check(r.data == b"one line\n", "no echo: %r" % r)
        t0 = time.monotonic()
        r = c.exchange(b"", half_close=False, timeout=6)
        took = time.monotonic() - t0
    finally:
        c.close()
    check(r.eof or r.error is not None, "the idle connection was not "
          "closed within 6 s: %r" % r)
    check(0.7 <= took <= 4.0, "idle connection closed after %.1f s "
          "(idle_timeout 1.0)" % took)
    line = m.wait_log(r"result=timeout|\"result\": ?\"timeout\"")[0]
    check("idle" in line, "the timeout line does not say idle: %s" % line)


def test_idle_timeout_spares_busy_connection(env):
    # A connection that moves a byte every 0.3 s is not idle.
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr,
                            limits={"idle_timeout": 1.0})
    c = TlsConn.connect("127.0.0.1", port)
    try:
        for i in range(8):
            r = c.exchange(b"%d" % i, half_close=False, timeout=3, expect=1)
            check(r.data == b"%d" % i, "busy connection lost at %d: %r"
                  % (i, r))
            time.sleep(0.3)
    finally:
        c.close()


def test_handshake_timeout(env):
    rec = env.recorder()
    m, port = start_inbound(env, target=rec.addr,
                            limits={"handshake_timeout": 1.0})
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    lport = s.getsockname()[1]
    try:
        took = closed_within(s, 5.0)
    finally:
        s.close()
    check(took is not None, "a silent client was not closed within 5 s")
    check(0.7 <= took <= 3.0, "silent client closed after %.1f s "
          "(handshake_timeout 1.0)" % took)
    line = m.wait_log(r":%d\b" % lport)[0]
    d = parse_line(line)
    check(d.get("result") == "timeout" or "result=timeout" in line,
          "result is not timeout: %s" % line)
    check(rec.connections == 0, "a client without handshake reached the "
          "target")


def test_max_connections(env):
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr,
                            limits={"max_connections": 2})
    held = []
    try:
        for i in range(2):
            c = TlsConn.connect("127.0.0.1", port)
            held.append(c)
            r = c.exchange(b"hold %d\n" % i, half_close=False, timeout=5,
                           expect=7)
            check(r.data == b"hold %d\n" % i, "client %d not served: %r"
                  % (i, r))
        # The third is accepted and closed at once.
        t0 = time.monotonic()
        lport, outcome, data = try_client(port, "client", timeout=5)
        took = time.monotonic() - t0
        check(data == b"", "a third client was served: %r" % data)
        check(outcome != "open", "a third client was left waiting")
        check(took < 2.0, "the third client waited %.1f s" % took)
        line = m.wait_log(r"limit")[0]
        check(":%d" % lport in line, "the limit line names another peer: "
              "%s" % line)
        check("api" in line, "the limit line does not name the route: %s"
              % line)
        # Release one: a new client is served again.
        held.pop(0).close()
        deadline = time.monotonic() + 5
        while True:
            lport, outcome, data = try_client(port, "client",
                                              data=b"again\n", timeout=3)
            if data == b"again\n":
                break
            check(time.monotonic() < deadline, "no client served after "
                  "one was released (last: %s)" % outcome)
            time.sleep(0.2)
    finally:
        for c in held:
            c.close()


def test_sigterm_idle_exits_zero(env):
    m, port = start_inbound(env, target=env.echo().addr)
    t0 = time.monotonic()
    m.signal(signal.SIGTERM)
    rc = m.wait_exit(10)
    took = time.monotonic() - t0
    check(rc == 0, "exit status %s after SIGTERM" % rc)
    check(took < 3.0, "SIGTERM with no connection took %.1f s" % took)


def test_sigint_idle_exits_zero(env):
    m, port = start_inbound(env, target=env.echo().addr)
    m.signal(signal.SIGINT)
    rc = m.wait_exit(10)
    check(rc == 0, "exit status %s after SIGINT" % rc)


def test_sigterm_drains_open_connection(env):
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr,
                            limits={"drain_timeout": 20.0})
    c = TlsConn.connect("127.0.0.1", port)
    try:
        r = c.exchange(b"before\n", half_close=False, timeout=5, expect=7)
        check(r.data == b"before\n", "no echo before SIGTERM: %r" % r)
        m.signal(signal.SIGTERM)
        time.sleep(0.5)
        check(m.alive(), "mtlsd exited with a connection open (rc %s)"
              % m.wait_exit(0.1))
        # New clients are not served while draining.
        lport, outcome, data = try_client(port, "client", timeout=1.5)
        check(data == b"", "a new client was served while draining")
        data = b"after SIGTERM\n" * 1000
        r = c.exchange(data, half_close=True, timeout=10)
        check(r.data == data, "the open connection did not finish: got %d "
              "of %d bytes" % (r.received, len(data)))
        t0 = time.monotonic()
    finally:
        c.close()
    rc = m.wait_exit(8)
    check(rc is not None, "mtlsd still runs after its last connection "
          "closed")
    check(rc == 0, "exit status %s after the drain" % rc)
    check(time.monotonic() - t0 < 5, "exit came late")
    line = m.wait_log(r"result=ok|\"result\": ?\"ok\"")[0]
    check(str(len(data) + 7) in line, "bytes of the drained connection: %s"
          % line)


def test_drain_timeout_closes_the_rest(env):
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr,
                            limits={"drain_timeout": 1.0})
    c = TlsConn.connect("127.0.0.1", port)
    try:
        r = c.exchange(b"x", half_close=False, timeout=5, expect=1)
        check(r.data == b"x", "no echo: %r" % r)
        t0 = time.monotonic()
        m.signal(signal.SIGTERM)
        rc = m.wait_exit(8)
        took = time.monotonic() - t0
    finally:
        c.close()
    check(rc == 0, "exit status %s after drain_timeout" % rc)
    check(0.7 <= took <= 4.0, "drain_timeout 1.0 took %.1f s" % took)


def test_drain_stops_accepting(env):
    # While draining, a new client must not be left waiting in the
    # accept queue of a process that will never serve it: it is refused
    # (or closed) at once, as HAProxy and stunnel do when they stop.
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr,
                            limits={"drain_timeout": 20.0})
    c = TlsConn.connect("127.0.0.1", port)
    try:
        r = c.exchange(b"x", half_close=False, timeout=5, expect=1)
        check(r.data == b"x", "no echo: %r" % r)
        m.signal(signal.SIGTERM)
        m.wait_log(r"draining")
        time.sleep(0.3)
        t0 = time.monotonic()
        fate = None
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
        except ConnectionRefusedError:
            fate = "refused"
        else:
            try:
                took = closed_within(s, 2.0)
                fate = "closed" if took is not None else "hanging"
            finally:
                s.close()
        check(fate in ("refused", "closed"),
              "a new client during the drain was left %s for %.1f s "
              "(the listener is still open; drain_timeout is 20 s)"
              % (fate, time.monotonic() - t0))
        check(m.alive(), "mtlsd did not wait for the open connection")
    finally:
        c.close()


def test_port_in_use_exits_1(env):
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr, workers=2)
    import harness
    conf = env.config(inbound=[harness.inbound_route(
        "api", "127.0.0.1:%d" % port, echo.addr, {"any": True})],
        workers=2)
    m2 = env.start_mtlsd(conf, expect_ready=False)
    rc = m2.wait_exit(10)
    check(rc == 1, "a second instance on a busy port: exit %s, not 1" % rc)
    check(str(port) in m2.log(), "the error does not name the address: %s"
          % m2.log())
    # The first one still serves every client (no port sharing).
    for i in range(4):
        assert_echo(port)
    check(echo.connections == 4, "echo saw %d connections"
          % echo.connections)
