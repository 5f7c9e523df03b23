"""
Faults: peers and targets that misbehave, and resources that run out.

Each test runs the real binary against real sockets on loopback, and
every wait is bounded.  What is already proven elsewhere is not repeated
here: a target that refuses the connection (test_relay.test_target_down),
the basic max_connections refusal and release
(test_lifecycle.test_max_connections), the plain handshake timeout.

MTLSD_TIME_FACTOR (default 1) stretches the time bounds of these tests,
for slow runs of the binary (valgrind: tests/memcheck.sh sets it).
"""
import os
import re
import selectors
import signal
import socket
import ssl
import struct
import threading
import time

import harness
from harness import (Server, Skip, TlsConn, WEB_URI, assert_echo, check,
                     http_get, inbound_route, metric, parse_line,
                     parse_metrics, start_inbound, try_client)

F = max(1.0, float(os.environ.get("MTLSD_TIME_FACTOR", "1") or 1))
KiB = 1024
MiB = 1024 * 1024
GiB = 1024 * MiB


def _relay_buf():
    """PROXY_BUFSZ of include/mtlsd/proxy.h: one buffer per direction."""
    try:
        with open(os.path.join(harness.REPO, "include", "mtlsd",
                               "proxy.h")) as f:
            m = re.search(r"#define\s+PROXY_BUFSZ\s+\(?(?:\(size_t\))?"
                          r"\s*(\d+)\s*\*\s*1024", f.read())
        if m:
            return int(m.group(1)) * KiB
    except OSError:
        pass
    return 16 * KiB


RELAY_BUF = _relay_buf()

# The byte stream of the big transfers: a 1 MiB random block repeated,
# so that any prefix can be checked byte for byte without keeping it.
PATTERN = os.urandom(MiB)
PATTERN2 = PATTERN + PATTERN


def pattern_at(off, n):
    """n (<= 1 MiB) bytes of the stream at offset off."""
    o = off % len(PATTERN)
    return PATTERN2[o:o + n]


def first_mismatch(off, data):
    """Offset of the first byte of data (at stream offset off) that is
    not the pattern's, or None."""
    i = 0
    while i < len(data):
        n = min(len(data) - i, MiB)
        want = pattern_at(off + i, n)
        got = data[i:i + n]
        if got != want:
            for j in range(n):
                if got[j] != want[j]:
                    return off + i + j
        i += n
    return None


# ---------------------------------------------------------------- /proc

def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for l in f:
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def kernel_buffer_bound():
    """
    The most the kernel may hold in flight on the path client -> mtlsd ->
    target (or back): the largest send buffer of the writer plus the
    largest receive buffer of the reader, for each of the two sockets.
    """
    def third(path, default):
        try:
            with open(path) as f:
                return int(f.read().split()[2])
        except (OSError, ValueError, IndexError):
            return default
    wmem = third("/proc/sys/net/ipv4/tcp_wmem", 4 * MiB)
    rmem = third("/proc/sys/net/ipv4/tcp_rmem", 6 * MiB)
    return 2 * (wmem + rmem)


class RssWatch:
    """Samples mtlsd's VmRSS; .peak is the largest sample."""

    def __init__(self, pid):
        self.pid = pid
        self.start = rss_kb(pid)
        self.peak = self.start

    def sample(self):
        v = rss_kb(self.pid)
        self.peak = max(self.peak, v)
        return v

    def growth_kb(self):
        return self.peak - self.start


# ----------------------------------------------------------- start-up

def add_server(env, handler):
    s = Server(env, handler)
    env.servers.append(s)
    return s


def start_with_admin(env, target, limits=None, workers=1, allow=None):
    port, admin = env.port(), env.port()
    conf = env.config(inbound=[inbound_route(
        "api", "127.0.0.1:%d" % port, target, allow or {"uri": [WEB_URI]})],
        limits=limits, workers=workers,
        extra={"admin": {"listen": "127.0.0.1:%d" % admin}})
    return env.start_mtlsd(conf, timeout=10 * F), port, admin


def metrics(admin):
    status, body = http_get(admin, "/metrics", timeout=5 * F)
    check(status == 200, "/metrics: HTTP %s" % status)
    return parse_metrics(body)


def wait_metric(admin, want, name, timeout=5.0, **labels):
    """Waits until the sample equals want; returns the last value."""
    deadline = time.monotonic() + timeout * F
    while True:
        v = metric(metrics(admin), name, **labels)
        if v == want or time.monotonic() > deadline:
            return v
        time.sleep(0.1)


def launch(env, conf, prefix=(), environ=None, timeout=10.0):
    """
    mtlsd -c CONF behind `prefix` (a command that execs it, so that the
    PID is mtlsd's), registered with env so that env.close() stops it.
    """
    log_path = env.path("mtlsd%d.log" % (len(env.procs) + 1))
    m = harness.Mtlsd(env, list(prefix) + [harness.MTLSD, "-c", conf],
                      log_path, environ)
    env.procs.append(m)
    deadline = time.monotonic() + timeout * F
    while "serving with" not in m.log():
        if not m.alive():
            m.stop()
            raise AssertionError("mtlsd exited with %s before it served:\n%s"
                                 % (m.rc, m.log()))
        if time.monotonic() > deadline:
            raise harness.Timeout("mtlsd not serving within %.1f s"
                                  % (timeout * F))
        time.sleep(0.03)
    return m


