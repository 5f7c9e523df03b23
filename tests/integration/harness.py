"""
The integration test harness of mtlsd: standard library only.

Each test function receives a fresh Env: a private temporary directory,
free loopback ports, the mtlsd processes it started (stderr captured to a
file each), and backends that run as threads in the test process.
Env.close() stops all of them, whether the test passed or not.  Every
wait here is bounded by a deadline; a process is only ever signalled by
the PID this harness got when it started it.
"""
import hashlib
import http.server
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# Set by run.py: the binary under test and the (copied) demo PKI.
MTLSD = os.environ.get("MTLSD", os.path.join(REPO, "build/test/mtlsd"))
CERTS = os.environ.get("MTLSD_CERTS",
                       os.path.join(REPO, "certs-example", "out"))

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:",
                     "LeakSanitizer")
MTLSD_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}
WEB_URI = "spiffe://example.org/ns/prod/sa/web"
API_URI = "spiffe://example.org/ns/prod/sa/api"
INTRUDER_URI = "spiffe://example.org/ns/dev/sa/intruder"


class Skip(Exception):
    """Raised by a test that cannot run here (e.g. no IPv6)."""


def tool_binary(name):
    """A test tool from tests/tools, built beside the binary under test."""
    for p in (os.path.join(os.path.dirname(os.path.abspath(MTLSD)), name),
              os.path.join(REPO, "build", "test", name)):
        if os.access(p, os.X_OK):
            return p
    raise Skip("no %s: make build/test/%s" % (name, name))


class Timeout(AssertionError):
    pass


def check(cond, msg):
    """An assertion that survives python -O."""
    if not cond:
        raise AssertionError(msg)


def cert(name):
    """Path of a file of the demo PKI: cert('client.crt')."""
    return os.path.join(CERTS, name)


def leaf_sha256(name):
    """SHA-256 (lower-case hex) of the DER of NAME.leaf.crt."""
    with open(cert(name + ".leaf.crt")) as f:
        pem = f.read()
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                  pem, re.S)
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(m.group(0))).hexdigest()


def random_bytes(n):
    return os.urandom(n)


# --------------------------------------------------------------- ports

_port_lock = threading.Lock()
_ports_given = set()


def _port_range():
    """
    Ports below the kernel's ephemeral range: a port picked here cannot be
    taken meanwhile by some socket's automatic bind (a client's local
    port, a backend bound to port 0) before mtlsd binds it.
    """
    lo = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    if lo < 12000:
        return 40000, 60000	# an odd range: take our chances
    return max(1024, lo - 12000), lo


_rng = random.Random(os.getpid() ^ int(time.time() * 1000))


def free_port(host="127.0.0.1"):
    """A port that is free now, never handed out twice in one run."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    lo, hi = _port_range()
    for _ in range(200):
        port = _rng.randrange(lo, hi)
        with _port_lock:
            if port in _ports_given:
                continue
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind((host, port))
        except OSError:
            continue
        finally:
            s.close()
        with _port_lock:
            if port in _ports_given:
                continue
            _ports_given.add(port)
        return port
    raise RuntimeError("no free port in %d-%d" % (lo, hi))


def port_is_free(port, host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def is_listening(addr):
    """Whether some socket listens on addr ("h:p", "[v6]:p", "unix:/p")."""
    if addr.startswith("unix:"):
        path = addr[5:]
        try:
            with open("/proc/net/unix") as f:
                for l in f:
                    w = l.split()
                    if len(w) >= 8 and w[-1] == path and w[3] == "00010000":
                        return True
        except OSError:
            pass
        return False
    try:
        port = int(addr.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return False
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                for l in f:
                    w = l.split()
                    if len(w) > 3 and w[3] == "0A" and \
                            w[1].endswith(":%04X" % port):
                        return True
        except OSError:
            pass
    return False


def have_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return True
    except OSError:
        return False


# ------------------------------------------------------ configuration

def lc(value, indent=""):
    """A Python value as libconfig text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], dict):
            inner = indent + "  "
            return "(\n" + ",\n".join(inner + lc(v, inner) for v in value) \
                + "\n" + indent + ")"
        return "[ " + ", ".join(lc(v, indent) for v in value) + " ]"
    if isinstance(value, dict):
        inner = indent + "  "
        body = "".join("%s%s = %s;\n" % (inner, k, lc(v, inner))
                       for k, v in value.items())
        return "{\n" + body + indent + "}"
    raise TypeError("cannot write %r as libconfig" % (value,))


