"""
Operations: what an operator leans on while mtlsd runs.

Certificate rotation under load (20 SIGHUPs under one open stream),
broken reloads and their repair, Kubernetes symlink swaps picked up by
reload_interval (and a key that arrives before its certificate), the
drain on SIGTERM with a large transfer in flight, /metrics through a
strict Prometheus parser, the PROXY v2 header as the example backend
(tests/tools/pp2_backend.c) reads it, and JSON logs line by line.

test_reload.py, test_admin.py, test_proxy_protocol.py and
test_lifecycle.py prove the single steps; these tests chain them the way
production does.
"""
import hashlib
import importlib
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import harness
from harness import (INTRUDER_URI, Skip, TlsConn, WEB_URI, assert_echo,
                     cert, check, client_context, http_get, inbound_route,
                     leaf_sha256, metric, parse_line, parse_metrics,
                     peer_fingerprint, server_tls, try_client)

API_URI = harness.API_URI


# ------------------------------------------- a strict Prometheus parser

def _load_prometheus_parser():
    """
    (text_string_to_metric_families, None), or (None, why not).  Debian's
    python3-prometheus-client is installed once, bounded in time, when it
    is missing and we may (root, apt-get present).
    """
    def try_import():
        importlib.invalidate_caches()
        try:
            from prometheus_client.parser import \
                text_string_to_metric_families
            return text_string_to_metric_families
        except ImportError:
            pass
        # Another interpreter than Debian's (pyenv, venv): the package is
        # pure Python, take it from Debian's directory, last in the path.
        deb = "/usr/lib/python3/dist-packages"
        if not os.path.isdir(os.path.join(deb, "prometheus_client")) or \
                deb in sys.path:
            return None
        sys.path.append(deb)
        try:
            from prometheus_client.parser import \
                text_string_to_metric_families
            return text_string_to_metric_families
        except ImportError:
            return None
        finally:
            sys.path.remove(deb)

    fn = try_import()
    if fn is not None:
        return fn, None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None, ("prometheus_client is not installed and cannot be "
                      "(apt-get install python3-prometheus-client)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends",
               "-o", "DPkg::Lock::Timeout=30", "python3-prometheus-client"]
    why = "apt-get install python3-prometheus-client failed"
    for attempt in (install, ["apt-get", "update", "-q"], install):
        try:
            p = subprocess.run(attempt, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=120, env=env)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, "%s: %r" % (why, e)
        if attempt is install and p.returncode == 0:
            fn = try_import()
            if fn is not None:
                return fn, None
            return None, ("python3-prometheus-client installed, but this "
                          "python cannot import it")
        if attempt is install:
            tail = p.stderr.decode("utf-8", "replace").strip()
            why = "%s (exit %d): %s" % (why, p.returncode,
                                        tail.splitlines()[-1] if tail
                                        else "")
    return None, why


PROM_PARSE, PROM_MISSING = _load_prometheus_parser()


# --------------------------------------------------------------- helpers

def norm_fp(s):
    return str(s).replace(":", "").lower()


def der_sha256(pem):
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                  pem, re.S)
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(m.group(0))).hexdigest()


def make_leaf(env, name, sans, cn="api-rotated", days=30):
    """
    A fresh ECDSA leaf signed by the demo intermediate, with the
    openssl command line.  Returns (cert chain PEM bytes: leaf then
    int.crt, key PEM bytes, sha256 of the leaf).
    """
    d = env.path("gen-" + name)
    os.mkdir(d)
    cnf = os.path.join(d, "req.cnf")
    with open(cnf, "w") as f:
        f.write("[req]\ndistinguished_name = dn\nprompt = no\n"
                "[dn]\nCN = %s\n"
                "[ext]\nbasicConstraints = critical,CA:FALSE\n"
                "keyUsage = critical,digitalSignature\n"
                "extendedKeyUsage = serverAuth,clientAuth\n"
                "subjectAltName = %s\n"
                "subjectKeyIdentifier = hash\n"
                "authorityKeyIdentifier = keyid\n" % (cn, sans))
    crt, key = os.path.join(d, "leaf.crt"), os.path.join(d, "leaf.key")
    rc, out, err = env.run(
        ["openssl", "req", "-x509", "-new", "-config", cnf,
         "-extensions", "ext", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", crt, "-days", str(days),
         "-CA", cert("int.crt"), "-CAkey", cert("int.key")], timeout=15)
    check(rc == 0, "openssl could not make a leaf: %s"
          % err.decode("utf-8", "replace"))
    with open(crt) as f:
        leaf = f.read()
    with open(cert("int.crt")) as f:
        chain = leaf + f.read()
    with open(key, "rb") as f:
        keyb = f.read()
    return chain.encode(), keyb, der_sha256(leaf)