def closed_state(sock):
    """'eof', 'reset' or None (still open) for a non-blocking socket."""
    try:
        b = sock.recv(65536)
    except BlockingIOError:
        return None
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except OSError as e:
        return "error %s" % e
    if b == b"":
        return "eof"
    return None			# bytes (an alert): keep reading


def wait_closed(sock, timeout):
    """Reads sock (any bytes) until the peer closes it: (state, bytes,
    seconds) with state None when it stayed open for timeout seconds."""
    sock.setblocking(False)
    got = bytearray()
    t0 = time.monotonic()
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    try:
        while True:
            left = timeout - (time.monotonic() - t0)
            if left <= 0:
                return None, bytes(got), time.monotonic() - t0
            if not sel.select(min(left, 0.2)):
                continue
            try:
                b = sock.recv(65536)
            except BlockingIOError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return "reset", bytes(got), time.monotonic() - t0
            except OSError as e:	# e.g. ENOTCONN: reset before connect
                return "error %s" % e.errno, bytes(got), \
                    time.monotonic() - t0
            if not b:
                return "eof", bytes(got), time.monotonic() - t0
            got += b
    finally:
        sel.close()


def reset_close(sock):
    """Closes with a TCP RST (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    sock.close()


def line_for_port(m, lport, timeout=5.0):
    lines = m.wait_log(r"peer=\S*:%d\b|\"peer\": ?\"[^\"]*:%d\"" % (
        lport, lport), timeout=timeout * F)
    return lines[0], parse_line(lines[0])


def start_two_routes(env, target, limits=None):
    """
    mtlsd with route "api" to `target` and route "echo" to an echo
    server, to show that one route's faults leave the process serving:
    (mtlsd, api port, echo port).
    """
    echo = env.echo()
    port, port2 = env.port(), env.port()
    conf = env.config(inbound=[
        inbound_route("api", "127.0.0.1:%d" % port, target,
                      {"uri": [WEB_URI]}),
        inbound_route("echo", "127.0.0.1:%d" % port2, echo.addr,
                      {"uri": [WEB_URI]})], limits=limits)
    return env.start_mtlsd(conf, timeout=10 * F), port, port2


def still_serves(m, port):
    check(m.alive(), "mtlsd died (status %s):\n%s" % (m.wait_exit(0.1),
                                                      m.log()[-3000:]))
    assert_echo(port, data=b"still serving after the fault\n")


# ------------------------------------------------------ TLS streaming

class Pusher:
    """
    Writes the pattern through a handshaken TlsConn as fast as the socket
    takes it.  accepted: plaintext bytes whose TLS records are all in the
    kernel (handed to send()).
    """

    def __init__(self, conn):
        self.c = conn
        self.accepted = 0
        self._pending = bytearray()
        self._pending_plain = 0
        self.sel = selectors.DefaultSelector()
        self.sel.register(conn.sock, selectors.EVENT_WRITE)

    def run(self, until_bytes, seconds, tick=None):
        """Pushes until accepted >= until_bytes or seconds passed."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if not self._pending:
                self.accepted += self._pending_plain
                self._pending_plain = 0
                if self.accepted >= until_bytes:
                    return True
                n = min(RELAY_BUF, until_bytes - self.accepted)
                self._pending_plain = self.c.obj.write(
                    pattern_at(self.accepted, n))
                self._pending += self.c.out.read()
            try:
                k = self.c.sock.send(self._pending)
            except BlockingIOError:
                k = 0
            del self._pending[:k]
            if k == 0:
                self.sel.select(0.05)
            if tick is not None:
                tick()
        if not self._pending:
            self.accepted += self._pending_plain
            self._pending_plain = 0
        return self.accepted >= until_bytes

    def flush(self, seconds):
        """Pushes what is pending; True when all of it went out."""
        end = time.monotonic() + seconds
        while self._pending and time.monotonic() < end:
            try:
                k = self.c.sock.send(self._pending)
            except BlockingIOError:
                k = 0
            del self._pending[:k]
            if k == 0:
                self.sel.select(0.05)
        if not self._pending:
            self.accepted += self._pending_plain
            self._pending_plain = 0
        return not self._pending

    def close(self):
        self.sel.close()


class HoldThenRead:
    """A target that accepts, reads nothing until released, then reads
    to EOF checking every byte against the pattern."""

    def __init__(self):
        self.connected = threading.Event()
        self.release = threading.Event()

    def __call__(self, srv, conn):
        self.connected.set()
        self.release.wait(120)
        conn.settimeout(30 * F)
        n, bad = 0, None
        while True:
            try:
                b = conn.recv(MiB)
            except OSError as e:
                return {"len": n, "mismatch": bad, "error": repr(e)}
            if not b:
                break
            if bad is None:
                bad = first_mismatch(n, b)
            n += len(b)
        return {"len": n, "mismatch": bad, "error": None}