def conf_text(top):
    """A dict of top-level settings as a libconfig file."""
    return "".join("%s = %s;\n" % (k, lc(v)) for k, v in top.items())


def server_tls(**over):
    d = {"cert": cert("server.crt"), "key": cert("server.key"),
         "ca": cert("ca-bundle.crt")}
    d.update(over)
    return d


def client_tls(name="client", **over):
    d = {"cert": cert(name + ".crt"), "key": cert(name + ".key"),
         "ca": cert("ca-bundle.crt")}
    d.update(over)
    return d


# ----------------------------------------------------------- mtlsd

class Mtlsd:
    """One running mtlsd; its stderr goes to a file."""

    def __init__(self, env, argv, log_path, environ=None):
        self.env = env
        self.argv = argv
        self.log_path = log_path
        self.rc = None
        self.killed = False	# needed SIGKILL
        e = dict(os.environ)
        e.update(MTLSD_ENV)
        e.update(environ or {})
        self._logf = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self._logf, stderr=self._logf,
                                     env=e, cwd=env.dir)
        self.pid = self.proc.pid

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def lines(self):
        return [l for l in self.log().splitlines() if l.strip()]

    def alive(self):
        return self.proc.poll() is None

    def wait_log(self, pattern, timeout=5.0, count=1):
        """Waits until `count` lines match the regex; returns them."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = [l for l in self.lines() if rx.search(l)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise Timeout("mtlsd log: no line matching %r within %.1f s"
                              % (pattern, timeout))
            time.sleep(0.05)

    def wait_exit(self, timeout):
        try:
            self.rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.rc

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def stop(self, timeout=10.0):
        """SIGTERM, wait, then SIGKILL; returns the exit status."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        self.rc = self.proc.returncode
        if not self._logf.closed:
            self._logf.close()
        return self.rc


# ------------------------------------------------------------ backends

class Server:
    """A listening socket served by threads; `handler(self, conn)`."""

    def __init__(self, env, handler, host="127.0.0.1", port=None,
                 unix=None):
        self.env = env
        self.handler = handler
        self.connections = 0
        self.results = []		# whatever the handler reports
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns = []
        self._threads = []
        if unix is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix)
            os.chmod(unix, 0o777)	# for mtlsd after its privilege drop
            self.path = unix
            self.addr = "unix:" + unix
            self.port = None
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port or 0))
            self.port = self.sock.getsockname()[1]
            self.addr = ("[%s]:%d" if ":" in host else "%s:%d") % (
                host, self.port)
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            conn.settimeout(30)
            t = threading.Thread(target=self._serve, args=(conn,),
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn):
        try:
            r = self.handler(self, conn)
            if r is not None:
                with self._lock:
                    self.results.append(r)
        except Exception as e:  # reported by tests that care
            with self._lock:
                self.errors.append(repr(e))
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def wait_results(self, n=1, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.results) >= n:
                    return list(self.results)
            time.sleep(0.02)
        raise Timeout("backend: %d result(s) expected, got %d (errors %r)"
                      % (n, len(self.results), self.errors))

    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    c.close()
                except OSError:
                    pass
        for t in self._threads:
            t.join(timeout=2)


def _recv_all(conn, hasher=None, keep=True):
    """Reads to EOF; returns (bytes or b'', count)."""
    data = bytearray()
    n = 0
    while True:
        try:
            b = conn.recv(65536)
        except OSError:		# reset, or closed by Server.close()
            break
        if not b:
            break
        n += len(b)
        if hasher is not None:
            hasher.update(b)
        if keep:
            data += b
    return bytes(data), n


def h_echo(srv, conn):
    """Echoes until EOF, then half-closes and closes."""
    n = 0
    while True:
        try:
            b = conn.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        conn.sendall(b)
        n += len(b)
    try:
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    return {"echoed": n}


def h_sink(srv, conn):
    """Hashes what it receives until EOF."""
    h = hashlib.sha256()
    _, n = _recv_all(conn, h, keep=False)
    return {"len": n, "sha256": h.hexdigest()}


def h_recorder(srv, conn):
    """Notes the connection (counted by Server) and closes."""
    return {"connected": True}


def h_silent(srv, conn):
    """Reads and never answers, until the peer goes away."""
    _, n = _recv_all(conn, keep=False)
    return {"len": n}


def make_h_sink_source(data):
    """Sends `data` while hashing everything received, both until done."""
    def h(srv, conn):
        h = hashlib.sha256()
        box = {}

        def reader():
            _, box["n"] = _recv_all(conn, h, keep=False)
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        t.join(timeout=60)
        return {"len": box.get("n", -1), "sha256": h.hexdigest()}
    return h


