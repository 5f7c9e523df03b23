#!/usr/bin/python3
"""The mtlsd benchmark: mtlsd against stunnel4, HAProxy and nginx (stream).

Run by `make bench` (see bench/README.md).  Every proxy serves the same
thing: TLS 1.3, X25519, the demo PKI's ECDSA P-256 server certificate
(leaf + intermediate), the client certificate required and verified
against the demo root, plaintext to bench/backend on 127.0.0.1.  Each
proxy gets one worker/thread and CPU 0; the load generator and the backend
share CPU 1.  The result is one markdown table of medians on stdout,
followed by the single-core ceilings, the load generator check, the
workers = 2 comparison and the targets.

Environment (all optional):
  BENCH_SECONDS=3       measured seconds per run (after BENCH_WARMUP=0.5)
  BENCH_RUNS=5          runs per scenario and proxy; the table shows medians
  BENCH_PEERS=mtlsd,stunnel,haproxy,nginx
  BENCH_SCENARIOS=handshake,resumed,throughput,rr,idle,workers,ceilings
  BENCH_IDLE_CONNS=N    idle connections (default 10000, or fewer when the
                        descriptor limit cannot give 2 per connection)
  BENCH_HS_CONNS=32  BENCH_RR_CONNS=16  BENCH_STREAM_CONNS=4
                        concurrent connections of the load generator
  BENCH_PROXY_CPU=0  BENCH_LOAD_CPU=1
  BENCH_NICE=-10        niceness of everything started (root only; 0: off)
  BENCH_NOISE_MAX=0.15  a run in which other processes took more of the
                        proxy's core than this is run again, at most twice,
  BENCH_RETRY_SECONDS=90  and only within this many seconds in all

Every process it starts is stopped by its PID at the end, whatever
happens; every wait is bounded; all traffic stays on 127.0.0.1.
"""

import argparse
import atexit
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

URI = "spiffe://example.org/ns/prod/sa/web"
PEERS = ["mtlsd", "stunnel", "haproxy", "nginx"]
LABEL = {"mtlsd": "mtlsd", "stunnel": "stunnel", "haproxy": "HAProxy",
         "nginx": "nginx", "tlsecho": "libssl echo", "tlsecho1": "libssl echo",
         "floor": "backend alone"}

# The goals of the performance issue, against the best peer measured.
TARGETS = [
    # (row key, wanted ratio vs best peer, higher is better)
    ("handshake", 1.25, True),
    ("resumed", 1.25, True),
    ("throughput", 1.15, True),
    ("rr", 1.10, True),
    ("rr_p99", 1.00, False),
    ("idle", 0.50, False),
]


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


def env_float(name, default):
    v = os.environ.get(name, "")
    return float(v) if v.strip() else default


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


# --- processes -------------------------------------------------------------

NICE = 0    # BENCH_NICE: priority of everything we start


def prefix(cpus):
    """taskset (and nice) in front of a command."""
    pre = ["nice", "-n", str(NICE)] if NICE else []
    return pre + ["taskset", "-c", cpus]


class Procs:
    """Every process we start, to stop each by its PID at the end."""

    def __init__(self):
        self.procs = []     # (Popen, extra pids to kill with it)

    def start(self, cmd, cpus, log_path=None, stdout=None, **kw):
        full = prefix(cpus) + cmd
        err = open(log_path, "ab") if log_path else subprocess.DEVNULL
        p = subprocess.Popen(full, stdout=stdout or subprocess.DEVNULL,
                             stderr=err, stdin=subprocess.DEVNULL,
                             preexec_fn=raise_nofile, **kw)
        if log_path:
            err.close()
        self.procs.append([p, []])
        return p

    def add_pids(self, p, pids):
        for entry in self.procs:
            if entry[0] is p:
                entry[1].extend(pids)

    def stop(self, p, sig=signal.SIGTERM, grace=3.0):
        for entry in list(self.procs):
            if entry[0] is not p:
                continue
            extra = [x for x in entry[1] if x != p.pid]
            if p.poll() is None:
                try:
                    p.send_signal(sig)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    p.kill()
                    try:
                        p.wait(timeout=grace)
                    except subprocess.TimeoutExpired:
                        pass
            for pid in extra:   # e.g. nginx's worker, if it outlived
                if pid_alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            self.procs.remove(entry)

    def stop_all(self):
        for entry in list(reversed(self.procs)):
            self.stop(entry[0], grace=2.0)


PROCS = Procs()


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def children(pid):
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def vmrss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# --- the peers -------------------------------------------------------------