class Source:
    """A target that sends the pattern as fast as mtlsd takes it, up to
    `total` bytes, until stopped or its connection fails."""

    def __init__(self, total=GiB, rst_after=None):
        self.total = total
        self.rst_after = rst_after
        self.stop = threading.Event()
        self.sent = 0
        self.ended = None	# how the connection ended
        self.ended_at = None
        self.connected = threading.Event()

    def __call__(self, srv, conn):
        self.connected.set()
        conn.settimeout(0.2)
        how = "stopped"
        while not self.stop.is_set() and self.sent < self.total:
            if self.rst_after is not None and self.sent >= self.rst_after:
                # Dies mid-stream: a reset, not a clean end.
                reset_close(conn)
                self.ended, self.ended_at = "rst sent", time.monotonic()
                return {"sent": self.sent}
            n = min(64 * KiB, self.total - self.sent)
            if self.rst_after is not None:
                n = min(n, self.rst_after - self.sent)
            try:
                k = conn.send(pattern_at(self.sent, n))
            except socket.timeout:
                continue
            except OSError as e:
                how = "send: %s" % e.__class__.__name__
                break
            self.sent += k
        else:
            if self.sent >= self.total:
                how = "done"
        if how == "stopped":
            # Told to stop: wait for the peer's end, to see how it ends.
            conn.settimeout(10 * F)
            try:
                while conn.recv(65536):
                    pass
                how = "eof"
            except socket.timeout:
                how = "still open"
            except OSError as e:
                how = "recv: %s" % e.__class__.__name__
        self.ended, self.ended_at = how, time.monotonic()
        return {"sent": self.sent, "ended": how}


# ======================================================== the target

def test_target_resets_mid_stream(env):
    # The target sends 256 KiB, then dies with a reset.  The client's
    # connection is closed (not left hanging), the line says
    # target_failed, and mtlsd goes on serving.
    src = Source(rst_after=256 * KiB)
    backend = add_server(env, src)
    m, port, echo_port = start_two_routes(env, backend.addr)
    c = TlsConn.connect("127.0.0.1", port, timeout=5 * F)
    lport = c.local_port()
    try:
        r = c.exchange(b"", half_close=False, timeout=15 * F, keep=False)
    finally:
        c.close()
    check(r.eof or r.reset or r.error is not None,
          "the client was not closed after the target reset: %r" % r)
    check(r.received <= 256 * KiB, "the client got %d bytes, more than the "
          "target sent" % r.received)
    check(not r.clean, "the client got a clean close_notify although the "
          "target reset the connection: %r" % r)
    line, d = line_for_port(m, lport)
    check(d.get("result") == "target_failed", "result is not target_failed "
          "after a target reset: %s" % line)
    check("reset" in line.lower(), "the line does not say the target reset "
          "the connection: %s" % line)
    still_serves(m, echo_port)


def test_target_resets_while_client_sends(env):
    # The target reads 64 KiB of a long upload, then resets; the client,
    # still sending, is closed within a few seconds.
    class ReadThenReset:
        def __call__(self, srv, conn):
            n = 0
            while n < 64 * KiB:
                b = conn.recv(65536)
                if not b:
                    break
                n += len(b)
            reset_close(conn)
            return {"len": n}
    backend = add_server(env, ReadThenReset())
    m, port, echo_port = start_two_routes(env, backend.addr)
    c = TlsConn.connect("127.0.0.1", port, timeout=5 * F)
    lport = c.local_port()
    p = Pusher(c)
    t0 = time.monotonic()
    closed = None
    try:
        # Push in slices, looking for the end in between.
        while time.monotonic() - t0 < 10 * F and closed is None:
            try:
                p.run(p.accepted + MiB, 0.3)
            except (ssl.SSLError, OSError) as e:
                closed = "send: %s" % e.__class__.__name__
                break
            c.sock.setblocking(False)
            closed = closed_state(c.sock)
    finally:
        p.close()
        c.close()
    check(closed is not None, "the client still could send after 10 s "
          "although the target reset its connection (%d bytes accepted)"
          % p.accepted)
    line, d = line_for_port(m, lport)
    check(d.get("result") == "target_failed", "result is not target_failed: "
          "%s" % line)
    still_serves(m, echo_port)