def h_collect_reply(srv, conn):
    """Reads to EOF, then sends all it got back and closes."""
    data, n = _recv_all(conn)
    conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)
    return {"len": n, "sha256": hashlib.sha256(data).hexdigest()}


def make_h_send_then_read(data):
    """Sends `data`, half-closes, then reads to EOF (hashing it)."""
    def h(srv, conn):
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        hh = hashlib.sha256()
        _, n = _recv_all(conn, hh, keep=False)
        return {"len": n, "sha256": hh.hexdigest()}
    return h


class TlsBackend(Server):
    """
    A TLS echo server (for outbound routes): records the SNI and the
    client certificate of each connection.
    """

    def __init__(self, env, cert_name="server", require_client_cert=True,
                 host="127.0.0.1"):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert(cert_name + ".crt"),
                                 cert(cert_name + ".key"))
        self.ctx.load_verify_locations(cert("ca-bundle.crt"))
        self.ctx.verify_mode = (ssl.CERT_REQUIRED if require_client_cert
                                else ssl.CERT_NONE)
        self.sni = []
        self.ctx.sni_callback = self._sni
        super().__init__(env, self._handle, host=host)

    def _sni(self, sslobj, name, ctx):
        self.sni.append(name)
        return None

    def _handle(self, srv, conn):
        conn.settimeout(10)
        t = self.ctx.wrap_socket(conn, server_side=True)
        peer = t.getpeercert()
        n = 0
        while True:
            try:
                b = t.recv(65536)
            except (ssl.SSLError, OSError):
                break
            if not b:
                break
            t.sendall(b)
            n += len(b)
        try:
            t.unwrap()
        except (ssl.SSLError, OSError):
            pass
        return {"peer": peer, "echoed": n, "version": t.version()}


class _HttpHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from the backend\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class HttpBackend:
    def __init__(self):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     _HttpHandler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=2)


# ------------------------------------------------------------- clients

class ConnResult:
    def __init__(self):
        self.data = bytearray()
        self.received = 0
        self.sha256 = hashlib.sha256()
        self.eof = False		# the peer ended its side
        self.clean = False		# ... with close_notify (TLS)
        self.reset = False
        self.error = None		# an exception ending the exchange
        self.sent = 0

    def __repr__(self):
        return ("ConnResult(received=%d, sent=%d, eof=%s, clean=%s, "
                "reset=%s, error=%r)" % (self.received, self.sent, self.eof,
                                         self.clean, self.reset, self.error))