def put_file(path, data):
    """Writes data to a temp name beside path, then renames it in place."""
    tmp = os.path.join(os.path.dirname(path),
                       ".tmp-" + os.path.basename(path))
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)	# read by mtlsd after its privilege drop
    os.rename(tmp, path)


def write_in_place(path, data):
    """Rewrites the file path points to (symlinks followed) in place."""
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(data)


def read(name):
    with open(cert(name), "rb") as f:
        return f.read()


def get_status(admin):
    code, body = http_get(admin, "/status")
    check(code == 200, "/status: %s %r" % (code, body[:200]))
    return json.loads(body)


def get_metrics(admin):
    code, body = http_get(admin, "/metrics")
    check(code == 200, "/metrics: %s %r" % (code, body[:200]))
    return parse_metrics(body)


def wait_for(fn, timeout=5.0, interval=0.05):
    """Calls fn until it returns something true, or the deadline; returns
    its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def wait_fingerprint(port, want, timeout=5.0):
    return wait_for(lambda: peer_fingerprint(port) == want and want,
                    timeout, 0.1) or peer_fingerprint(port)


def route_status(admin):
    routes = get_status(admin).get("routes", [])
    check(len(routes) == 1, "/status routes: %r" % routes)
    return routes[0]


def start_route(env, target, tls, admin=True, limits=None, log=None,
                **route_extra):
    """One inbound route "api" (allow web) and an admin endpoint:
    (mtlsd, port, admin port, config path)."""
    port = env.port()
    adm = env.port() if admin else None
    extra = {"admin": {"listen": "127.0.0.1:%d" % adm}} if admin else None
    conf = env.config(inbound=[inbound_route(
        "api", "127.0.0.1:%d" % port, target, {"uri": [WEB_URI]},
        **route_extra)], tls=tls, limits=limits, log=log, extra=extra)
    return env.start_mtlsd(conf), port, adm, conf


def conn_line(m, lport, timeout=5.0):
    """The one log line about the client whose local port is lport."""
    lines = m.wait_log(r":%d\b" % lport, timeout=timeout)
    check(len(lines) == 1, "expected one log line for peer :%d, got %d:\n%s"
          % (lport, len(lines), "\n".join(lines)))
    return lines[0]


class Streamer(threading.Thread):
    """
    Pushes 64 KiB chunks through an echo route on one TLS connection and
    checks every echo as it comes back, until stopped; then ends its side
    and reads to EOF.
    """

    def __init__(self, conn, chunk=65536):
        super().__init__(daemon=True)
        self.conn = conn
        self.chunk = chunk
        self.stop = threading.Event()
        self.chunks = 0
        self.total = 0
        self.sent = hashlib.sha256()
        self.got = hashlib.sha256()
        self.error = None
        self.final = None

    def run(self):
        try:
            while not self.stop.is_set():
                data = os.urandom(self.chunk)
                r = self.conn.exchange(data, half_close=False,
                                       expect=len(data), timeout=10)
                if r.error is not None or r.data != data:
                    self.error = ("chunk %d: the echo differs or failed "
                                  "(%d of %d bytes): %r"
                                  % (self.chunks, len(r.data), len(data), r))
                    return
                self.sent.update(data)
                self.got.update(r.data)
                self.total += len(data)
                self.chunks += 1
            self.final = self.conn.exchange(b"", half_close=True, timeout=10)
        except Exception as e:  # reported by the test
            self.error = "stream: %r" % (e,)


# --------------------------------------------- rotation under an open stream

def test_rotation_20_sighups_under_open_stream(env):
    sans = "URI:%s,DNS:localhost" % API_URI
    leaves = [make_leaf(env, "s%d" % i, sans) for i in range(3)]
    check(len({l[2] for l in leaves}) == 3, "openssl made equal leaves")
    put_file(env.path("svc.key"), leaves[0][1])
    put_file(env.path("svc.crt"), leaves[0][0])
    echo = env.echo()
    m, port, admin, conf = start_route(env, echo.addr, server_tls(
        cert=env.path("svc.crt"), key=env.path("svc.key")))
    check(peer_fingerprint(port) == leaves[0][2],
          "the generated certificate is not served at start")

    c = TlsConn.connect("127.0.0.1", port, server_hostname="localhost")
    lport = c.local_port()
    st = Streamer(c)
    st.start()
    try:
        check(wait_for(lambda: st.chunks >= 2 or st.error, 10) and
              st.error is None, "the stream does not flow: %s" % st.error)
        for i in range(20):
            crt, key, sha = leaves[(i + 1) % len(leaves)]
            # cert-manager's order: each file renamed into place, key first.
            put_file(env.path("svc.key"), key)
            put_file(env.path("svc.crt"), crt)
            before = st.chunks
            m.signal(signal.SIGHUP)
            m.wait_log(r"generation %d in service" % (i + 2), timeout=5)
            got = peer_fingerprint(port)
            check(got == sha, "reload %d: a new client sees %s, not the "
                  "certificate just installed (%s)" % (i + 1, got[:16],
                                                      sha[:16]))
            check(wait_for(lambda: st.chunks > before or st.error or
                           not st.is_alive(), 10) and st.error is None
                  and st.is_alive(), "reload %d: the open stream stopped "
                  "flowing (%d chunks; %s)" % (i + 1, st.chunks, st.error))
    finally:
        st.stop.set()
        st.join(20)
        c.close()
    check(not st.is_alive(), "the stream did not end")
    check(st.error is None, st.error or "")
    check(st.final is not None and st.final.error is None and
          st.final.eof and st.final.data == b"",
          "the stream did not end cleanly: %r" % st.final)
    check(st.sent.hexdigest() == st.got.hexdigest(),
          "the stream is not byte-exact")
    check(st.chunks > 20, "only %d chunks moved during 20 reloads"
          % st.chunks)
    # One connection all along: mtlsd logs it once, with every byte.
    d = parse_line(conn_line(m, lport))
    check(d.get("result") == "ok", "the stream's connection: %r" % d)
    check(int(d.get("bytes_in", -1)) == st.total and
          int(d.get("bytes_out", -1)) == st.total,
          "the stream's connection carried %s/%s bytes, the client moved "
          "%d each way" % (d.get("bytes_in"), d.get("bytes_out"), st.total))
    echoed = wait_for(lambda: [r["echoed"] for r in echo.results
                               if r.get("echoed") == st.total])
    check(echoed, "no single backend connection echoed all %d "
          "bytes: %r" % (st.total, [r.get("echoed") for r in echo.results]))
    # New clients, and /status, see the last certificate.
    last = leaves[20 % len(leaves)][2]
    ctx = client_context(check_hostname=True)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            seen = hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest()
    rs = route_status(admin)
    check(seen == last, "a new client sees %s, not the last certificate %s"
          % (seen[:16], last[:16]))
    check(norm_fp(rs["certificate"]["sha256"]) == seen,
          "/status says %s, clients see %s" % (rs["certificate"]["sha256"],
                                              seen))
    check(get_status(admin).get("generation") == 21,
          "/status generation %r after 20 reloads, not 21"
          % get_status(admin).get("generation"))
    s = get_metrics(admin)
    check(metric(s, "mtlsd_reloads_total", result="ok") == 20 and
          metric(s, "mtlsd_reloads_total", result="failed") == 0,
          "reload counters: ok %r, failed %r"
          % (metric(s, "mtlsd_reloads_total", result="ok"),
             metric(s, "mtlsd_reloads_total", result="failed")))


# ------------------------------------------------- broken reloads, repaired

def test_broken_reloads_keep_old_material_then_recover(env):
    shutil.copy(cert("server.crt"), env.path("svc.crt"))
    shutil.copy(cert("server.key"), env.path("svc.key"))
    shutil.copy(cert("ca-bundle.crt"), env.path("ca.crt"))
    for f in ("svc.crt", "svc.key", "ca.crt"):
        os.chmod(env.path(f), 0o644)
    echo = env.echo()
    m, port, admin, conf = start_route(env, echo.addr, server_tls(
        cert=env.path("svc.crt"), key=env.path("svc.key"),
        ca=env.path("ca.crt")))
    good = leaf_sha256("server")
    st = get_status(admin)
    check(st["reload"]["result"] != "failed" and st["generation"] == 1,
          "/status before any reload: %r" % st["reload"])

    def garbage_key():
        put_file(env.path("svc.key"), b"-----BEGIN PRIVATE KEY-----\n"
                 b"bm90IGEga2V5IGF0IGFsbA==\n-----END PRIVATE KEY-----\n")

    def wrong_key():
        put_file(env.path("svc.key"), read("client.key"))

    def no_ca():
        os.remove(env.path("ca.crt"))

    def fix():
        put_file(env.path("svc.key"), read("server.key"))
        put_file(env.path("ca.crt"), read("ca-bundle.crt"))

    cases = [
        ("garbage key", garbage_key,
         r"cannot load key \S*svc\.key"),
        ("key of another certificate", wrong_key,
         r"key \S*svc\.key: key values mismatch|key \S*svc\.key does "
         r"not match"),
        ("CA file missing", no_ca,
         r"cannot read CA \S*ca\.crt: No such file"),
    ]
    gen = 1
    for k, (what, breakit, error_rx) in enumerate(cases, 1):
        breakit()
        m.signal(signal.SIGHUP)
        line = m.wait_log(r"reload \(SIGHUP\) failed", count=k)[-1]
        check(re.search(error_rx, line), "%s: the log line does not say "
              "why: %s" % (what, line))
        st = get_status(admin)
        check(st["reload"]["result"] == "failed", "%s: /status reload %r"
              % (what, st["reload"]))
        check(re.search(error_rx, st["reload"].get("error") or ""),
              "%s: /status reload.error %r does not match %r"
              % (what, st["reload"].get("error"), error_rx))
        check(st["generation"] == gen, "%s: generation %r, still %d "
              "expected" % (what, st["generation"], gen))
        s = get_metrics(admin)
        check(metric(s, "mtlsd_reloads_total", result="failed") == k,
              "%s: mtlsd_reloads_total{result=failed} is %r, not %d"
              % (what, metric(s, "mtlsd_reloads_total", result="failed"),
                 k))
        check(m.alive(), "%s: mtlsd died" % what)
        check(peer_fingerprint(port) == good, "%s: the old certificate "
              "is no longer served" % what)
        check(norm_fp(st["routes"][0]["certificate"]["sha256"]) == good,
              "%s: /status shows another certificate" % what)
        assert_echo(port, "client", data=b"still served after %s\n"
                    % what.encode())
        fix()
        m.signal(signal.SIGHUP)
        gen += 1
        m.wait_log(r"reload \(SIGHUP\): generation %d in service" % gen)
        st = get_status(admin)
        check(st["reload"]["result"] == "ok" and
              st["reload"].get("error") is None,
              "after fixing the %s: /status reload %r" % (what, st["reload"]))
        check(st["generation"] == gen, "after fixing the %s: generation "
              "%r, not %d" % (what, st["generation"], gen))
        s = get_metrics(admin)
        check(metric(s, "mtlsd_reloads_total", result="ok") == k,
              "mtlsd_reloads_total{result=ok} is %r, not %d"
              % (metric(s, "mtlsd_reloads_total", result="ok"), k))
        assert_echo(port, "client")


# ----------------------------------------- Kubernetes secret volume rotation

def k8s_install(vol, version, crt, key):
    d = os.path.join(vol, "..2026_%s" % version)
    os.mkdir(d)
    for name, data in (("tls.key", key), ("tls.crt", crt)):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        os.chmod(os.path.join(d, name), 0o644)
    return os.path.basename(d)


def k8s_swap(vol, target):
    tmp = os.path.join(vol, "..data_tmp")
    os.symlink(target, tmp)
    os.rename(tmp, os.path.join(vol, "..data"))


def test_reload_interval_k8s_swap_and_key_before_cert(env):
    vol = env.path("secret")
    os.mkdir(vol)
    os.chmod(vol, 0o755)
    first = k8s_install(vol, "x", read("server.crt"), read("server.key"))
    os.symlink(first, os.path.join(vol, "..data"))
    for f in ("tls.crt", "tls.key"):
        os.symlink(os.path.join("..data", f), os.path.join(vol, f))
    echo = env.echo()
    m, port, admin, conf = start_route(env, echo.addr, server_tls(
        cert=os.path.join(vol, "tls.crt"), key=os.path.join(vol, "tls.key"),
        reload_interval=0.5))
    check(peer_fingerprint(port) == leaf_sha256("server"), "first cert")

    # The atomic ..data swap, and no signal.
    k8s_swap(vol, k8s_install(vol, "y", read("other.crt"),
                              read("other.key")))
    t0 = time.monotonic()
    got = wait_fingerprint(port, leaf_sha256("other"), timeout=6)
    took = time.monotonic() - t0
    check(got == leaf_sha256("other"), "the ..data swap was not picked up "
          "within 6 s")
    check(took < 4.0, "the ..data swap took %.1f s to be picked up "
          "(reload_interval 0.5)" % took)
    check("SIGHUP" not in m.log(), "something sent SIGHUP")
    check(norm_fp(route_status(admin)["certificate"]["sha256"]) ==
          leaf_sha256("other"), "/status does not show the swapped cert")
    gen = get_status(admin)["generation"]

    # Now the key alone changes (in place, through the symlinks).
    write_in_place(os.path.join(vol, "tls.key"), read("client.key"))
    time.sleep(1.5)		# 3 intervals
    check(m.alive(), "mtlsd died when the key came before its certificate")
    check(peer_fingerprint(port) == leaf_sha256("other"),
          "the old certificate is no longer served after a lone key change")
    assert_echo(port, "client", data=b"fine half-way through\n",
                check_hostname=False)
    st = get_status(admin)
    check(st["generation"] == gen and
          norm_fp(st["routes"][0]["certificate"]["sha256"]) ==
          leaf_sha256("other"), "a key without its certificate was "
          "swapped in: generation %r (was %r)" % (st["generation"], gen))
    # Its certificate arrives: the pair goes in.
    write_in_place(os.path.join(vol, "tls.crt"), read("client.crt"))
    got = wait_fingerprint(port, leaf_sha256("client"), timeout=6)
    check(got == leaf_sha256("client"), "the matching certificate, "
          "written after its key, was not picked up within 6 s")
    st = get_status(admin)
    check(st["generation"] > gen and st["reload"]["result"] == "ok",
          "/status after the pair was complete: %r" % st["reload"])
    assert_echo(port, "client", check_hostname=False)


# ---------------------------------------------------------- SIGTERM drain

def test_sigterm_drain_finishes_5mb_transfer(env):
    size = 5 * 1024 * 1024
    data = os.urandom(size)
    want = hashlib.sha256(data).hexdigest()
    backend = env.send_then_read(data)
    drain = 10.0
    m, port, admin, conf = start_route(env, backend.addr, None,
                                       limits={"drain_timeout": drain})
    check(http_get(admin, "/healthz") == (200, "ok\n"),
          "/healthz before SIGTERM: %r" % (http_get(admin, "/healthz"),))
    ctx = client_context()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    lport = s.getsockname()[1]
    t = ctx.wrap_socket(s, server_hostname="localhost")
    h = hashlib.sha256()
    got = 0
    health = []
    try:
        while got < 256 * 1024:
            b = t.recv(65536)
            check(b, "EOF after %d bytes, before SIGTERM" % got)
            h.update(b)
            got += len(b)
        t0 = time.monotonic()
        m.signal(signal.SIGTERM)
        m.wait_log(r"draining")
        health.append((got, http_get(admin, "/healthz")))
        while True:
            b = t.recv(65536)
            if not b:
                break
            h.update(b)
            got += len(b)
            if got >= size // 2 and len(health) == 1:
                health.append((got, http_get(admin, "/healthz")))
            time.sleep(0.002)	# a slow reader
        read_done = time.monotonic()
        check(m.alive(), "mtlsd exited before the transfer was read")
        try:
            t.unwrap()
        except (ssl.SSLError, OSError):
            pass
    finally:
        t.close()
    check(got == size and h.hexdigest() == want, "the transfer in flight "
          "at SIGTERM did not arrive whole: %d of %d bytes%s"
          % (got, size, "" if got != size else " (content differs)"))
    check(read_done - t0 > 0.3, "the transfer was not in flight at SIGTERM "
          "(read in %.2f s)" % (read_done - t0))
    for at, (code, body) in health:
        check(code == 503 and "draining" in body, "/healthz during the "
              "drain (%d bytes read): %s %r" % (at, code, body))
    rc = m.wait_exit(drain + 2)
    took = time.monotonic() - t0
    check(rc == 0, "exit status %r after the drain" % rc)
    check(took < drain, "exit %.1f s after SIGTERM: not within "
          "drain_timeout %.0f s" % (took, drain))
    check(time.monotonic() - read_done < 3.0, "mtlsd waited %.1f s after "
          "its last connection closed" % (time.monotonic() - read_done))
    d = parse_line(conn_line(m, lport))
    check(d.get("result") == "ok" and int(d.get("bytes_out", -1)) == size,
          "the drained connection's log line: %r" % d)


# ----------------------------------------------------------------- metrics

CONTRACT_TYPES = {
    # family name as the parser reports it: counters lose "_total"
    "mtlsd_connections": "counter",
    "mtlsd_connections_active": "gauge",
    "mtlsd_bytes": "counter",
    "mtlsd_handshake_seconds": "histogram",
    "mtlsd_cert_expiry_timestamp_seconds": "gauge",
    "mtlsd_reloads": "counter",
    "mtlsd_rejections": "counter",
}


def strict_metrics(admin):
    """Parses /metrics with prometheus_client; {(name, labels): value}
    and {family: type}.  Duplicate samples are an error too."""
    code, text = http_get(admin, "/metrics")
    check(code == 200, "/metrics: %s" % code)
    try:
        fams = list(PROM_PARSE(text))
    except Exception as e:
        raise AssertionError("/metrics is not valid Prometheus text: %r\n%s"
                             % (e, text))
    samples, types = {}, {}
    for f in fams:
        check(f.name not in types, "metric family %s appears twice"
              % f.name)
        types[f.name] = f.type
        check(f.type != "unknown" or not f.samples, "samples %s have no "
              "# TYPE (or one that names another family)"
              % sorted({x.name for x in f.samples}))
        for s in f.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            check(key not in samples, "duplicate sample %r" % (key,))
            samples[key] = s.value
    return samples, types, text


def check_histogram(samples, name):
    buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in
                      samples.items() if k[0] == name + "_bucket"),
                     key=lambda x: x[0])
    check(buckets and buckets[-1][0] == float("inf"),
          "%s: no +Inf bucket: %r" % (name, buckets))
    check(len(buckets) >= 2, "%s: only %d bucket(s)" % (name, len(buckets)))
    for (a, va), (b, vb) in zip(buckets, buckets[1:]):
        check(vb >= va, "%s: bucket le=%g (%g) below le=%g (%g)"
              % (name, b, vb, a, va))
    count = samples.get((name + "_count", ()))
    total = samples.get((name + "_sum", ()))
    check(count is not None and total is not None,
          "%s: _count or _sum missing" % name)
    check(buckets[-1][1] == count, "%s: +Inf bucket %g, _count %g"
          % (name, buckets[-1][1], count))
    check(total >= 0, "%s_sum is negative" % name)
    return count, total


def test_metrics_strict_parse_and_counters(env):
    if PROM_PARSE is None:
        raise Skip(PROM_MISSING)
    echo = env.echo()
    m, port, admin, conf = start_route(env, echo.addr, server_tls(
        crl=cert("crl.pem")), limits={"max_connections": 1})
    s0, types, text = strict_metrics(admin)
    for fam, typ in CONTRACT_TYPES.items():
        check(types.get(fam) == typ, "%s: TYPE %r, not %s"
              % (fam, types.get(fam), typ))
    for result in ("ok", "failed"):
        check(metric(s0, "mtlsd_reloads_total", result=result) == 0,
              "mtlsd_reloads_total{result=%s} is not 0 at start" % result)
    check(metric(s0, "mtlsd_cert_expiry_timestamp_seconds", route="api")
          > time.time(), "mtlsd_cert_expiry_timestamp_seconds is not in "
          "the future")
    check(check_histogram(s0, "mtlsd_handshake_seconds")[0] == 0,
          "handshakes counted before any client")

    def settled():
        s = get_metrics(admin)
        return metric(s, "mtlsd_connections_active", route="api") == 0

    # One of each refusal, one after the other (max_connections 1).
    for name in ("other", "expired", "untrusted", None, "revoked"):
        lport, outcome, got = try_client(port, name)
        check(got == b"", "%s was served" % name)
        check(wait_for(settled), "%s: the connection stays active" % name)
    # One client served, and one over the limit while it is open.
    data = os.urandom(100000)
    held = TlsConn.connect("127.0.0.1", port)
    try:
        r = held.exchange(data, half_close=False, expect=len(data),
                          timeout=10)
        check(r.data == data, "the accepted client: %r" % r)
        mid = get_metrics(admin)
        check(metric(mid, "mtlsd_connections_active", route="api") == 1,
              "mtlsd_connections_active is %r with one client open"
              % metric(mid, "mtlsd_connections_active", route="api"))
        lport, outcome, got = try_client(port, "client")
        check(got == b"", "a client over max_connections was served")
        r = held.exchange(b"", half_close=True, timeout=10)
        check(r.error is None and r.eof, "the accepted client's end: %r"
              % r)
    finally:
        held.close()
    check(wait_for(lambda: settled() and metric(
        get_metrics(admin), "mtlsd_connections_total", route="api",
        result="ok") == 1), "the accepted client was not counted")
    s1, types, text = strict_metrics(admin)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return s1.get(key, float("nan")) - s0.get(key, 0.0)

    want_conns = {"ok": 1, "identity_rejected": 1, "handshake_failed": 4,
                  "limit": 1, "target_failed": 0, "timeout": 0}
    for result, n in want_conns.items():
        check(delta("mtlsd_connections_total", route="api", result=result)
              == n, "mtlsd_connections_total{result=%s} moved by %r, not %d"
              % (result, delta("mtlsd_connections_total", route="api",
                               result=result), n))
    want_rej = {"identity": 1, "expired": 1, "untrusted": 1,
                "no_certificate": 1, "revoked": 1, "not_yet_valid": 0,
                "crl_stale": 0, "protocol": 0, "other": 0}
    for reason, n in want_rej.items():
        check(delta("mtlsd_rejections_total", route="api", reason=reason)
              == n, "mtlsd_rejections_total{reason=%s} moved by %r, not %d"
              % (reason, delta("mtlsd_rejections_total", route="api",
                               reason=reason), n))
    for direction in ("in", "out"):
        check(delta("mtlsd_bytes_total", route="api", direction=direction)
              == len(data), "mtlsd_bytes_total{direction=%s} moved by %r, "
              "not %d" % (direction, delta("mtlsd_bytes_total", route="api",
                                           direction=direction), len(data)))
    check(metric(s1, "mtlsd_connections_active", route="api") == 0,
          "mtlsd_connections_active is not back to 0")
    count, total = check_histogram(s1, "mtlsd_handshake_seconds")
    check(count == 1, "mtlsd_handshake_seconds_count is %r: one handshake "
          "completed (the refused peers never finished theirs)" % count)
    check(0 < total < 5, "mtlsd_handshake_seconds_sum %r for one local "
          "handshake" % total)
    for result in ("ok", "failed"):
        check(metric(s1, "mtlsd_reloads_total", result=result) == 0,
              "mtlsd_reloads_total{result=%s} moved without a reload"
              % result)


# ------------------------------------------- PROXY v2 to the example backend

class Pp2Backend:
    """tests/tools/pp2_backend as a process, stopped by its PID."""

    def __init__(self, env):
        self.errpath = env.path("pp2_backend.err")
        self._err = open(self.errpath, "wb")
        self.proc = subprocess.Popen([harness.tool_binary("pp2_backend"), "0"],
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=self._err)
        env.servers.append(self)	# Env.close() stops it
        line = b""
        deadline = time.monotonic() + 5
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                b = os.read(self.proc.stdout.fileno(), 256)
                if not b:
                    break
                line += b
        mo = re.search(rb"listening on (127\.0\.0\.1:(\d+))", line)
        check(mo, "pp2_backend did not say where it listens: %r" % line)
        self.addr = mo.group(1).decode()

    def close(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc.stdout.close()
        self._err.close()


def pp2_exchange(port, data, **kw):
    """A client through mtlsd to pp2_backend: (header dict, echo, conn)."""
    c = TlsConn.connect("127.0.0.1", port, **kw)
    c.lport = c.local_port()
    try:
        r = c.exchange(data, half_close=True, timeout=10)
    finally:
        c.close()
    check(r.error is None, "the client's exchange failed: %r" % r)
    head, nl, rest = r.data.partition(b"\n")
    check(nl, "no header line from pp2_backend: %r" % r.data[:200])
    d = json.loads(head)
    check("error" not in d, "pp2_backend rejected the header: %r" % d)
    return d, rest, c


def test_proxy_v2_example_backend_reads_identity(env):
    be = Pp2Backend(env)
    m, port, admin, conf = start_route(env, be.addr, None,
                                       proxy_protocol=True)
    for version, label in ((None, "TLSv1.3"),
                           (ssl.TLSVersion.TLSv1_2, "TLSv1.2")):
        data = os.urandom(200000)
        d, echo, c = pp2_exchange(port, data,
                                  server_hostname="api.example.org",
                                  max_version=version)
        cipher = c.obj.cipher()[0]
        check(c.version() == label, "the client negotiated %s, not %s"
              % (c.version(), label))
        want = {
            "src": "127.0.0.1:%d" % c.lport,
            "dst": "127.0.0.1:%d" % port,
            "identity": WEB_URI,
            "route": "api",
            "sha256": leaf_sha256("client"),
            "cn": "web",
            "version": label,
            "cipher": cipher,
            "authority": "api.example.org",
            "alpn": None,
            "verify": 0,
        }
        for k, v in want.items():
            check(d.get(k) == v, "%s: the backend read %s = %r, not %r"
                  % (label, k, d.get(k), v))
        check(isinstance(d.get("client"), int) and d["client"] & 3 == 3,
              "%s: PP2_TYPE_SSL client bits %r lack SSL|CERT_CONN"
              % (label, d.get("client")))
        check(echo == data, "%s: the data after the header came back "
              "%d bytes, %s" % (label, len(echo), "differs" if
                                len(echo) == len(data) else "short"))


# ---------------------------------------------------------------- JSON logs

def check_json_lines(m):
    """Every stderr line a JSON object with ts and level; returns them."""
    out = []
    for l in m.lines():
        try:
            o = json.loads(l)
        except ValueError:
            raise AssertionError("a stderr line is not JSON: %r" % l)
        check(isinstance(o, dict), "a JSON line is not an object: %r" % l)
        check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?"
                       r"(Z|[+-]\d\d:\d\d)$", str(o.get("ts", ""))),
              "no RFC 3339 ts: %r" % l)
        check(o.get("level") in ("error", "warn", "info", "debug"),
              "no level: %r" % l)
        out.append(o)
    return out


def test_json_logs_every_line(env):
    echo = env.echo()
    key = env.path("svc.key")
    shutil.copy(cert("server.key"), key)
    os.chmod(key, 0o644)
    m, port, admin, conf = start_route(
        env, echo.addr, server_tls(key=key, crl=cert("crl.pem")),
        limits={"max_connections": 1, "drain_timeout": 5.0},
        log={"level": "info", "format": "json"})
    refused = {}
    for name, stage, reason, ident in (
            ("other", "identity", "identity", INTRUDER_URI),
            ("expired", "chain", "expired", WEB_URI),
            ("untrusted", "chain", "untrusted", WEB_URI),
            ("revoked", "chain", "revoked", WEB_URI),
            (None, "handshake", "no_certificate", None)):
        lport, outcome, got = try_client(port, name)
        check(got == b"", "%s was served" % name)
        refused[lport] = (name, stage, reason, ident)
        conn_line(m, lport)	# one at a time: max_connections is 1
    data = b"json all the way\n" * 20
    assert_echo(port, "client", data=data)
    # A failed reload (its error holds quotes and a path), then a good one.
    with open(key, "wb") as f:
        f.write(b"not a \"key\"\n")
    m.signal(signal.SIGHUP)
    m.wait_log(r"reload \(SIGHUP\) failed")
    shutil.copy(cert("server.key"), key)
    m.signal(signal.SIGHUP)
    m.wait_log(r"generation 2 in service")
    # The limit, and a drain with a connection open.
    held = TlsConn.connect("127.0.0.1", port)
    try:
        r = held.exchange(b"x", half_close=False, expect=1, timeout=5)
        check(r.data == b"x", "no echo on the held connection: %r" % r)
        lport, outcome, got = try_client(port, "client")
        check(got == b"", "a client over the limit was served")
        m.wait_log(r"max_connections")
        m.signal(signal.SIGTERM)
        m.wait_log(r"draining")
        r = held.exchange(b"y", half_close=True, timeout=5)
        check(r.data == b"y", "the held connection during the drain: %r"
              % r)
    finally:
        held.close()
    rc = m.wait_exit(8)
    check(rc == 0, "exit %r" % rc)
    objs = check_json_lines(m)
    for lport, (name, stage, reason, ident) in refused.items():
        mine = [o for o in objs
                if str(o.get("peer", "")).endswith(":%d" % lport)]
        check(len(mine) == 1, "%s: %d lines for its peer" % (name,
                                                            len(mine)))
        o = mine[0]
        for k in ("route", "peer", "stage", "reason", "identities",
                  "sha256"):
            check(k in o, "%s: the reject line lacks %r: %r" % (name, k, o))
        check(o["stage"] == stage and o["reason"] == reason,
              "%s: stage %r reason %r, not %s/%s" % (name, o["stage"],
                                                    o["reason"], stage,
                                                    reason))
        if ident is not None:
            check(ident in str(o["identities"]), "%s: identities %r lack "
                  "%s" % (name, o["identities"], ident))
            check(norm_fp(o["sha256"]) == leaf_sha256(name),
                  "%s: sha256 %r is not the peer's" % (name, o["sha256"]))
    fails = [o for o in objs if "reload (SIGHUP) failed" in
             str(o.get("msg", ""))]
    check(len(fails) == 1 and "svc.key" in fails[0]["msg"],
          "the failed reload as JSON: %r" % fails)
    check(any("max_connections" in str(o.get("msg", "")) for o in objs),
          "no JSON line for the limit")


def test_long_identity_json_log_and_pp2(env):
    # An identity longer than a log line buffer: the JSON line must stay
    # one object (cut, not broken), and the PROXY v2 identity TLV must
    # carry it whole ("never truncated").  (Fails while log_fields() in
    # src/log.c cuts an overlong JSON line inside a string value.)
    long_uri = "spiffe://example.org/ns/prod/sa/" + "l" * 4500
    chain, key, sha = make_leaf(env, "long", "URI:%s" % long_uri, cn="long")
    put_file(env.path("long.crt"), chain)
    put_file(env.path("long.key"), key)
    be = Pp2Backend(env)
    port = env.port()
    conf = env.config(inbound=[
        inbound_route("api", "127.0.0.1:%d" % port, be.addr,
                      {"uri": ["spiffe://example.org/ns/prod/sa/*"]},
                      proxy_protocol=True)],
        log={"level": "info", "format": "json"})
    m = env.start_mtlsd(conf)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cert("ca-bundle.crt"))
    ctx.load_cert_chain(env.path("long.crt"), env.path("long.key"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        lport = s.getsockname()[1]
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            t.sendall(b"ping\n")
            buf = b""
            while b"ping\n" not in buf:
                b = t.recv(65536)
                if not b:
                    break
                buf += b
    head = json.loads(buf.partition(b"\n")[0])
    check(head.get("identity") == long_uri, "the identity TLV carries %d "
          "characters of %d" % (len(head.get("identity") or ""),
                                len(long_uri)))
    check(head.get("sha256") == sha, "the sha256 TLV: %r" % head.get("sha256"))
    line = conn_line(m, lport)
    try:
        o = json.loads(line)
    except ValueError:
        raise AssertionError("the log line of a peer with a %d-character "
                             "identity is not JSON (%d bytes, ends %r)"
                             % (len(long_uri), len(line), line[-60:]))
    check(o.get("result") == "ok", "the long identity's line: %r"
          % {k: v for k, v in o.items() if k != "identity"})
    m.stop()
    check_json_lines(m)