def test_target_stops_reading(env):
    # A client offers 1 GB as fast as it can; the target reads nothing.
    # mtlsd must stop reading from the client (back-pressure): its memory
    # stays flat and the client is held to what the socket buffers and
    # mtlsd's two relay buffers (PROXY_BUFSZ) can take.  Released, the target gets
    # every byte the client sent, in order.
    target = HoldThenRead()
    backend = add_server(env, target)
    m, port = start_inbound(env, target=backend.addr)
    c = TlsConn.connect("127.0.0.1", port, timeout=5 * F)
    try:
        check(target.connected.wait(5 * F), "mtlsd did not connect to the "
              "target")
        time.sleep(0.2)
        rss = RssWatch(m.pid)
        p = Pusher(c)
        hist = []

        def tick():
            now = time.monotonic()
            if not hist or now - hist[-1][0] >= 0.25:
                rss.sample()
                hist.append((now, p.accepted))
        t0 = time.monotonic()
        push = 6.0 * F
        done = p.run(GiB, push, tick)
        took = time.monotonic() - t0
        rss.sample()
        bound = kernel_buffer_bound() + 2 * RELAY_BUF + MiB
        check(not done, "the client pushed 1 GiB in %.1f s into a target "
              "that reads nothing" % took)
        check(p.accepted <= bound, "the client pushed %d bytes into a target "
              "that reads nothing; the socket buffers and two relay buffers "
              "hold at most %d" % (p.accepted, bound))
        # Stalled: nothing more for the last second and a half.
        last = [a for t, a in hist if t >= t0 + push - 1.5]
        check(last and last[-1] - last[0] <= 64 * KiB,
              "the client was not stalled at the end: %d bytes in the last "
              "1.5 s" % ((last[-1] - last[0]) if last else -1))
        check(rss.growth_kb() < 64 * 1024, "mtlsd grew by %d kB while its "
              "target did not read (%d bytes pushed)"
              % (rss.growth_kb(), p.accepted))
        stalled_at = p.accepted
        # Release the target: the rest flows, every byte in order.
        target.release.set()
        more = p.run(stalled_at + 8 * MiB, 30 * F)
        check(more, "after the target read again the client moved only %d "
              "more bytes" % (p.accepted - stalled_at))
        check(p.flush(10 * F), "could not flush the last record")
        r = c.exchange(b"", half_close=True, timeout=30 * F, keep=False)
        check(r.eof and r.error is None, "no clean end after the transfer: "
              "%r" % r)
    finally:
        target.release.set()
        c.close()
    got = backend.wait_results(1, timeout=30 * F)[0]
    check(got["error"] is None, "target: %s" % got["error"])
    check(got["len"] == p.accepted, "the target got %d bytes, the client "
          "sent %d" % (got["len"], p.accepted))
    check(got["mismatch"] is None, "the target's bytes differ from the "
          "client's at offset %s" % got["mismatch"])
    env.outputs.append(("numbers", "stalled after %d bytes (bound %d), RSS "
                        "%d -> peak %d kB" % (stalled_at, bound, rss.start,
                                              rss.peak)))


def test_client_stops_reading(env):
    # The target offers 1 GB; the client reads nothing.  mtlsd stops
    # reading from the target, its memory stays flat; then the client
    # reads a prefix and gets exactly the target's bytes.
    src = Source(total=GiB)
    backend = add_server(env, src)
    m, port = start_inbound(env, target=backend.addr)
    c = TlsConn.connect("127.0.0.1", port, timeout=5 * F)
    try:
        check(src.connected.wait(5 * F), "mtlsd did not connect to the "
              "target")
        rss = RssWatch(m.pid)
        t0 = time.monotonic()
        push = 6.0 * F
        hist = []
        while time.monotonic() - t0 < push:
            rss.sample()
            hist.append((time.monotonic(), src.sent))
            time.sleep(0.25)
        bound = kernel_buffer_bound() + 2 * RELAY_BUF + MiB
        sent = src.sent
        check(sent < GiB, "the target sent all of 1 GiB to a client that "
              "does not read")
        check(sent <= bound, "the target sent %d bytes to a client that "
              "does not read; socket buffers and two relay buffers hold at "
              "most %d" % (sent, bound))
        last = [a for t, a in hist if t >= t0 + push - 1.5]
        check(last and last[-1] - last[0] <= 64 * KiB,
              "the target was not stalled at the end: %d bytes in the last "
              "1.5 s" % ((last[-1] - last[0]) if last else -1))
        check(rss.growth_kb() < 64 * 1024, "mtlsd grew by %d kB while its "
              "client did not read" % rss.growth_kb())
        # Now read: a prefix larger than all that was buffered, exact.
        want = sent + 4 * MiB
        r = c.exchange(b"", half_close=False, timeout=30 * F, expect=want)
        check(r.error is None and r.received >= want,
              "the client read %d of %d bytes (%r)" % (r.received, want, r))
        bad = first_mismatch(0, r.data)
        check(bad is None, "the client's bytes differ from the target's at "
              "offset %s" % bad)
    finally:
        src.stop.set()
        c.close()
    res = backend.wait_results(1, timeout=15 * F)[0]
    check(res.get("ended") not in ("still open", None),
          "the target's connection was not closed after the client went "
          "away: %r" % res)
    check(m.alive(), "mtlsd died")
    env.outputs.append(("numbers", "target stalled after %d bytes (bound "
                        "%d), RSS %d -> peak %d kB"
                        % (sent, bound, rss.start, rss.peak)))


# ========================================================= the client