class _Conn:
    """A non-blocking client connection driven by select()."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.setblocking(False)
        self.net_eof = False
        self.reset = False
        self.wr_shut = False

    def local_port(self):
        try:
            return self.sock.getsockname()[1]
        except (OSError, IndexError, TypeError):
            return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def exchange(self, data=b"", half_close=True, timeout=20.0,
                 expect=None, keep=True, read_first=False):
        """
        Sends data (then ends our side when half_close), and reads until
        the peer ends its side, or until `expect` bytes arrived.  With
        read_first, nothing is sent before the peer has ended its side.
        Errors end the exchange and are kept in result.error.
        """
        r = ConnResult()
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        try:
            while True:
                if time.monotonic() > deadline:
                    raise Timeout("client: exchange not finished within "
                                  "%.1f s (%r)" % (timeout, r))
                may_send = not read_first or r.eof
                while may_send and r.sent < len(data) and self._can_write():
                    n = self._write(view[r.sent:r.sent + 65536])
                    if n <= 0:
                        break
                    r.sent += n
                if (may_send and half_close and r.sent == len(data)
                        and not self.wr_shut):
                    self._shutdown_write()
                    self.wr_shut = True
                while True:
                    b = self._read()
                    if b is None:
                        break
                    if b == b"":
                        r.eof = True
                        break
                    r.received += len(b)
                    r.sha256.update(b)
                    if keep:
                        r.data += b
                if expect is not None and r.received >= expect:
                    break
                if r.eof and r.sent == len(data) and (
                        self.wr_shut or not half_close):
                    break
                if r.eof and r.sent < len(data) and self.reset:
                    break
                self._wait(0.2, want_write=r.sent < len(data) and may_send)
            self._finish(deadline)
        except (ssl.SSLError, OSError) as e:
            r.error = e
        r.reset = self.reset
        r.clean = getattr(self, "clean_eof", False)
        r.data = bytes(r.data)
        return r

    def _finish(self, deadline):
        pass


class PlainConn(_Conn):
    """A plaintext TCP or unix client (for outbound routes)."""

    @classmethod
    def connect(cls, addr, timeout=5.0):
        if isinstance(addr, str) and addr.startswith("unix:"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target = addr[5:]
        else:
            host, port = addr
            s = socket.socket(socket.AF_INET6 if ":" in host
                              else socket.AF_INET, socket.SOCK_STREAM)
            target = (host, port)
            s.bind((host, 0))	# local port known even after a reset
        s.settimeout(timeout)
        try:
            s.connect(target)
        except (ConnectionResetError, BrokenPipeError):
            # Reset before connect() returned (a fast refusal): a
            # connection that is over already.
            c = cls(s)
            c.reset = c.net_eof = True
            return c
        return cls(s)

    def _can_write(self):
        return True

    def _write(self, b):
        try:
            return self.sock.send(b)
        except BlockingIOError:
            return 0
        except (BrokenPipeError, ConnectionResetError):
            self.reset = True
            raise

    def _shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def _read(self):
        if self.net_eof:
            return b""
        try:
            b = self.sock.recv(65536)
        except BlockingIOError:
            return None
        except ConnectionResetError:
            self.reset = True
            self.net_eof = True
            return b""
        if not b:
            self.net_eof = True
        return b

    def _wait(self, t, want_write=False):
        select.select([self.sock], [self.sock] if want_write else [], [], t)


class TlsConn(_Conn):
    """
    A TLS client over ssl.SSLObject and memory BIOs, so that it can send
    close_notify and go on reading (TLS half-close), and drive both
    directions from one thread.
    """

    def __init__(self, sock, ctx, server_hostname):
        super().__init__(sock)
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out,
                                server_hostname=server_hostname)
        self.netout = bytearray()
        self.clean_eof = False
        self._rbuf = bytearray()
        self._rbuf_eof = False

    @classmethod
    def connect(cls, host, port, cert_name="client", server_hostname=None,
                ca="ca-bundle.crt", min_version=None, max_version=None,
                ciphers=None, check_hostname=True, timeout=5.0,
                handshake=True):
        ctx = client_context(cert_name, ca, min_version, max_version,
                             ciphers, check_hostname)
        if server_hostname is None:
            server_hostname = host if check_hostname else None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect((host, port))
        c = cls(s, ctx, server_hostname)
        if handshake:
            try:
                c.handshake(timeout)
            except BaseException:
                c.close()
                raise
        return c

    def version(self):
        return self.obj.version()

    def _pull(self):
        if self.out.pending:
            self.netout += self.out.read()

    def _flush(self):
        self._pull()
        while self.netout:
            try:
                n = self.sock.send(self.netout)
            except BlockingIOError:
                return
            except (BrokenPipeError, ConnectionResetError):
                self.reset = True
                self.netout.clear()
                return
            del self.netout[:n]

    def _fill(self):
        if self.net_eof:
            return
        try:
            b = self.sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionResetError:
            self.reset = True
            b = b""
        if b:
            self.inc.write(b)
        else:
            self.net_eof = True
            self.inc.write_eof()

    def _wait(self, t, want_write=False):
        self._flush()
        r = [] if self.net_eof else [self.sock]
        w = [self.sock] if self.netout else []
        if not r and not w:
            time.sleep(min(t, 0.05))
            return
        rr, ww, _ = select.select(r, w, [], t)
        if ww:
            self._flush()
        if rr:
            self._fill()

    def handshake(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            if time.monotonic() > deadline:
                raise Timeout("client: TLS handshake not done in %.1f s"
                              % timeout)
            self._wait(0.2)
        # Send our Finished (and certificate) now.
        end = time.monotonic() + timeout
        self._flush()
        while self.netout and time.monotonic() < end:
            self._wait(0.1)

    def _can_write(self):
        self._flush()
        return len(self.netout) < (1 << 20)

    def _write(self, b):
        n = self.obj.write(b)
        self._flush()
        return n

    def _shutdown_write(self):
        # unwrap() goes on to read the peer's close_notify, and would take
        # application data already in the BIO for an error: read it first.
        while not self._rbuf_eof:
            b = self._obj_read()
            if b is None:
                break
            if b == b"":
                self._rbuf_eof = True
                break
            self._rbuf += b
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._flush()

    def _read(self):
        if self._rbuf:
            b = bytes(self._rbuf)
            self._rbuf.clear()
            return b
        if self._rbuf_eof:
            return b""
        return self._obj_read()

    def _obj_read(self):
        try:
            b = self.obj.read(65536)
        except ssl.SSLWantReadError:
            self._flush()
            return None
        except ssl.SSLZeroReturnError:
            self.clean_eof = True
            return b""
        except ssl.SSLEOFError:
            return b""
        if not b:
            return b""
        return b

    def _finish(self, deadline):
        self._flush()
        while self.netout and not self.reset and \
                time.monotonic() < deadline:
            self._wait(0.1)


def client_context(cert_name="client", ca="ca-bundle.crt", min_version=None,
                   max_version=None, ciphers=None, check_hostname=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cert(ca))
    if cert_name is not None:
        ctx.load_cert_chain(cert(cert_name + ".crt"), cert(cert_name + ".key"))
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def tls_echo(port, data=b"ping through mtlsd\n", host="127.0.0.1", **kw):
    """Handshake, send data, end our side, read to EOF; (conn, result)."""
    c = TlsConn.connect(host, port, **kw)
    try:
        r = c.exchange(data, half_close=True, timeout=10)
    finally:
        c.close()
    return c, r


def try_client(port, cert_name, host="127.0.0.1", data=b"must not pass\n",
               timeout=5.0, **kw):
    """
    A client that may be refused.  Returns (local_port, outcome, received)
    where outcome is 'handshake: ...', 'error: ...', 'eof' or 'open'.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((host, 0))		# the local port is known even if reset
    lport = s.getsockname()[1]
    try:
        s.connect((host, port))
    except (ConnectionResetError, BrokenPipeError) as e:
        s.close()
        return lport, "reset at connect: %s" % e, b""
    except ConnectionRefusedError as e:
        s.close()
        return lport, "refused: %s" % e, b""
    ctx = client_context(cert_name, **kw)
    c = TlsConn(s, ctx, host)
    try:
        try:
            c.handshake(timeout)
        except (ssl.SSLError, OSError) as e:
            return lport, "handshake: %s" % e, b""
        r = c.exchange(data, half_close=False, timeout=timeout,
                       expect=len(data))
        if r.error is not None:
            return lport, "error: %s" % r.error, r.data
        if r.eof:
            return lport, "eof", r.data
        return lport, "open", r.data
    except Timeout:
        return lport, "open", b""
    finally:
        c.close()