class Peer:
    """One proxy (or reference server) and how to run it."""

    def __init__(self, name, ctx):
        self.name = name
        self.ctx = ctx
        self.port = free_port()
        self.proc = None
        self.pid = None     # the process that serves: CPU and RSS
        self.log = os.path.join(ctx.work, name + ".log")

    def start(self, cpus=None, workers=1):
        cpus = cpus if cpus is not None else self.ctx.proxy_cpu
        cmd = self.command(workers)
        self.proc = PROCS.start(cmd, cpus, self.log)
        if not wait_port(self.port, self.proc):
            raise RuntimeError("%s did not start; see %s:\n%s" % (
                self.name, self.log, tail(self.log)))
        self.pid = self.serving_pid()
        return self

    def serving_pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc is not None:
            PROCS.stop(self.proc)
            self.proc = None

    def write(self, name, text):
        path = os.path.join(self.ctx.work, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        return path


class Mtlsd(Peer):
    def command(self, workers):
        c = self.ctx
        conf = self.write("mtlsd-%d.conf" % self.port, """\
workers = %d;
log = { level = "warn"; };
sandbox = { seccomp = true; };
limits = {
  max_connections = 20000;
  idle_timeout = 600.0;
  drain_timeout = 1.0;
};
tls = {
  cert = "%s";
  key = "%s";
  ca = "%s";
  min_version = "1.3";
  groups = "X25519";
};
inbound = ( {
  name = "bench";
  listen = "127.0.0.1:%d";
  target = "127.0.0.1:%d";
  allow = { uri = [ "%s" ]; };
} );
""" % (workers, c.cert("server.crt"), c.cert("server.key"),
            c.cert("ca-bundle.crt"), self.port, c.backend_port, URI))
        return [c.mtlsd, "-f", "-c", conf]


class Stunnel(Peer):
    def command(self, workers):
        c = self.ctx
        conf = self.write("stunnel-%d.conf" % self.port, """\
foreground = yes
pid =
syslog = no
debug = warning
[bench]
accept = 127.0.0.1:%d
connect = 127.0.0.1:%d
cert = %s
key = %s
CAfile = %s
verifyChain = yes
requireCert = yes
sslVersionMin = TLSv1.3
curves = X25519
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
TIMEOUTclose = 0
TIMEOUTidle = 600
""" % (self.port, c.backend_port, c.cert("server.crt"), c.cert("server.key"),
            c.cert("ca-bundle.crt")))
        return ["stunnel", conf]


class Haproxy(Peer):
    def command(self, workers):
        c = self.ctx
        pem = os.path.join(c.work, "server.pem")
        if not os.path.exists(pem):
            with open(pem, "w") as f:
                for n in ("server.crt", "server.key"):
                    with open(c.cert(n)) as g:
                        f.write(g.read())
        conf = self.write("haproxy-%d.cfg" % self.port, """\
global
    nbthread 1
    maxconn %d
defaults
    mode tcp
    timeout connect 5s
    timeout client 600s
    timeout server 600s
frontend bench
    bind 127.0.0.1:%d ssl crt %s ca-file %s verify required ssl-min-ver TLSv1.3 curves X25519
    default_backend be
backend be
    server s1 127.0.0.1:%d
""" % (c.maxconn, self.port, pem, c.cert("ca-bundle.crt"), c.backend_port))
        return ["haproxy", "-db", "-f", conf]


class Nginx(Peer):
    def command(self, workers):
        c = self.ctx
        conf = self.write("nginx-%d.conf" % self.port, """\
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile %d;
pid %s/nginx-%d.pid;
error_log %s warn;
events { worker_connections %d; }
stream {
    server {
        listen 127.0.0.1:%d ssl;
        ssl_certificate %s;
        ssl_certificate_key %s;
        ssl_client_certificate %s;
        ssl_verify_client on;
        ssl_verify_depth 8;
        ssl_protocols TLSv1.3;
        ssl_ecdh_curve X25519;
        proxy_pass 127.0.0.1:%d;
        proxy_connect_timeout 5s;
        proxy_timeout 600s;
    }
}
""" % (c.nofile, c.work, self.port, self.log, c.nofile - 50, self.port,
            c.cert("server.crt"), c.cert("server.key"),
            c.cert("ca-bundle.crt"), c.backend_port))
        return ["nginx", "-p", c.work, "-e", self.log, "-c", conf]

    def serving_pid(self):
        end = time.monotonic() + 5
        while time.monotonic() < end:
            kids = children(self.proc.pid)
            if kids:
                PROCS.add_pids(self.proc, kids)
                return kids[0]
            time.sleep(0.05)
        raise RuntimeError("nginx started no worker")


class TlsEcho(Peer):
    """bench/tlsecho: no proxy, no ticket (handshake) or one (resumed)."""
    tickets = 0

    def command(self, workers):
        c = self.ctx
        return [os.path.join(c.bin, "tlsecho"), "-p", str(self.port),
                "-T", str(self.tickets),
                "--cert", c.cert("server.crt"), "--key", c.cert("server.key"),
                "--ca", c.cert("ca-bundle.crt")]


class TlsEcho1(TlsEcho):
    tickets = 1


KINDS = {"mtlsd": Mtlsd, "stunnel": Stunnel, "haproxy": Haproxy,
         "nginx": Nginx, "tlsecho": TlsEcho, "tlsecho1": TlsEcho1}


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# --- the load --------------------------------------------------------------

class Ctx:
    pass


def loadgen(ctx, mode, port, conns, watch=None, plain=False, cpus=None,
            seconds=None):
    seconds = seconds if seconds is not None else ctx.seconds
    cmd = [os.path.join(ctx.bin, "loadgen"), "-m", mode, "-p", str(port),
           "-c", str(conns), "-t", str(seconds), "-w", str(ctx.warmup)]
    if plain:
        cmd.append("--plain")
    else:
        cmd += ["--cert", ctx.cert("client.crt"),
                "--key", ctx.cert("client.key")]
    for pid in watch or []:
        cmd += ["--watch", str(pid)]
    full = prefix(cpus or ctx.load_cpu) + cmd
    try:
        p = subprocess.run(full, capture_output=True, text=True,
                           timeout=seconds + ctx.warmup + 60,
                           preexec_fn=raise_nofile)
    except subprocess.TimeoutExpired:
        log("loadgen %s on port %d timed out" % (mode, port))
        return None
    res = parse_kv(p.stdout.strip().splitlines()[-1]
                   if p.stdout.strip() else "")
    if p.returncode != 0 or "rate" not in res:
        log("loadgen %s on port %d failed (%d): %s" % (
            mode, port, p.returncode, p.stderr.strip()[-500:]))
        return None
    if p.stderr.strip():
        res["stderr"] = p.stderr.strip()[-300:]
    return res


def parse_kv(line):
    out = {}
    for tok in line.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


SCEN = {
    # name: (loadgen mode, conns env, value key, unit)
    "handshake": ("handshake", "hs_conns", "rate"),
    "resumed": ("resume", "hs_conns", "rate"),
    "throughput": ("stream", "stream_conns", "mbps"),
    "rr": ("rr", "rr_conns", "rate"),
}


def run_rates(ctx, peers, refs, results):
    """The four rate scenarios, runs interleaved across the proxies."""
    scen = [s for s in ("handshake", "resumed", "throughput", "rr")
            if s in ctx.scenarios]
    if not scen:
        return
    for r in range(ctx.runs):
        for s in scen:
            mode, conns_key, key = SCEN[s]
            targets = list(peers)
            ref = {"handshake": "tlsecho", "resumed": "tlsecho1"}.get(s)
            if ref in refs:
                targets.append(refs[ref])
            for peer in targets:
                res = measure(ctx, s, peer.name, r, mode=mode,
                              port=peer.port,
                              conns=getattr(ctx, conns_key),
                              watch=[peer.pid])
                record(results, s, peer.name, res)
            if s == "rr":
                res = measure(ctx, s, "floor", r, retry=False, mode="rr",
                              port=ctx.backend_port, conns=ctx.rr_conns,
                              watch=[ctx.backend_pid], plain=True)
                record(results, s, "floor", res)


def measure(ctx, scen, name, r, retry=True, **kw):
    """
    One run.  A run in which other processes took more than
    BENCH_NOISE_MAX of the proxy's core is run again (at most twice, and
    only while BENCH_RETRY_SECONDS of retries remain); the least disturbed
    attempt counts.
    """
    best = None
    for attempt in range(3):
        t0 = time.monotonic()
        res = loadgen(ctx, **kw)
        if res is not None:
            busy = res.get("busy" + ctx.proxy_cpu)
            if busy is not None and retry:
                # What the proxy's core did besides the proxy: others.
                res["foreign"] = max(0.0, busy - res["cpu_watch"])
            res["attempts"] = attempt + 1
        show(scen, name, r, res, ctx, attempt)
        if res is None:
            break
        if best is None or res.get("foreign", 0) < best.get("foreign", 0):
            best = res
        if not retry or res.get("foreign", 0) <= ctx.noise_max or \
                ctx.retry_left <= 0:
            break
        ctx.retry_left -= time.monotonic() - t0
        ctx.retries += 1
    return best


def perf_usable():
    """perf can count the syscall tracepoint here (root, tracefs)."""
    if not shutil.which("perf"):
        return False
    try:
        p = subprocess.run(["perf", "stat", "-x,", "-e",
                            "raw_syscalls:sys_enter", "true"],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0 and "raw_syscalls" in p.stderr and \
        "not supported" not in p.stderr


def run_syscalls(ctx, peers, results):
    """
    System calls per unit of work: one more run per scenario and proxy,
    with perf counting the proxy's entries into the kernel over the
    measured window.  A count does not depend on what else the machine
    does, so it is the steadiest figure of an event loop's efficiency;
    it is kept out of the timed runs, which it would slow a little.
    """
    scen = [s for s in ("handshake", "resumed", "throughput", "rr")
            if s in ctx.scenarios]
    if not scen or not perf_usable():
        log("syscalls: skipped (perf cannot count raw_syscalls:sys_enter "
            "here)")
        return
    for s in scen:
        mode, conns_key, key = SCEN[s]
        for peer in peers:
            pid = peer.serving_pid()
            full = prefix(ctx.load_cpu) + [
                os.path.join(ctx.bin, "loadgen"), "-m", mode, "-p",
                str(peer.port), "-c", str(getattr(ctx, conns_key)),
                "-t", str(ctx.seconds), "-w", str(ctx.warmup),
                "--cert", ctx.cert("client.crt"),
                "--key", ctx.cert("client.key")]
            lg = subprocess.Popen(full, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True,
                                  preexec_fn=raise_nofile)
            time.sleep(ctx.warmup)
            try:
                ps = subprocess.run(
                    ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter",
                     "-p", str(pid), "--", "sleep", str(ctx.seconds)],
                    capture_output=True, text=True,
                    timeout=ctx.seconds + 30)
                out, _ = lg.communicate(timeout=ctx.seconds + 60)
            except subprocess.TimeoutExpired:
                lg.kill()
                lg.wait()
                log("syscalls: %s/%s timed out" % (s, peer.name))
                continue
            res = parse_kv(out.strip().splitlines()[-1] if out.strip()
                           else "")
            count = None
            for line in ps.stderr.splitlines():
                f = line.split(",")
                if len(f) > 2 and "raw_syscalls" in line and \
                        f[0].strip().isdigit():
                    count = int(f[0])
            work = res.get(key, 0) * ctx.seconds
            if count is None or lg.returncode != 0 or work <= 0:
                log("syscalls: %s/%s: no count" % (s, peer.name))
                continue
            per = count / work
            results.setdefault("syscalls", {}).setdefault(s, {})[
                peer.name] = per
            log("syscalls: %-10s %-8s %.2f per %s" % (
                s, peer.name, per, "MB" if key == "mbps" else
                "request" if s == "rr" else "connection"))


def record(results, scen, name, res):
    results.setdefault(scen, {}).setdefault(name, []).append(res)


def show(scen, name, r, res, ctx, attempt=0):
    run = "run %d%s" % (r + 1, " (again)" if attempt else "")
    if res is None:
        log("%-10s %-8s %s: failed" % (scen, name, run))
        return
    log("%-10s %-8s %s: rate=%.0f mbps=%.0f p50=%.0fus p99=%.0fus "
        "reused=%d errors=%d cpu: load %.2f, server %.2f, others on CPU %s "
        "%.2f" % (
            scen, name, run, res["rate"], res["mbps"], res["p50_us"],
            res["p99_us"], res["reused"], res["errors"], res["cpu"],
            res["cpu_watch"], ctx.proxy_cpu, res.get("foreign", 0)))


def median_of(runs, key):
    vals = [x[key] for x in runs if x is not None and key in x]
    return statistics.median(vals) if vals else None


# --- idle connections ------------------------------------------------------

def run_idle(ctx, results):
    n = ctx.idle_conns
    for name in ctx.peers:
        peer = KINDS[name](name, ctx).start()
        try:
            # Warm up first: lazy initialisation is not per-connection.
            loadgen(ctx, "handshake", peer.port, 8, seconds=0.5)
            time.sleep(0.5)
            before = vmrss_kib(peer.pid)
            cmd = prefix(ctx.load_cpu) + [
                   os.path.join(ctx.bin, "loadgen"), "-m", "idle",
                   "-p", str(peer.port), "-n", str(n), "-c", "64",
                   "-t", "120", "--cert", ctx.cert("client.crt"),
                   "--key", ctx.cert("client.key")]
            lg = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  preexec_fn=raise_nofile)
            PROCS.procs.append([lg, []])
            ready = read_ready(lg, 240)
            res = {"n": n, "before_kib": before, "ready": ready}
            if ready is not None:
                time.sleep(1.0)
                after = vmrss_kib(peer.pid)
                res.update(after_kib=after,
                           per_conn_kib=(after - before) / n,
                           setup_s=ready.get("seconds", 0))
            PROCS.stop(lg)
            out = lg.stdout.read() if lg.stdout else ""
            last = parse_kv(out.strip().splitlines()[-1]) if out.strip() \
                else {}
            res["final"] = last
            if ready is None:
                log("idle %-8s: not all %d connections were established: "
                    "%s %s" % (name, n, last,
                               (lg.stderr.read() or "")[-300:]))
            else:
                log("idle %-8s: VmRSS %d -> %d KiB for %d connections: "
                    "%.1f KiB each (set-up %.1f s)" % (
                        name, before, res["after_kib"], n,
                        res["per_conn_kib"], res["setup_s"]))
            results.setdefault("idle", {})[name] = res
        finally:
            peer.stop()