def test_client_resets_mid_transfer(env):
    # Two clients reset (SO_LINGER 0): one while the target streams to it,
    # one idle.  Each time the target sees its connection closed, the
    # line says result=error, and mtlsd serves the next client.
    src = Source(total=GiB)
    streaming = add_server(env, src)
    echo = env.echo()
    port, admin = env.port(), env.port()
    conf = env.config(inbound=[
        inbound_route("stream", "127.0.0.1:%d" % port, streaming.addr,
                      {"uri": [WEB_URI]})],
        extra={"admin": {"listen": "127.0.0.1:%d" % admin}})
    m = env.start_mtlsd(conf, timeout=10 * F)
    c = TlsConn.connect("127.0.0.1", port, timeout=5 * F)
    lport = c.local_port()
    r = c.exchange(b"", half_close=False, timeout=10 * F, expect=MiB,
                   keep=False)
    check(r.received >= MiB, "no stream before the reset: %r" % r)
    t0 = time.monotonic()
    reset_close(c.sock)
    res = streaming.wait_results(1, timeout=10 * F)[0]
    took = src.ended_at - t0
    check(res.get("ended") not in (None, "still open", "done"),
          "the target did not see the connection end: %r" % res)
    check(took < 3 * F, "the target saw the end %.1f s after the client's "
          "reset" % took)
    line, d = line_for_port(m, lport)
    check(d.get("result") == "error", "result after a client reset is not "
          "error: %s" % line)
    check("client" in line, "the line does not blame the client: %s" % line)
    check(m.alive(), "mtlsd died after a client reset")

    # The second route: an idle echo session, reset by the client.
    m.stop()
    port2 = env.port()
    conf2 = env.config(inbound=[
        inbound_route("echo", "127.0.0.1:%d" % port2, echo.addr,
                      {"uri": [WEB_URI]})])
    m2 = env.start_mtlsd(conf2, timeout=10 * F)
    c = TlsConn.connect("127.0.0.1", port2, timeout=5 * F)
    lport = c.local_port()
    r = c.exchange(b"ping\n", half_close=False, timeout=5 * F, expect=5)
    check(r.data == b"ping\n", "no echo: %r" % r)
    reset_close(c.sock)
    line, d = line_for_port(m2, lport)
    check(d.get("result") == "error", "result after a client reset is not "
          "error: %s" % line)
    deadline = time.monotonic() + 5 * F
    while echo.results == [] and time.monotonic() < deadline:
        time.sleep(0.05)
    check(echo.results, "the echo target's connection stayed open after "
          "the client reset")
    still_serves(m2, port2)


# ============================================== garbage, not TLS hellos

def tls10_client_hello():
    """A TLS 1.0 ClientHello (record and hello version 3.1)."""
    ciphers = [0xc014, 0xc013, 0xc00a, 0xc009, 0x0035, 0x002f, 0x000a]
    ext = b""
    ext += struct.pack("!HHH", 0x000a, 6, 4) + struct.pack("!HH", 0x001d,
                                                           0x0017)
    ext += struct.pack("!HHB", 0x000b, 2, 1) + b"\x00"
    ext += struct.pack("!HH", 0xff01, 1) + b"\x00"
    body = (b"\x03\x01" + os.urandom(32) + b"\x00" +
            struct.pack("!H", 2 * len(ciphers)) +
            b"".join(struct.pack("!H", c) for c in ciphers) + b"\x01\x00" +
            struct.pack("!H", len(ext)) + ext)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def sslv2_client_hello():
    """An SSLv2 CLIENT-HELLO (version 0.2), 2-byte record header."""
    specs = bytes.fromhex("010080" "020080" "030080" "040080" "050080"
                          "060040" "0700c0")
    challenge = os.urandom(16)
    body = (b"\x01" + b"\x00\x02" +
            struct.pack("!HHH", len(specs), 0, len(challenge)) +
            specs + challenge)
    return struct.pack("!H", 0x8000 | len(body)) + body


def random_garbage(n=4096):
    """Random bytes whose first byte is neither a TLS record type
    (0x14-0x18) nor an SSLv2 header (high bit): garbage from byte 0."""
    b = bytearray(os.urandom(n))
    b[0] = 0x20 + b[0] % 0x5f		# printable-ish, 0x20..0x7e
    return bytes(b)


GARBAGE = [
    ("random bytes", random_garbage),
    ("an HTTP request", lambda: b"GET / HTTP/1.1\r\nHost: localhost\r\n"
     b"User-Agent: curl/7.88\r\nAccept: */*\r\n\r\n"),
    ("a TLS 1.0 ClientHello", tls10_client_hello),
    ("an SSLv2 ClientHello", sslv2_client_hello),
    ("an oversized TLS record", lambda: b"\x16\x03\x01\xff\xff" +
     os.urandom(64)),
    ("a handshake record that is not a ClientHello",
     lambda: b"\x16\x03\x03\x00\x04\x02\x00\x00\x00"),
]