# --------------------------------------------------------- log helpers

_KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_line(line):
    """A log line as a dict: JSON as it is, text as its key=value pairs."""
    line = line.strip()
    if line.startswith("{"):
        try:
            return json.loads(line)
        except ValueError:
            return {}
    d = {}
    parts = line.split(" ", 3)
    if len(parts) >= 3:
        d["level"] = parts[1]
        d["event"] = parts[2]
    for k, v in _KV.findall(line):
        if v.startswith('"'):
            try:
                v = json.loads(v)
            except ValueError:
                pass
        d[k] = v
    return d


# ----------------------------------------------------------------- Env

class Env:
    """Everything one test owns; close() releases all of it."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="mtlsd-it-")
        # mtlsd drops to an unprivileged user: it must reach unix sockets
        # here after that.
        os.chmod(self.dir, 0o755)
        self.procs = []
        self.servers = []
        self.outputs = []	# (label, text) of mtlsd runs that ended
        self._held = []		# sockets to close at the end
        self._n = 0

    # -- files and ports
    def path(self, name):
        return os.path.join(self.dir, name)

    def port(self, host="127.0.0.1"):
        return free_port(host)

    def write_conf(self, text, name=None):
        self._n += 1
        p = self.path(name or "mtlsd%d.conf" % self._n)
        with open(p, "w") as f:
            f.write(text)
        return p

    def config(self, inbound=(), outbound=(), tls=None, limits=None,
               log=None, workers=1, extra=None, seccomp=False):
        """
        A configuration file.  seccomp defaults to false: under ASan the
        LeakSanitizer pass at exit needs system calls that the filter
        (rightly) kills, so the sanitizer runs go without it, and
        test_sandbox.py runs mtlsd with it.  seccomp=None leaves the
        sandbox group out (the contract's default: on).
        """
        top = {}
        if workers is not None:
            top["workers"] = workers
        if seccomp is not None:
            top["sandbox"] = {"seccomp": seccomp}
        if log is not None:
            top["log"] = log
        if limits is not None:
            top["limits"] = limits
        top["tls"] = tls if tls is not None else server_tls()
        if inbound:
            top["inbound"] = list(inbound)
        if outbound:
            top["outbound"] = list(outbound)
        if extra:
            top.update(extra)
        return self.write_conf(conf_text(top))

    # -- mtlsd
    def start_mtlsd(self, conf_path, expect_ready=True, timeout=10.0,
                    args=(), environ=None):
        log_path = self.path("mtlsd%d.log" % (len(self.procs) + 1))
        m = Mtlsd(self, [MTLSD, "-c", conf_path] + list(args), log_path,
                  environ)
        self.procs.append(m)
        if not expect_ready:
            return m
        try:
            with open(conf_path) as f:
                listens = re.findall(r'\blisten\s*=\s*"([^"]+)"', f.read())
        except OSError:
            listens = []
        deadline = time.monotonic() + timeout
        while True:
            # The log line, or (at log levels above info) every listener
            # seen in LISTEN state.
            if "serving with" in m.log() or (
                    listens and all(map(is_listening, listens))
                    and m.alive()):
                return m
            if not m.alive():
                m.stop()
                raise AssertionError("mtlsd exited with %s before it "
                                     "served:\n%s" % (m.rc, m.log()))
            if time.monotonic() > deadline:
                raise Timeout("mtlsd not serving within %.1f s" % timeout)
            time.sleep(0.03)

    def run_mtlsd(self, args, timeout=20.0):
        """Runs mtlsd to its end: (exit status, stdout, stderr)."""
        e = dict(os.environ)
        e.update(MTLSD_ENV)
        p = subprocess.run([MTLSD] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout, env=e,
                           cwd=self.dir)
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        self.outputs.append(("mtlsd %s" % " ".join(args),
                             "exit %d\n--- stdout\n%s--- stderr\n%s"
                             % (p.returncode, out, err)))
        return p.returncode, out, err

    # -- backends
    def _server(self, handler, host="127.0.0.1", unix=None):
        s = Server(self, handler, host=host, unix=unix)
        self.servers.append(s)
        return s

    def echo(self, host="127.0.0.1", unix=None):
        return self._server(h_echo, host, unix)

    def sink(self, host="127.0.0.1"):
        return self._server(h_sink, host)

    def sink_source(self, data, host="127.0.0.1"):
        return self._server(make_h_sink_source(data), host)

    def collect_reply(self, host="127.0.0.1"):
        return self._server(h_collect_reply, host)

    def send_then_read(self, data, host="127.0.0.1"):
        return self._server(make_h_send_then_read(data), host)

    def recorder(self, host="127.0.0.1"):
        return self._server(h_recorder, host)

    def tls_backend(self, **kw):
        s = TlsBackend(self, **kw)
        self.servers.append(s)
        return s

    def silent(self, host="127.0.0.1"):
        return self._server(h_silent, host)

    def unreachable(self):
        """
        An address whose SYNs go unanswered: a listener that never
        accepts, its queue filled.  Returns "127.0.0.1:PORT".
        """
        full = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        self._held.append(full)
        for _ in range(3):
            f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            self._held.append(f)
        time.sleep(0.1)
        return "127.0.0.1:%d" % port

    def http(self):
        h = HttpBackend()
        self.servers.append(h)
        return h

    # -- external clients
    def run(self, argv, input_bytes=b"", timeout=15.0):
        """A command with a timeout: (status, stdout, stderr)."""
        try:
            p = subprocess.run(argv, input=input_bytes, capture_output=True,
                               timeout=timeout, cwd=self.dir)
        except subprocess.TimeoutExpired as e:
            return None, e.stdout or b"", e.stderr or b""
        return p.returncode, p.stdout, p.stderr

    def s_client(self, port, cert_name="client", extra=(), input_bytes=b"",
                 host="127.0.0.1", timeout=10.0):
        argv = ["openssl", "s_client", "-connect", "%s:%d" % (host, port),
                "-CAfile", cert("ca-bundle.crt"), "-verify_return_error",
                "-quiet", "-no_ign_eof"]
        if cert_name is not None:
            argv += ["-cert", cert(cert_name + ".crt"),
                     "-cert_chain", cert(cert_name + ".crt"),
                     "-key", cert(cert_name + ".key")]
        return self.run(argv + list(extra), input_bytes, timeout)

    def s_client_echo(self, port, data, cert_name="client", extra=(),
                      host="127.0.0.1", timeout=10.0):
        """
        openssl s_client kept open until `data` came back (or the
        deadline): returns (bytes read, stderr text).  s_client is
        stopped by its PID.
        """
        argv = ["openssl", "s_client", "-connect", "%s:%d" % (host, port),
                "-CAfile", cert("ca-bundle.crt"), "-verify_return_error",
                "-quiet", "-ign_eof", "-cert", cert(cert_name + ".crt"),
                "-cert_chain", cert(cert_name + ".crt"),
                "-key", cert(cert_name + ".key")] + list(extra)
        errf = open(self.path("s_client.err"), "wb")
        p = subprocess.Popen(argv, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=errf,
                             cwd=self.dir)
        got = b""
        try:
            p.stdin.write(data)
            p.stdin.flush()
            deadline = time.monotonic() + timeout
            while data not in got and time.monotonic() < deadline:
                r, _, _ = select.select([p.stdout], [], [], 0.2)
                if r:
                    b = os.read(p.stdout.fileno(), 65536)
                    if not b:
                        break
                    got += b
        finally:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
            p.stdin.close()
            p.stdout.close()
            errf.close()
        with open(self.path("s_client.err"), "rb") as f:
            err = f.read().decode("utf-8", "replace")
        return got, err

    def s_client_script(self, port, lines, extra=(), cert_name="client",
                        pause=0.4, host="127.0.0.1"):
        """
        openssl s_client with its command letters on (Q, R, K, k): feeds
        `lines` one by one, `pause` seconds apart; returns (stdout,
        stderr) once it ended or was stopped (by its PID).
        """
        argv = ["openssl", "s_client", "-connect", "%s:%d" % (host, port),
                "-CAfile", cert("ca-bundle.crt"), "-quiet", "-no_ign_eof",
                "-cert", cert(cert_name + ".crt"),
                "-cert_chain", cert(cert_name + ".crt"),
                "-key", cert(cert_name + ".key")] + list(extra)
        outp, errp = self.path("sc.out"), self.path("sc.err")
        with open(outp, "wb") as fo, open(errp, "wb") as fe:
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=fo,
                                 stderr=fe, cwd=self.dir)
            try:
                for l in lines:
                    time.sleep(pause)
                    if p.poll() is not None:
                        break
                    try:
                        p.stdin.write(l)
                        p.stdin.flush()
                    except BrokenPipeError:
                        break
                time.sleep(pause)
            finally:
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait(timeout=5)
                try:
                    p.stdin.close()
                except OSError:
                    pass
        with open(outp, "rb") as f:
            out = f.read()
        with open(errp, "rb") as f:
            err = f.read().decode("utf-8", "replace")
        return out, err

    def curl(self, url, cert_name="client", extra=(), timeout=15.0):
        argv = ["curl", "-sS", "--max-time", str(int(timeout) - 2),
                "-o", "-", "-w", "\nHTTP %{http_code}\n",
                "--cacert", cert("ca-bundle.crt")]
        if cert_name is not None:
            argv += ["--cert", cert(cert_name + ".crt"),
                     "--key", cert(cert_name + ".key")]
        return self.run(argv + list(extra) + [url], timeout=timeout)

    # -- after the test
    def all_logs(self):
        out = []
        for m in self.procs:
            out.append(("mtlsd pid %d (%s)" % (m.pid, " ".join(m.argv[1:])),
                        m.log()))
        out.extend(self.outputs)
        return out

    def sanitizer_problems(self):
        bad = []
        for label, text in self.all_logs():
            for marker in SANITIZER_MARKERS:
                if marker in text:
                    bad.append("sanitizer: %s: %s" % (label, marker))
        return bad

    def close(self):
        """Stops everything; returns problems seen while stopping mtlsd."""
        problems = []
        for m in self.procs:
            try:
                rc = m.stop(timeout=10)
            except Exception as e:
                problems.append("mtlsd pid %d: cannot stop: %r" % (m.pid, e))
                continue
            if m.killed:
                problems.append("mtlsd pid %d ignored SIGTERM for 10 s "
                                "(killed)" % m.pid)
            elif rc is not None and rc < 0:
                problems.append("mtlsd pid %d died of signal %d"
                                % (m.pid, -rc))
        for s in self.servers:
            try:
                s.close()
            except Exception:
                pass
        for s in self._held:
            try:
                s.close()
            except OSError:
                pass
        return problems

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------ shared test building

def inbound_route(name, listen, target, allow, **extra):
    r = {"name": name, "listen": listen, "target": target, "allow": allow}
    r.update(extra)
    return r


def outbound_route(name, listen, target, allow, **extra):
    r = {"name": name, "listen": listen, "target": target, "allow": allow}
    r.update(extra)
    return r


def start_inbound(env, allow=None, target=None, tls=None, limits=None,
                  log=None, workers=1, listen=None, **route_extra):
    """One inbound route "api" on a fresh port: (mtlsd, port)."""
    port = env.port()
    if allow is None:
        allow = {"uri": [WEB_URI]}
    conf = env.config(
        inbound=[inbound_route("api", listen or "127.0.0.1:%d" % port,
                               target, allow, **route_extra)],
        tls=tls, limits=limits, log=log, workers=workers)
    return env.start_mtlsd(conf), port


def assert_echo(port, cert_name="client", data=None, host="127.0.0.1", **kw):
    data = data or b"hello mtlsd %d\n" % port
    c, r = tls_echo(port, data, host=host, cert_name=cert_name, **kw)
    check(r.error is None and r.data == data,
          "echo through mtlsd failed for %s: got %r, %r"
          % (cert_name, r.data[:80], r))
    return c, r


def assert_rejected(m, port, cert_name, recorder, stage, words,
                    identities=(), fingerprint_of=None, route="api",
                    host="127.0.0.1", **kw):
    """
    A refused peer: the client gets no byte back, the target sees no
    connection, and mtlsd writes one reject line that explains it.
    Returns that line.
    """
    lport, outcome, data = try_client(port, cert_name, host=host, **kw)
    check(data == b"", "rejected peer %s got bytes back: %r"
          % (cert_name, data[:80]))
    check(outcome != "open", "rejected peer %s: connection stayed open"
          % cert_name)
    peer = ":%d" % lport
    lines = m.wait_log(r"reject.*%s\b|%s\b.*reject" % (re.escape(peer),
                                                      re.escape(peer)))
    check(len(lines) == 1, "expected one reject line for %s, got %d:\n%s"
          % (peer, len(lines), "\n".join(lines)))
    line = lines[0]
    d = parse_line(line)
    low = line.lower()
    check(route in line, "reject line does not name route %r: %s"
          % (route, line))
    check(str(d.get("peer", line)).endswith(peer),
          "reject line does not name the peer %s: %s" % (peer, line))
    if "stage" in d:
        check(d["stage"] == stage, "reject line names stage %r, not %r: %s"
              % (d["stage"], stage, line))
    else:
        check(re.search(r"stage\W{0,3}%s" % stage, low),
              "reject line does not name stage %r: %s" % (stage, line))
    for w in words:
        check(w.lower() in low, "reject line lacks %r: %s" % (w, line))
    for i in identities:
        check(i in line, "reject line lacks identity %r: %s" % (i, line))
    if fingerprint_of is not None:
        fp = leaf_sha256(fingerprint_of)
        flat = low.replace(":", "")
        check(fp in flat, "reject line lacks sha256 %s: %s" % (fp, line))
    # The target: give a stray connection time to show up.
    if recorder is not None:
        time.sleep(0.2)
        check(recorder.connections == 0,
              "the target saw %d connection(s) from a rejected peer"
              % recorder.connections)
    return line


def start_chain(env, target, out_allow=None, server_name="api.example.org",
                out_listen=None, in_allow=None, out_tls=None, in_tls=None,
                limits=None):
    """
    An outbound mtlsd whose target is an inbound mtlsd whose target is
    `target`: plaintext -> outbound -> mTLS -> inbound -> plaintext.
    Returns (inbound mtlsd, outbound mtlsd, address for the client).
    """
    mi, in_port = start_inbound(env, allow=in_allow, target=target,
                                tls=in_tls, limits=limits)
    if out_listen is None:
        out_port = env.port()
        out_listen = "127.0.0.1:%d" % out_port
        client_addr = ("127.0.0.1", out_port)
    else:
        client_addr = out_listen
    route = outbound_route("db", out_listen, "127.0.0.1:%d" % in_port,
                           out_allow or {"uri": [API_URI]})
    if server_name is not None:
        route["server_name"] = server_name
    conf = env.config(outbound=[route], tls=out_tls or client_tls(),
                      limits=limits)
    mo = env.start_mtlsd(conf)
    return mi, mo, client_addr


# ------------------------------------------------------ admin endpoint

def http_get(port, path, host="127.0.0.1", timeout=5.0):
    """(status, body text) of GET http://host:port/path."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen("http://%s:%d%s" % (host, port, path),
                                    timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


_METRIC = re.compile(r'^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text: {(name, (("k","v"),...)): float}."""
    out = {}
    for l in text.splitlines():
        if not l or l.startswith("#"):
            continue
        m = _METRIC.match(l.strip())
        if not m:
            raise AssertionError("not a Prometheus sample line: %r" % l)
        labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def peer_fingerprint(port, host="127.0.0.1"):
    """SHA-256 of the certificate the server on port presents."""
    c = TlsConn.connect(host, port, check_hostname=False)
    try:
        der = c.obj.getpeercert(binary_form=True)
    finally:
        c.close()
    return hashlib.sha256(der).hexdigest()