def read_ready(p, timeout):
    """The loadgen's "ready" line, or None (it died or took too long)."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            if not sel.select(timeout=1.0):
                if p.poll() is not None:
                    return None
                continue
            line = p.stdout.readline()
            if not line:
                return None
            if line.startswith("ready"):
                return parse_kv(line)
    finally:
        sel.close()
    return None


# --- ceilings --------------------------------------------------------------

def openssl_speed(ctx):
    """Single-core ceilings from `openssl speed`, on the proxy core."""
    out = {}
    cmd = prefix(ctx.proxy_cpu) + ["openssl", "speed", "-mr",
                                   "-seconds", "2", "ecdsap256",
                                   "ecdhx25519"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    for line in p.stdout.splitlines():
        f = line.split(":")
        if line.startswith("+F4:") and f[2] == "256":
            out["ecdsa_sign"] = float(f[3])
            out["ecdsa_verify"] = float(f[4])
        elif line.startswith("+F5:") and f[2] == "253":
            out["x25519"] = float(f[3])
    cmd = prefix(ctx.proxy_cpu) + ["openssl", "speed", "-mr", "-seconds",
                                   "2", "-bytes", "16384", "-evp",
                                   "aes-128-gcm"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    for line in p.stdout.splitlines():
        if line.startswith("+F:"):
            out["aes128gcm_MBps"] = float(line.split(":")[-1]) / 1e6
    return out


def hsmem(ctx):
    out = {}
    base = [os.path.join(ctx.bin, "hsmem"), "-t", "2",
            "--cert", ctx.cert("server.crt"),
            "--key", ctx.cert("server.key"),
            "--ca", ctx.cert("ca-bundle.crt"),
            "--client-cert", ctx.cert("client.crt"),
            "--client-key", ctx.cert("client.key")]
    p = subprocess.run(prefix(ctx.proxy_cpu) + base + ["-T", "1", "--hold",
                                                       "2000"],
                       capture_output=True, text=True, timeout=120)
    kv = parse_kv(p.stdout.strip())
    if "heap_per_conn_kib" in kv:
        out["hold_kib"] = kv["heap_per_conn_kib"]
    for key, extra in (("t0", ["-T", "0"]), ("t1", ["-T", "1"]),
                       ("t2", ["-T", "2"]), ("resume", ["-T", "1",
                                                        "--resume"])):
        p = subprocess.run(prefix(ctx.proxy_cpu) + base + extra,
                           capture_output=True, text=True, timeout=60)
        kv = parse_kv(p.stdout.strip())
        if "rate" in kv:
            out[key] = kv["rate"]
    return out


# --- workers ---------------------------------------------------------------

def run_workers(ctx, results):
    both = "%s,%s" % (ctx.proxy_cpu, ctx.load_cpu)
    w = {}
    for k in (1, 2):
        w[k] = KINDS["mtlsd"]("mtlsd", ctx).start(cpus=both, workers=k)
    try:
        for r in range(ctx.runs):
            for k in (1, 2):
                res = measure(ctx, "workers=%d" % k, "mtlsd", r,
                              retry=False, mode="handshake", port=w[k].port,
                              conns=ctx.hs_conns * 2, watch=[w[k].pid],
                              cpus=both)
                results.setdefault("workers", {}).setdefault(
                    k, []).append(res)
    finally:
        for k in w:
            w[k].stop()


# --- the report ------------------------------------------------------------

def fmt(v, digits=0):
    if v is None:
        return "n/a"
    if digits == 0:
        return "{:,.0f}".format(v)
    return "{:,.{d}f}".format(v, d=digits)




def report(ctx, results, speed, mem):
    peers = ctx.peers
    others = [p for p in peers if p != "mtlsd"]

    def med(scen, name, key):
        return median_of(results.get(scen, {}).get(name, []), key)

    def per_cpu(scen, name, key):
        """The rate per second of the server's own CPU time, per run."""
        runs = results.get(scen, {}).get(name, [])
        vals = [x[key] / x["cpu_watch"] for x in runs
                if x and x.get("cpu_watch", 0) > 0.05]
        return statistics.median(vals) if vals else None

    # (key, label, {peer: value}, no-proxy reference, digits)
    rows = []
    for scen, label, key in (
            ("handshake", "handshake: full mTLS, conn/s", "rate"),
            ("resumed", "resumed: TLS 1.3 ticket, conn/s", "rate"),
            ("throughput", "throughput: %d conns x 64 KiB writes, MB/s" %
             ctx.stream_conns, "mbps"),
            ("rr", "rr: %d conns x 1 KiB ping-pong, req/s" % ctx.rr_conns,
             "rate")):
        if scen not in results:
            continue
        ref = {"handshake": "tlsecho", "resumed": "tlsecho1",
               "rr": "floor"}.get(scen)
        rows.append((scen, label, {p: med(scen, p, key) for p in peers},
                     fmt(med(scen, ref, key)) if ref else "", 0))
        if scen == "rr":
            rows.append(("rr_p50", "rr: p50 latency, us",
                         {p: med("rr", p, "p50_us") for p in peers},
                         fmt(med("rr", "floor", "p50_us")), 0))
            rows.append(("rr_p99", "rr: p99 latency, us",
                         {p: med("rr", p, "p99_us") for p in peers},
                         fmt(med("rr", "floor", "p99_us")), 0))
    if "idle" in results:
        rows.append(("idle", "idle: %s conns, KiB RSS per conn" %
                     fmt(ctx.idle_conns),
                     {p: results["idle"].get(p, {}).get("per_conn_kib")
                      for p in peers}, "", 1))
    # The same rates per second of the proxy's own CPU time: what one
    # core would do, robust against other tenants of a shared machine.
    for scen, label, key in (
            ("handshake", "handshake per proxy CPU-second", "rate"),
            ("resumed", "resumed per proxy CPU-second", "rate"),
            ("throughput", "throughput per proxy CPU-second, MB", "mbps"),
            ("rr", "rr per proxy CPU-second", "rate")):
        if scen not in results:
            continue
        ref = {"handshake": "tlsecho", "resumed": "tlsecho1"}.get(scen)
        rows.append((scen + "_cpu", label,
                     {p: per_cpu(scen, p, key) for p in peers},
                     fmt(per_cpu(scen, ref, key)) if ref else "", 0))

    # System calls per unit of work (one counted run each; see
    # run_syscalls): below 1 is better in the ratio columns.
    for scen, label in (
            ("handshake", "handshake: system calls per connection"),
            ("resumed", "resumed: system calls per connection"),
            ("throughput", "throughput: system calls per MB"),
            ("rr", "rr: system calls per request")):
        sc = results.get("syscalls", {}).get(scen)
        if sc:
            rows.append(("sys_" + scen, label,
                         {p: sc.get(p) for p in peers}, "", 1))

    head = ["scenario"] + [LABEL[p] for p in peers]
    if "mtlsd" in peers:
        head += ["mtlsd / %s" % LABEL[p] for p in others]
    head.append("no proxy")
    print()
    print("mtlsd benchmark: medians of %d runs x %.1f s; proxies on CPU %s, "
          "load + backend on CPU %s" % (ctx.runs, ctx.seconds,
                                        ctx.proxy_cpu, ctx.load_cpu))
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join([" --- "] + [" ---: "] * (len(head) - 1)) + "|")
    for key, label, vals, ref, dig in rows:
        cells = [label] + [fmt(vals.get(p), dig) for p in peers]
        if "mtlsd" in peers:
            for p in others:
                m, o = vals.get("mtlsd"), vals.get(p)
                cells.append("%.2fx" % (m / o) if m and o else "n/a")
        cells.append(ref or "")
        print("| " + " | ".join(cells) + " |")
    print()
    print("Ratios are mtlsd / peer: above 1 is better for rates, below 1 "
          "is better for latency, RSS and system calls.  \"no proxy\": the "
          "load generator "
          "against bench/tlsecho, a libssl-only mTLS echo server on the "
          "proxy core (no ticket for handshake, one for resumed), and "
          "against the plaintext backend alone for rr (the floor).  \"per "
          "proxy CPU-second\": each run's rate divided by the CPU time the "
          "proxy used, then the median.")

    cpu_lines = []
    for scen in ("handshake", "resumed", "throughput", "rr"):
        if scen not in results:
            continue
        parts = []
        ref = {"handshake": ["tlsecho"], "resumed": ["tlsecho1"]}.get(
            scen, [])
        for p in peers + ref:
            sv, lc = med(scen, p, "cpu_watch"), med(scen, p, "cpu")
            fo = med(scen, p, "foreign")
            if sv is not None:
                parts.append("%s %d/%d/%d" % (LABEL[p], 100 * sv, 100 * lc,
                                              100 * (fo or 0)))
        cpu_lines.append("- %s: %s" % (scen, ", ".join(parts)))
    if cpu_lines:
        print()
        print("CPU use over the window in %% of one core, medians: proxy / "
              "load generator / other processes on the proxy's CPU %s "
              "(other tenants of the machine):" % ctx.proxy_cpu)
        print("\n".join(cpu_lines))

    problems = []
    for scen, per in results.items():
        if scen in ("idle", "workers", "syscalls"):
            continue
        for p, runs in per.items():
            bad = sum(1 for x in runs if x is None)
            errs = sum(x.get("errors", 0) for x in runs if x)
            if bad or errs:
                problems.append("%s/%s: %d failed runs, %d connection "
                                "errors" % (scen, LABEL[p], bad, errs))
            noisy = sum(1 for x in runs
                        if x and x.get("foreign", 0) > ctx.noise_max)
            if noisy:
                problems.append("%s/%s: in %d of %d runs other processes "
                                "took over %d%% of CPU %s" % (
                                    scen, LABEL[p], noisy, len(runs),
                                    100 * ctx.noise_max, ctx.proxy_cpu))
            if scen == "resumed":
                for x in runs:
                    if x and x["ops"] and x["reused"] < 0.95 * x["ops"]:
                        problems.append("resumed/%s: only %d of %d "
                                        "handshakes resumed" % (
                                            LABEL[p], x["reused"], x["ops"]))
                        break
    if ctx.retries:
        problems.append("%d runs were disturbed by other processes and run "
                        "again (the least disturbed attempt counts)" %
                        ctx.retries)
    for p, res in results.get("idle", {}).items():
        if res.get("ready") is None:
            problems.append("idle/%s: not all %d connections established" %
                            (LABEL[p], ctx.idle_conns))
    if problems:
        print()
        print("Warnings (a noisy machine shows in the raw rates and "
              "latencies; the per-CPU-second rows resist it):")
        for line in problems:
            print("- " + line)

    if speed:
        print()
        print("Single-core ceilings (openssl speed on CPU %s):" %
              ctx.proxy_cpu)
        print("- ECDSA P-256: %s sign/s, %s verify/s; X25519: %s ops/s; "
              "AES-128-GCM (16 KiB): %s MB/s" % (
                  fmt(speed.get("ecdsa_sign")), fmt(speed.get("ecdsa_verify")),
                  fmt(speed.get("x25519")), fmt(speed.get("aes128gcm_MBps"))))
        if all(k in speed for k in ("ecdsa_sign", "ecdsa_verify", "x25519")):
            us = 1e6 * (1 / speed["ecdsa_sign"] + 3 / speed["ecdsa_verify"] +
                        2 / speed["x25519"])
            ceil = 1e6 / us
            print("- full mTLS 1.3 handshake, server side: 1 sign (its "
                  "CertificateVerify) + 3 verifies (the client's "
                  "CertificateVerify, the client leaf by the intermediate, "
                  "the intermediate by the root) + 2 X25519 (keygen + "
                  "derive) = %.0f us of crypto: ceiling %s handshakes/s "
                  "per core" % (us, fmt(ceil)))
            m = med("handshake", "mtlsd", "rate")
            mc = per_cpu("handshake", "mtlsd", "rate")
            if m:
                print("- mtlsd: %s handshakes/s = %.0f%% of that ceiling "
                      "(%s per CPU-second = %.0f%%)" % (
                          fmt(m), 100 * m / ceil, fmt(mc),
                          100 * (mc or 0) / ceil))
            rus = 2e6 / speed["x25519"]
            r = per_cpu("resumed", "mtlsd", "rate")
            print("- resumed handshake, server side: 2 X25519 = %.0f us: "
                  "ceiling %s/s per core%s" % (
                      rus, fmt(1e6 / rus),
                      "; mtlsd (per CPU-second) %.0f%% of it" % (
                          100 * r * rus / 1e6) if r else ""))
            t = per_cpu("throughput", "mtlsd", "mbps")
            if t and "aes128gcm_MBps" in speed:
                print("- throughput: AES-128-GCM alone %s MB/s per core; "
                      "mtlsd %s MB per CPU-second = %.0f%% of it" % (
                          fmt(speed["aes128gcm_MBps"]), fmt(t),
                          100 * t / speed["aes128gcm_MBps"]))
    if mem:
        print("- libssl alone, in memory (bench/hsmem, server-side CPU "
              "only, no sockets, no proxy): full handshakes/s per core "
              "with 0 / 1 / 2 tickets: %s / %s / %s; resumed (1 ticket): "
              "%s" % (fmt(mem.get("t0")), fmt(mem.get("t1")),
                      fmt(mem.get("t2")), fmt(mem.get("resume"))))
        if "hold_kib" in mem:
            print("- libssl alone holds %.1f KiB of heap per idle mTLS "
                  "connection (bench/hsmem --hold: the server's SSL after "
                  "the handshake, buffers released, the client's chain "
                  "kept): the floor for any proxy built on it" %
                  mem["hold_kib"])

    if "handshake" in results:
        # Handshakes per second of the load generator's own CPU time: what
        # one core of load can drive, whatever the server.
        caps = [x["rate"] / x["cpu"] for runs in results["handshake"].values()
                for x in runs if x and x.get("cpu", 0) > 0.05]
        cap = statistics.median(caps) if caps else 0
        best_cpu = max((per_cpu("handshake", p, "rate") or 0) for p in peers)
        best = max((med("handshake", p, "rate") or 0) for p in peers)
        ref = med("handshake", "tlsecho", "rate")
        print()
        print("Load generator check: one core of load drives about %s full "
              "handshakes/s (%.0f us of client CPU each: 1 sign, 1 verify, "
              "X25519, parsing the server's chain); the fastest proxy does "
              "%s per CPU-second, so the load has %.2fx headroom%s" % (
                  fmt(cap), 1e6 / cap if cap else 0, fmt(best_cpu),
                  cap / best_cpu if best_cpu else 0,
                  ": it is not the bottleneck." if cap > 1.3 * best_cpu else
                  ": NOT enough; the handshake rows partly measure the load "
                  "generator (the ratios between proxies stay fair)."))
        if ref:
            print("Against bench/tlsecho (libssl alone on CPU %s, no "
                  "ticket) it made %s handshakes/s, %.2fx the best proxy's "
                  "%s%s." % (ctx.proxy_cpu, fmt(ref), ref / best if best
                             else 0, fmt(best),
                             "" if ref > 1.2 * best else
                             " (not well above: see the CPU use of the "
                             "libssl echo above; on a busy machine it was "
                             "starved too)"))

    if "workers" in results:
        w1 = median_of(results["workers"].get(1, []), "rate")
        w2 = median_of(results["workers"].get(2, []), "rate")
        lc = median_of(results["workers"].get(2, []), "cpu")
        sc = median_of(results["workers"].get(2, []), "cpu_watch")
        def eff(k):
            """Handshakes per second of mtlsd's own CPU time, median."""
            v = [x["rate"] / x["cpu_watch"]
                 for x in results["workers"].get(k, [])
                 if x and x.get("cpu_watch", 0) > 0.05]
            return statistics.median(v) if v else None
        e1, e2 = eff(1), eff(2)
        print()
        print("Workers: mtlsd full handshakes/s with the proxy, the load "
              "and the backend all on CPUs %s,%s (%d concurrent "
              "connections): workers = 1: %s, workers = 2: %s, ratio %s.  "
              "At workers = 2 mtlsd used %d%% and the load generator %d%% "
              "of a core: the load competes with the proxy for the same "
              "two cores.  What a second worker costs per handshake "
              "shows in the rate per mtlsd CPU-second: %s with 1 worker, "
              "%s with 2 (%s; at 1.00x a second worker would cost "
              "nothing extra, and N workers on N free cores would do N "
              "times the work)." % (
                  ctx.proxy_cpu, ctx.load_cpu, ctx.hs_conns * 2, fmt(w1),
                  fmt(w2), "%.2fx" % (w2 / w1) if w1 and w2 else "n/a",
                  100 * (sc or 0), 100 * (lc or 0), fmt(e1), fmt(e2),
                  "%.2fx" % (e2 / e1) if e1 and e2 else "n/a"))

    if "mtlsd" in peers and others:
        print()
        print("Targets (mtlsd against the best peer measured here):")
        table = {key: vals for key, _, vals, _, _ in rows}
        for key, want, hb in TARGETS:
            for k in (key, key + "_cpu"):
                if k not in table:
                    continue
                v = table[k]
                got = [v[p] for p in others if v.get(p)]
                if not v.get("mtlsd") or not got:
                    continue
                best = max(got) if hb else min(got)
                bp = [p for p in others if v.get(p) == best][0]
                ratio = v["mtlsd"] / best
                ok = ratio >= want if hb else ratio <= want
                print("- %s%s: %.3fx %s (want %s %.2fx): %s" % (
                    key, " (per CPU-second)" if k != key else "", ratio,
                    LABEL[bp], ">=" if hb else "<=", want,
                    "met" if ok else "MISSED"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mtlsd", required=True)
    ap.add_argument("--bin", required=True, help="where loadgen etc. are")
    ap.add_argument("--certs", required=True)
    ap.add_argument("--profile", action="store_true",
                    help="profile mtlsd under the handshake load with perf")
    ap.add_argument("--json", help="also write the raw results here")
    a = ap.parse_args()

    ctx = Ctx()
    ctx.mtlsd = os.path.abspath(a.mtlsd)
    ctx.bin = os.path.abspath(a.bin)
    ctx.certs = os.path.abspath(a.certs)
    ctx.cert = lambda n: os.path.join(ctx.certs, n)
    ctx.seconds = env_float("BENCH_SECONDS", 3.0)
    ctx.warmup = env_float("BENCH_WARMUP", 0.5)
    ctx.runs = env_int("BENCH_RUNS", 5)
    ctx.peers = [p for p in os.environ.get(
        "BENCH_PEERS", ",".join(PEERS)).split(",") if p]
    ctx.scenarios = [s for s in os.environ.get(
        "BENCH_SCENARIOS",
        "handshake,resumed,throughput,rr,syscalls,idle,workers,"
        "ceilings").split(",")
        if s]
    ctx.hs_conns = env_int("BENCH_HS_CONNS", 32)
    ctx.rr_conns = env_int("BENCH_RR_CONNS", 16)
    ctx.stream_conns = env_int("BENCH_STREAM_CONNS", 4)
    ctx.proxy_cpu = os.environ.get("BENCH_PROXY_CPU", "0")
    ctx.load_cpu = os.environ.get("BENCH_LOAD_CPU", "1")
    ctx.noise_max = env_float("BENCH_NOISE_MAX", 0.15)
    ctx.retry_left = env_float("BENCH_RETRY_SECONDS", 90.0)
    ctx.retries = 0
    global NICE
    NICE = env_int("BENCH_NICE", -10 if os.geteuid() == 0 else 0)
    for p in ctx.peers:
        if p not in PEERS:
            sys.exit("bench: unknown peer %s (known: %s)" % (
                p, ",".join(PEERS)))

    # Two descriptors per proxied connection, under the hard limit we have;
    # stunnel also refuses clients beyond 125/256 of its descriptor limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ctx.nofile = hard
    fd_max = min((hard - 100) // 2, hard * 125 // 256 - 50)
    want = env_int("BENCH_IDLE_CONNS", 10000)
    ctx.idle_conns = min(want, fd_max // 100 * 100)
    if ctx.idle_conns < want:
        log("idle: %d connections instead of %d: RLIMIT_NOFILE's hard limit "
            "is %d here and cannot be raised (even as root), a proxy needs "
            "two descriptors per connection (client + backend), and "
            "stunnel takes at most 125/256 of the limit in clients" % (
                ctx.idle_conns, want, hard))
    # HAProxy refuses to start when 2 x maxconn does not fit the limit.
    ctx.maxconn = min(ctx.idle_conns + 100, (hard - 50) // 2)

    for tool in ("loadgen", "backend", "tlsecho", "hsmem"):
        if not os.access(os.path.join(ctx.bin, tool), os.X_OK):
            sys.exit("bench: %s/%s missing: make bench-tools" % (ctx.bin,
                                                                  tool))
    ctx.work = tempfile.mkdtemp(prefix="mtlsd-bench-")
    os.chmod(ctx.work, 0o755)

    def on_signal(sig, frame):
        raise SystemExit(128 + sig)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    atexit.register(PROCS.stop_all)

    t0 = time.monotonic()
    results = {}
    speed = mem = None
    try:
        ctx.backend_port = free_port()
        be = PROCS.start([os.path.join(ctx.bin, "backend"),
                          str(ctx.backend_port)], ctx.load_cpu,
                         os.path.join(ctx.work, "backend.log"))
        if not wait_port(ctx.backend_port, be):
            sys.exit("bench: the backend did not start")
        ctx.backend_pid = be.pid

        if a.profile:
            profile(ctx)
            return

        if "ceilings" in ctx.scenarios:
            log("ceilings: openssl speed and bench/hsmem on CPU %s" %
                ctx.proxy_cpu)
            speed = openssl_speed(ctx)
            mem = hsmem(ctx)

        rate_scen = {"handshake", "resumed", "throughput", "rr"} & \
            set(ctx.scenarios)
        peers = [KINDS[p](p, ctx).start() for p in ctx.peers] \
            if rate_scen else []
        refs = {}
        ctx.refs_run = []
        for s, ref in (("handshake", "tlsecho"), ("resumed", "tlsecho1")):
            if s in ctx.scenarios:
                refs[ref] = KINDS[ref](ref, ctx).start()
                ctx.refs_run.append(ref)
        if peers:
            log("started %s; backend on %d" % (
                ", ".join("%s on %d (pid %d)" % (p.name, p.port, p.pid)
                          for p in peers + list(refs.values())),
                ctx.backend_port))
        run_rates(ctx, peers, refs, results)
        if "syscalls" in ctx.scenarios:
            run_syscalls(ctx, peers, results)
        for p in peers + list(refs.values()):
            p.stop()

        if "workers" in ctx.scenarios and "mtlsd" in ctx.peers:
            run_workers(ctx, results)
        if "idle" in ctx.scenarios:
            run_idle(ctx, results)

        report(ctx, results, speed, mem)
        print()
        print("(%.0f s in all; configurations and logs in %s)" % (
            time.monotonic() - t0, ctx.work))
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"results": results, "speed": speed, "hsmem": mem},
                          f, indent=1, default=str)
    finally:
        PROCS.stop_all()


# --- profile ---------------------------------------------------------------

def profile(ctx):
    """perf record of mtlsd (workers = 1) under each scenario's load."""
    peer = Mtlsd("mtlsd", ctx).start()
    secs = max(ctx.seconds, 5.0)
    scen = [s for s in ("handshake", "resumed", "throughput", "rr")
            if s in ctx.scenarios] or ["handshake"]
    try:
        for s in scen:
            mode, conns_key, _ = SCEN[s]
            data = os.path.join(ctx.work, "perf-%s.data" % s)
            out = os.path.join(ctx.work, "loadgen-%s.out" % s)
            with open(out, "w") as f:
                lg = PROCS.start([os.path.join(ctx.bin, "loadgen"), "-m",
                                  mode, "-p", str(peer.port), "-c",
                                  str(getattr(ctx, conns_key)), "-t",
                                  str(secs + 2), "-w", "1",
                                  "--cert", ctx.cert("client.crt"),
                                  "--key", ctx.cert("client.key"),
                                  "--watch", str(peer.pid)], ctx.load_cpu,
                                 os.path.join(ctx.work, "loadgen.log"),
                                 stdout=f)
            time.sleep(1.5)
            # perf itself runs on the load's core, not the proxy's.
            subprocess.run(["taskset", "-c", ctx.load_cpu, "perf", "record",
                            "-q", "-e", "cpu-clock",
                            "-F", "499", "--call-graph", "dwarf,16384",
                            "-p", str(peer.pid), "-o", data, "--", "sleep",
                            str(secs)], timeout=secs + 60,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            try:
                lg.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            PROCS.stop(lg)
            print("==== %s: %s" % (s, open(out).read().strip()))
            perf_summary(data)
    finally:
        peer.stop()
    print("(perf data in %s; libcrypto and libssl have no debug symbols "
          "here, so their internal functions show as addresses and their "
          "time is seen through the exported functions that call them)" %
          ctx.work)


def perf_summary(data, top=28):
    def rep(args):
        p = subprocess.run(["perf", "report", "-i", data, "--stdio", "-g",
                            "none", "--percent-limit", "0.8"] + args,
                           capture_output=True, text=True, timeout=600)
        return [ln.rstrip() for ln in p.stdout.splitlines()
                if ln.strip() and not ln.startswith("#")]
    print("-- self time by shared object:")
    print("\n".join(rep(["--no-children", "--sort", "dso"])[:6]))
    print("-- self time by function (named only):")
    print("\n".join([ln for ln in rep(["--no-children", "--sort",
                                         "dso,sym"])
                     if "0x0000" not in ln][:12]))
    print("-- time including callees (named functions):")
    skip = ("clone", "start_thread", "proxy_worker_main", "event_base_loop",
            "entry_SYSCALL", "(inlined)")
    lines = [ln for ln in rep(["--children", "--sort", "sym"])
             if "0x0000" not in ln and not any(k in ln for k in skip)]
    print("\n".join(lines[:top]))
    print()


if __name__ == "__main__":
    main()