def test_garbage_instead_of_client_hello(env):
    # Each is refused at once (well before the handshake timeout), with
    # one reject line: stage handshake, reason protocol; the target sees
    # nothing; mtlsd serves the next good client.
    rec = env.recorder()
    m, port, admin = start_with_admin(env, rec.addr,
                                      limits={"handshake_timeout": 10.0})
    report = []
    for what, make in GARBAGE:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        s.bind(("127.0.0.1", 0))
        lport = s.getsockname()[1]
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(make())
            state, got, took = wait_closed(s, 5 * F)
        finally:
            s.close()
        check(state is not None, "%s: the connection stayed open for %.1f s"
              % (what, 5 * F))
        check(took < 2 * F, "%s: closed only after %.1f s (the handshake "
              "timeout, not a refusal)" % (what, took))
        check(got == b"" or got[0] == 0x15,
              "%s: answered with something that is not a TLS alert: %r"
              % (what, got[:40]))
        line, d = line_for_port(m, lport)
        check(d.get("event") == "reject" or "reject" in line,
              "%s: no reject line: %s" % (what, line))
        check(d.get("result") == "handshake_failed", "%s: result %r: %s"
              % (what, d.get("result"), line))
        check(d.get("stage") == "handshake", "%s: stage %r: %s"
              % (what, d.get("stage"), line))
        check(d.get("reason") == "protocol", "%s: reason %r: %s"
              % (what, d.get("reason"), line))
        report.append("%s: %s, %d bytes back, error=%s" % (
            what, state, len(got), d.get("error")))
        check(m.alive(), "mtlsd died after %s" % what)
    env.outputs.append(("garbage", "\n".join(report)))
    n = len(GARBAGE)
    got = wait_metric(admin, n, "mtlsd_rejections_total", route="api",
                      reason="protocol")
    check(got == n, "mtlsd_rejections_total{reason=protocol} is %r, not %d"
          % (got, n))
    got = metric(metrics(admin), "mtlsd_connections_total", route="api",
                 result="handshake_failed")
    check(got == n, "mtlsd_connections_total{result=handshake_failed} is %r,"
          " not %d" % (got, n))
    check(rec.connections == 0, "the target saw %d connection(s)"
          % rec.connections)
    check(m.alive(), "mtlsd died")
    check(http_get(admin, "/healthz")[0] == 200, "unhealthy")


# ==================================================== handshake flood

def test_handshake_flood_silent_sockets(env):
    # Slowloris: 500 TCP connections that never send a byte.  Good
    # clients are served meanwhile, each within 2 s; at the handshake
    # timeout (2 s) every silent socket is closed and counted.
    n_silent, n_good, hs_timeout = 500, 20, 2.0 * F
    echo = env.echo()
    m, port, admin = start_with_admin(
        env, echo.addr, limits={"handshake_timeout": hs_timeout})
    fd0 = fd_count(m.pid)
    silent = []
    sel = selectors.DefaultSelector()
    opened = {}
    try:
        for i in range(n_silent):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(("127.0.0.1", port))
            s.setblocking(False)
            silent.append(s)
            opened[s.fileno()] = time.monotonic()
            sel.register(s, selectors.EVENT_READ)
        t_flood = time.monotonic()
        # The good clients, all at once, while the flood holds.
        times, bad = [], []
        lock = threading.Lock()

        def good(i):
            data = b"good client %d\n" % i
            t0 = time.monotonic()
            try:
                c = TlsConn.connect("127.0.0.1", port, timeout=5 * F)
                try:
                    r = c.exchange(data, timeout=5 * F)
                finally:
                    c.close()
                ok = r.data == data
            except Exception as e:
                ok = False
                r = e
            with lock:
                times.append(time.monotonic() - t0)
                if not ok:
                    bad.append("client %d: %r" % (i, r))
        ts = [threading.Thread(target=good, args=(i,)) for i in range(n_good)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(15 * F)
        check(not bad, "good clients failed during the flood: %s"
              % "; ".join(bad[:5]))
        check(len(times) == n_good, "%d of %d good clients finished"
              % (len(times), n_good))
        check(max(times) <= 2.0 * F, "a good client took %.2f s during the "
              "flood (slowest; median %.2f s)"
              % (max(times), sorted(times)[len(times) // 2]))
        good_done = time.monotonic() - t_flood
        # Every silent socket is closed at its handshake timeout.
        closed = {}
        deadline = time.monotonic() + hs_timeout + 5 * F
        while len(closed) < n_silent and time.monotonic() < deadline:
            for key, _ in sel.select(0.2):
                s = key.fileobj
                st = closed_state(s)
                if st is not None:
                    closed[s.fileno()] = (st, time.monotonic() -
                                          opened[s.fileno()])
                    sel.unregister(s)
        check(len(closed) == n_silent, "%d of %d silent sockets were closed "
              "within %.1f s of the handshake timeout"
              % (len(closed), n_silent, 5 * F))
        early = [t for st, t in closed.values() if t < hs_timeout - 0.3]
        check(not early, "%d silent sockets were closed before the handshake"
              " timeout (%.2f s after connect)" % (len(early), min(early or
                                                                   [0])))
        late = max(t for st, t in closed.values())
    finally:
        sel.close()
        for s in silent:
            s.close()
    lines = m.wait_log(r"result=timeout|\"result\": ?\"timeout\"",
                       count=n_silent, timeout=10 * F)
    check(len(lines) == n_silent, "%d timeout lines for %d silent sockets"
          % (len(lines), n_silent))
    got = wait_metric(admin, n_silent, "mtlsd_connections_total",
                      route="api", result="timeout")
    check(got == n_silent, "mtlsd_connections_total{result=timeout} is %r, "
          "not %d" % (got, n_silent))
    s = metrics(admin)
    check(metric(s, "mtlsd_connections_total", route="api", result="ok")
          == n_good, "ok count %r, not %d" % (metric(
              s, "mtlsd_connections_total", route="api", result="ok"),
              n_good))
    check(wait_metric(admin, 0, "mtlsd_connections_active", route="api")
          == 0, "connections still active after the flood")
    time.sleep(0.2)
    fd1 = fd_count(m.pid)
    check(fd1 <= fd0, "mtlsd holds %d descriptors after the flood, %d "
          "before" % (fd1, fd0))
    env.outputs.append(("numbers", "good clients: slowest %.2f s, all done "
                        "%.2f s into the flood; silent sockets closed by "
                        "%.2f s; fds %d -> %d"
                        % (max(times), good_done, late, fd0, fd1)))
    still_serves(m, port)


# ====================================================== running out

def test_fd_exhaustion_refuses_then_recovers(env):
    # mtlsd under RLIMIT_NOFILE 64 (started as an unprivileged user, so
    # that it cannot raise the hard limit as it does as root).  More
    # clients than descriptors: the ones it cannot take are refused
    # cleanly (closed or reset, not left hanging in the accept queue), it
    # survives with a line about it (out of descriptors / accept paused),
    # and once the clients
    # are gone it serves again.  Survival and recovery are checked before
    # the refusals, so that a failure of one does not hide the others.
    for tool in ("setpriv", "prlimit"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in ("/usr/bin", "/bin", "/usr/sbin", "/sbin")):
            raise Skip("%s is not installed" % tool)
    prefix = ["prlimit", "--nofile=64:64"]
    if os.geteuid() == 0:
        prefix += ["setpriv", "--reuid=65534", "--regid=65534",
                   "--clear-groups"]
    echo = env.echo()
    port = env.port()
    conf = env.config(inbound=[inbound_route(
        "api", "127.0.0.1:%d" % port, echo.addr, {"uri": [WEB_URI]})],
        limits={"handshake_timeout": 30.0})
    m = launch(env, conf, prefix)
    check("RLIMIT_NOFILE is 64" in m.log(), "mtlsd does not run with 64 "
          "descriptors:\n%s" % m.log())
    fd0 = fd_count(m.pid)
    problems = []
    n_held = 100
    held = []
    try:
        # Silent clients, each holding one descriptor of mtlsd once
        # accepted, until accept fails.
        refused_early = 0
        for i in range(n_held):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
            except (ConnectionResetError, ConnectionRefusedError):
                # Refused at once: the descriptors already ran out.
                refused_early += 1
                continue
            s.setblocking(False)
            held.append(s)
        m.wait_log(r"accept.*paus|out of (file )?descriptors|Too many open "
                   r"files", timeout=5 * F)
        time.sleep(0.5 * F)
        check(m.alive(), "mtlsd died out of descriptors (status %s)"
              % m.wait_exit(0.1))
        fdn = fd_count(m.pid)
        taken = fdn - fd0	# one descriptor per accepted client
        # A new client now: served, or refused at once; never left
        # waiting in the accept queue of a process that will not take it.
        t0 = time.monotonic()
        lport, outcome, data = try_client(port, "client", timeout=3 * F)
        took = time.monotonic() - t0
        if outcome == "open":
            problems.append(
                "a new client during descriptor exhaustion was left hanging "
                "for %.1f s: neither served nor refused (mtlsd has %d of its"
                " 64 descriptors open and pauses accept)" % (took, fdn))
        # The held clients it could not take: closed or reset by now.
        open_held = sum(1 for s in held if closed_state(s) is None)
        not_taken = n_held - taken
        if open_held > taken:
            problems.append(
                "%d of %d clients that mtlsd had no descriptor for are still"
                " waiting (not refused) after %.1f s"
                % (open_held - taken, not_taken,
                   time.monotonic() - t0 + 0.5 * F))
        check(m.alive(), "mtlsd died")
    finally:
        for s in held:
            s.close()
    # They are gone: mtlsd serves again, at the latest after its pause.
    t0 = time.monotonic()
    deadline = t0 + 10 * F
    while True:
        try:
            assert_echo(port, data=b"after exhaustion\n", timeout=3 * F)
            break
        except (AssertionError, ssl.SSLError, OSError) as e:
            check(time.monotonic() < deadline, "no client served within "
                  "10 s after the exhaustion ended: %s" % e)
            time.sleep(0.3)
    recovered = time.monotonic() - t0
    deadline = time.monotonic() + 5 * F
    while fd_count(m.pid) > fd0 and time.monotonic() < deadline:
        time.sleep(0.1)
    fd1 = fd_count(m.pid)
    check(fd1 <= fd0, "mtlsd holds %d descriptors after the clients left, "
          "%d before" % (fd1, fd0))
    env.outputs.append(("numbers", "fds: %d at start, %d under load (%d "
                        "clients taken of %d), %d after; served again %.1f s"
                        " after the clients left" % (fd0, fdn, taken, n_held,
                                                     fd1, recovered)))
    check(not problems, "; ".join(problems))


def test_max_connections_slots_come_back(env):
    # What test_lifecycle does not show: every way a connection ends
    # gives its slot back (handshake timeout, rejected identity, failed
    # handshake, target down, a client reset), a burst over the limit is
    # refused at once and counted, and then exactly max_connections
    # clients are served at the same time again.
    limit = 3
    echo = env.echo()
    m, port, admin = start_with_admin(
        env, echo.addr, limits={"max_connections": limit,
                                "handshake_timeout": 1.0 * F})
    # Timeouts: `limit` silent sockets, held past the handshake timeout.
    silent = [socket.create_connection(("127.0.0.1", port), timeout=5)
              for _ in range(limit)]
    try:
        for s in silent:
            st, _, _ = wait_closed(s, 4 * F)
            check(st is not None, "a silent socket was not closed")
    finally:
        for s in silent:
            s.close()
    # Rejections and failed handshakes.
    for _ in range(limit):
        try_client(port, "other", timeout=5 * F)
        try_client(port, None, timeout=5 * F)
    # Client resets after the handshake.
    for _ in range(limit):
        c = TlsConn.connect("127.0.0.1", port, timeout=5 * F)
        r = c.exchange(b"x", half_close=False, timeout=5 * F, expect=1)
        check(r.data == b"x", "no echo: %r" % r)
        reset_close(c.sock)
    check(wait_metric(admin, 0, "mtlsd_connections_active", route="api")
          == 0, "active connections do not return to 0")
    # Now `limit` held clients, and a burst of 20 over the limit.
    held = []
    try:
        for i in range(limit):
            c = TlsConn.connect("127.0.0.1", port, timeout=5 * F)
            held.append(c)
            r = c.exchange(b"h%d" % i, half_close=False, timeout=5 * F,
                           expect=2)
            check(r.data == b"h%d" % i, "held client %d not served after "
                  "the slots came back: %r" % (i, r))
        burst = []
        for i in range(20):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
            except (ConnectionResetError, BrokenPipeError):
                pass		# refused before connect() returned
            burst.append(s)
        slow = []
        for s in burst:
            st, got, took = wait_closed(s, 3 * F)
            if st is None or took > 1.0 * F:
                slow.append((st, took))
            s.close()
        check(not slow, "%d of 20 clients over the limit were not closed "
              "at once: %r" % (len(slow), slow[:3]))
        s = metrics(admin)
        check(metric(s, "mtlsd_connections_active", route="api") == limit,
              "active %r with %d held" % (metric(
                  s, "mtlsd_connections_active", route="api"), limit))
        check(metric(s, "mtlsd_connections_total", route="api",
                     result="limit") == 20, "limit count %r, not 20"
              % metric(s, "mtlsd_connections_total", route="api",
                       result="limit"))
        # The held ones still work.
        for i, c in enumerate(held):
            r = c.exchange(b"again%d" % i, half_close=False, timeout=5 * F,
                           expect=6)
            check(r.data == b"again%d" % i, "held client %d broke: %r"
                  % (i, r))
    finally:
        for c in held:
            c.close()
    check(wait_metric(admin, 0, "mtlsd_connections_active", route="api")
          == 0, "active connections do not return to 0 at the end")
    s = metrics(admin)
    for result, n in (("timeout", limit), ("identity_rejected", limit),
                      ("handshake_failed", limit), ("error", limit)):
        got = metric(s, "mtlsd_connections_total", route="api",
                     result=result)
        if result == "error" and got is None:
            continue		# not every build exports this extension
        check(got == n, "mtlsd_connections_total{result=%s} is %r, not %d"
              % (result, got, n))
    still_serves(m, port)


# ============================================================ signals

def test_sighup_during_startup_does_not_kill(env):
    # A SIGHUP from a rotation tool (spiffe-helper, a kubelet hook) may
    # come while mtlsd starts: once its port listens it must not die of
    # it (SIGHUP's default action), whether it reloads or not.  strace
    # delays the return of listen(2) by 0.7 s to hold that moment open
    # (the socket listens already); the signal goes to mtlsd by its PID.
    if not any(os.access(os.path.join(d, "strace"), os.X_OK)
               for d in ("/usr/bin", "/bin")):
        raise Skip("strace is not installed")
    echo = env.echo()
    port = env.port()
    conf = env.config(inbound=[inbound_route(
        "api", "127.0.0.1:%d" % port, echo.addr, {"uri": [WEB_URI]})])
    trace = env.path("strace.out")
    log_path = env.path("mtlsd%d.log" % (len(env.procs) + 1))
    st = harness.Mtlsd(env, ["strace", "-f", "-qq", "-o", trace, "-e",
                             "trace=listen", "-e",
                             "inject=listen:delay_exit=700000",
                             harness.MTLSD, "-c", conf], log_path,
                       # LeakSanitizer cannot run under a tracer.
                       {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1"})
    env.procs.append(st)
    child = None
    try:
        deadline = time.monotonic() + 10 * F
        while not harness.is_listening("127.0.0.1:%d" % port):
            check(st.alive() and time.monotonic() < deadline,
                  "mtlsd did not listen:\n%s" % st.log())
            time.sleep(0.002)
        with open("/proc/%d/task/%d/children" % (st.pid, st.pid)) as f:
            child = int(f.read().split()[0])
        os.kill(child, signal.SIGHUP)
        deadline = time.monotonic() + 10 * F
        while "serving with" not in st.log() and st.alive() and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        with open(trace) as f:
            traced = f.read()
        check("killed by SIGHUP" not in traced and st.alive(),
              "a SIGHUP after the listener was up but before mtlsd "
              "served killed it (default action):\n%s" % traced.strip())
        still_serves(st, port)
    finally:
        if child is not None:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass
            st.wait_exit(10)

