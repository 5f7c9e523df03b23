"""
The compose stack without Docker: "containers" are network namespaces.

    C (intruder) --veth-- B (api) --veth-- A (web)

A and B each have their own loopback, a plaintext service on their own
127.0.0.1 and an mtlsd sidecar; between them runs only a veth pair:

    A: client -> 127.0.0.1:7000 mtlsd (outbound) -> B's veth address:7443
    B: mtlsd (inbound) 0.0.0.0:7443 -> 127.0.0.1:7001 echo service

A's client gets its unique marker echoed by B's service; a capture on
B's end of the veth holds TLS records on port 7443 and never the marker
(while a plaintext canary sent over the same veth on purpose does show
up, so the capture would have seen plaintext); a peer from C with the
wrong identity (the demo cert `other`) is refused by B's mtlsd with a
reject line, and B's service sees no connection from it.

The sidecars run as the harness runs them: the sanitizer build with leak
detection on and seccomp off.  Namespaces are named after this test's
PID and a random tag and are deleted in `finally` (deleting a namespace
deletes its veth ends); every process here is stopped by its PID.
"""
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import time

import harness
from harness import (API_URI, INTRUDER_URI, Skip, WEB_URI, check, cert,
                     client_tls, parse_line, server_tls)

PY = sys.executable or "/usr/bin/python3"

# Services and tools run inside the namespaces (standard library only).
SERVICE_PY = r'''
import json, os, signal, socket, ssl, struct, sys, threading, time, select

def echo(host, port, logpath):
    """Echo service: one line in logpath for each connection."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(16)
    lock = threading.Lock()
    log = open(logpath, "a")
    def serve(c, peer):
        c.settimeout(15)
        got = b""
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                got += b
                c.sendall(b)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            c.close()
        with lock:
            log.write(json.dumps({"peer": "%s:%d" % peer,
                                  "data": got.decode("latin-1")}) + "\n")
            log.flush()
    print("ready", flush=True)
    while True:
        c, peer = s.accept()
        threading.Thread(target=serve, args=(c, peer), daemon=True).start()

def client(host, port, marker):
    """Sends marker, half-closes, prints what came back (bounded)."""
    deadline = time.monotonic() + 8
    while True:
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect((host, int(port)))
            break
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    s.sendall(marker.encode())
    s.shutdown(socket.SHUT_WR)
    got = b""
    while time.monotonic() < deadline + 5:
        b = s.recv(65536)
        if not b:
            break
        got += b
    sys.stdout.write(got.decode("latin-1"))

def intruder(host, port, crt, key, ca):
    """A TLS client with a valid certificate of the wrong workload."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(crt, key)
    s = socket.socket()
    s.settimeout(5)
    s.connect((host, int(port)))
    out = {"lport": s.getsockname()[1], "outcome": "open", "data": ""}
    try:
        t = ctx.wrap_socket(s)
        t.sendall(b"INTRUDER-DATA")
        b = t.recv(100)
        out["outcome"] = "eof" if not b else "data"
        out["data"] = b.decode("latin-1")
    except (OSError, ssl.SSLError) as e:
        out["outcome"] = "error: %s" % e
    print(json.dumps(out), flush=True)

def capture(iface, path):
    """A packet capture in pcap format, should tcpdump be missing."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((iface, 0))
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 262144, 1))
        f.flush()
        sys.stderr.write("listening on %s (AF_PACKET)\n" % iface)
        sys.stderr.flush()
        while not stop:
            r, _, _ = select.select([s], [], [], 0.1)
            if not r:
                continue
            b = s.recv(262144)
            t = time.time()
            f.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6),
                                len(b), len(b)) + b)
            f.flush()

globals()[sys.argv[1]](*sys.argv[2:])
'''


# --------------------------------------------------------------- pcap

def read_pcap(path):
    """[(src, dst, sport, dport, tcp payload)] of the IPv4/TCP packets."""
    with open(path, "rb") as f:
        raw = f.read()
    check(len(raw) >= 24, "capture %s is empty (%d bytes)" % (path, len(raw)))
    magic = raw[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise AssertionError("%s is not a pcap file (magic %s)"
                             % (path, magic.hex()))
    linktype = struct.unpack(e + "I", raw[20:24])[0]
    check(linktype == 1, "capture link type %d, want 1 (Ethernet)"
          % linktype)
    out = []
    off = 24
    while off + 16 <= len(raw):
        incl = struct.unpack(e + "I", raw[off + 8:off + 12])[0]
        pkt = raw[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(pkt) < 14:
            continue
        etype = struct.unpack("!H", pkt[12:14])[0]
        ip = pkt[14:]
        if etype != 0x0800 or len(ip) < 20 or ip[0] >> 4 != 4:
            continue
        ihl = (ip[0] & 15) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        if ip[9] != 6:
            continue
        if total >= ihl:		# 0 with segmentation offload
            ip = ip[:total]
        tcp = ip[ihl:]
        if len(tcp) < 20:
            continue
        sport, dport = struct.unpack("!HH", tcp[:4])
        doff = (tcp[12] >> 4) * 4
        src = ".".join(str(b) for b in ip[12:16])
        dst = ".".join(str(b) for b in ip[16:20])
        out.append((src, dst, sport, dport, bytes(tcp[doff:])))
    return raw, out


# ----------------------------------------------------------- topology

def run(argv, timeout=10.0, ok=True):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    if ok and p.returncode != 0:
        raise AssertionError("%s: exit %d: %s" % (
            " ".join(argv), p.returncode,
            p.stderr.decode("utf-8", "replace").strip()))
    return p


class Stack:
    """Namespaces, veths, helper processes; close() undoes all of it."""

    def __init__(self, env):
        self.env = env
        tag = "%d-%s" % (os.getpid(), os.urandom(3).hex())
        self.ns = {k: "mtlsd-it-%s-%s" % (tag, k) for k in "abc"}
        self.created = []
        self.procs = []		# (label, Popen)
        x = os.getpid() % 250 + 1
        self.a_ip, self.b_ip = "10.231.%d.1" % x, "10.231.%d.2" % x
        self.c_ip, self.b2_ip = "10.231.%d.5" % x, "10.231.%d.6" % x
        self.script = env.path("svc.py")
        with open(self.script, "w") as f:
            f.write(SERVICE_PY)

    def exec_argv(self, k, argv):
        return ["ip", "netns", "exec", self.ns[k]] + list(argv)

    def build(self):
        for k in "abc":
            p = run(["ip", "netns", "add", self.ns[k]], ok=False)
            if p.returncode != 0:
                raise Skip("ip netns add is impossible here: %s" % p.stderr
                           .decode("utf-8", "replace").strip())
            self.created.append(self.ns[k])
        a, b, c = self.ns["a"], self.ns["b"], self.ns["c"]
        run(["ip", "link", "add", "va", "netns", a, "type", "veth",
             "peer", "name", "vb", "netns", b])
        run(["ip", "link", "add", "vc", "netns", c, "type", "veth",
             "peer", "name", "vb2", "netns", b])
        for ns, dev, addr in ((a, "va", self.a_ip), (b, "vb", self.b_ip),
                              (c, "vc", self.c_ip), (b, "vb2", self.b2_ip)):
            run(["ip", "-n", ns, "addr", "add", addr + "/30", "dev", dev])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        for ns in (a, b, c):
            run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def spawn(self, label, k, argv, stdout=None, stderr=None):
        p = subprocess.Popen(self.exec_argv(k, argv),
                             stdin=subprocess.DEVNULL,
                             stdout=stdout or subprocess.DEVNULL,
                             stderr=stderr or subprocess.DEVNULL)
        self.procs.append((label, p))
        return p

    def echo_service(self, k, host, port, logname):
        """The echo service; returns its log path once it listens."""
        log = self.env.path(logname)
        open(log, "w").close()
        p = self.spawn("echo " + logname, k, [PY, self.script, "echo",
                                              host, str(port), log],
                       stdout=subprocess.PIPE)
        r, _, _ = select.select([p.stdout], [], [], 10)
        line = p.stdout.readline() if r else b""
        check(line.strip() == b"ready", "echo service %s:%s in %s did "
              "not start (exit %s)" % (host, port, k, p.poll()))
        return log

    def py(self, k, *args, timeout=20.0):
        p = run(self.exec_argv(k, [PY, self.script] + list(args)),
                timeout=timeout, ok=False)
        return p

    def mtlsd(self, k, conf):
        log_path = self.env.path("mtlsd-%s.log" % k)
        m = harness.Mtlsd(self.env, self.exec_argv(
            k, [harness.MTLSD, "-c", conf]), log_path)
        self.env.procs.append(m)
        deadline = time.monotonic() + 10
        while "serving with" not in m.log():
            if not m.alive():
                raise AssertionError("mtlsd in %s exited with %s:\n%s"
                                     % (k, m.wait_exit(1), m.log()))
            check(time.monotonic() < deadline, "mtlsd in %s not serving "
                  "in 10 s:\n%s" % (k, m.log()))
            time.sleep(0.03)
        return m

    def stop(self, p, sig=signal.SIGTERM):
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        for f in (p.stdout, p.stderr):
            if f is not None:
                f.close()

    def close(self):
        problems = []
        for _, p in self.procs:
            try:
                self.stop(p)
            except Exception as e:
                problems.append(repr(e))
        for m in self.env.procs:
            try:
                m.stop(timeout=10)
            except Exception as e:
                problems.append(repr(e))
        for ns in self.created:
            p = run(["ip", "netns", "del", ns], ok=False)
            if p.returncode != 0:
                problems.append("ip netns del %s: %s" % (ns, p.stderr))
        return problems


class Capture:
    """tcpdump (or, without it, a standard-library AF_PACKET capture)."""

    def __init__(self, stack, k, iface):
        self.path = stack.env.path("veth-%s.pcap" % iface)
        self.errpath = stack.env.path("capture.err")
        self.errf = open(self.errpath, "wb")
        tcpdump = shutil.which("tcpdump") or (
            "/usr/sbin/tcpdump" if os.access("/usr/sbin/tcpdump", os.X_OK)
            else None)
        if tcpdump:
            self.tool = "tcpdump"
            # Packets written as they come (-U, --immediate-mode); no
            # switch to the tcpdump user, who may not write here.
            argv = [tcpdump, "-i", iface, "-n", "-U", "--immediate-mode",
                    "-s", "0", "-Z", "root", "-w", self.path]
        else:
            self.tool = "AF_PACKET (tcpdump is not installed)"
            argv = [PY, stack.script, "capture", iface, self.path]
        self.p = stack.spawn("capture", k, argv, stderr=self.errf)
        self.stack = stack
        deadline = time.monotonic() + 10
        while b"listening on" not in self.err():
            check(self.p.poll() is None, "capture %s ended: %s"
                  % (self.tool, self.err()))
            check(time.monotonic() < deadline, "capture not started in "
                  "10 s: %s" % self.err())
            time.sleep(0.05)

    def err(self):
        with open(self.errpath, "rb") as f:
            return f.read()

    def finish(self):
        time.sleep(0.2)		# the last segments reach the capture
        self.stack.stop(self.p, signal.SIGINT)
        self.errf.close()
        return read_pcap(self.path)


def test_netns_compose_stack(env):
    if os.geteuid() != 0:
        raise Skip("network namespaces need root")
    if shutil.which("ip") is None and not os.access("/usr/sbin/ip",
                                                    os.X_OK):
        raise Skip("iproute2 (ip) is not installed")
    st = Stack(env)
    try:
        st.build()
        _compose(env, st)
    finally:
        problems = st.close()
    check(not problems, "cleaning up: %s" % problems)
    left = run(["ip", "netns", "list"]).stdout.decode()
    for ns in st.created:
        check(ns not in left, "namespace %s left behind" % ns)


def _compose(env, st):
    b_log = st.echo_service("b", "127.0.0.1", 7001, "b-service.log")
    # The positive control of the capture: plaintext over the same veth.
    canary_log = st.echo_service("b", st.b_ip, 7999, "b-canary.log")
    cap = Capture(st, "b", "vb")

    b_conf = env.config(inbound=[{
        "name": "from-a", "listen": "0.0.0.0:7443",
        "target": "127.0.0.1:7001", "allow": {"uri": [WEB_URI]}}],
        tls=server_tls(), workers=1)
    a_conf = env.config(outbound=[{
        "name": "to-b", "listen": "127.0.0.1:7000",
        "target": "%s:7443" % st.b_ip, "server_name": "api.example.org",
        "allow": {"uri": [API_URI]}}], tls=client_tls("client"), workers=1)
    mb = st.mtlsd("b", b_conf)
    ma = st.mtlsd("a", a_conf)

    # A's service talks plaintext to its own sidecar and gets its marker
    # back from B's service.
    marker = "PLAINTEXT-MARKER-%s" % os.urandom(8).hex()
    p = st.py("a", "client", "127.0.0.1", "7000", marker)
    got = p.stdout.decode("latin-1")
    check(p.returncode == 0 and got == marker, "A's service through the "
          "sidecars: exit %d, got %r, want %r: %s"
          % (p.returncode, got[:80], marker,
             p.stderr.decode("utf-8", "replace")[-400:]))
    canary = "PLAINTEXT-CANARY-%s" % os.urandom(8).hex()
    p = st.py("a", "client", st.b_ip, "7999", canary)
    check(p.returncode == 0 and p.stdout.decode("latin-1") == canary,
          "plaintext canary A -> B: exit %d, %r" % (p.returncode,
                                                   p.stdout[:80]))

    # The sidecars saw each other's identities.
    lines = mb.wait_log(r"\bconn\b.*peer=%s:" % re.escape(st.a_ip))
    d = parse_line(lines[0])
    check(d.get("identity") == WEB_URI and d.get("result") == "ok",
          "B's conn line for A: %s" % lines[0])
    lines = ma.wait_log(r"\bconn\b.*route=to-b")
    d = parse_line(lines[0])
    check(d.get("identity") == API_URI and d.get("result") == "ok",
          "A's conn line for B: %s" % lines[0])

    # The intruder in C: a valid certificate, the wrong workload.
    p = st.py("c", "intruder", st.b2_ip, "7443", cert("other.crt"),
              cert("other.key"), cert("ca-bundle.crt"))
    check(p.returncode == 0, "intruder client failed to run: %s"
          % p.stderr.decode("utf-8", "replace")[-400:])
    out = json.loads(p.stdout.decode().strip().splitlines()[-1])
    check(out["data"] == "" and out["outcome"] != "open",
          "the intruder got through: %r" % out)
    peer = "%s:%d" % (st.c_ip, out["lport"])
    lines = mb.wait_log(r"\breject\b.*peer=%s\b" % re.escape(peer))
    check(len(lines) == 1, "want one reject line for %s: %s"
          % (peer, lines))
    d = parse_line(lines[0])
    check(d.get("stage") == "identity" and INTRUDER_URI in lines[0],
          "B's reject line does not name the stage and the intruder's "
          "identity: %s" % lines[0])

    pkts_raw, pkts = cap.finish()
    time.sleep(0.2)
    with open(b_log) as f:
        conns = [json.loads(l) for l in f if l.strip()]
    check(len(conns) == 1 and conns[0]["data"] == marker,
          "B's service: want exactly the one connection of A's service "
          "(with the marker), saw %r" % conns)
    with open(canary_log) as f:
        check(canary in f.read(), "the canary service saw no canary")

    # The wire: TLS on 7443 both ways, the marker nowhere, and the
    # plaintext canary (sent the same way on purpose) visible.
    tls = [x for x in pkts if 7443 in (x[2], x[3])]
    check(tls, "no packet on port 7443 in the capture (%s, %d packets)"
          % (cap.tool, len(pkts)))
    check(all({x[0], x[1]} == {st.a_ip, st.b_ip} for x in tls),
          "port 7443 packets between other hosts: %r"
          % sorted({(x[0], x[1]) for x in tls}))
    to_b = b"".join(x[4] for x in tls if x[3] == 7443)
    to_a = b"".join(x[4] for x in tls if x[2] == 7443)
    check(to_b[:2] == b"\x16\x03" and to_a[:2] == b"\x16\x03",
          "the streams on 7443 do not start with a TLS handshake record: "
          "%r / %r" % (to_b[:8], to_a[:8]))
    check(to_b[5:6] == b"\x01" and to_a[5:6] == b"\x02",
          "no ClientHello / ServerHello on 7443: %r / %r"
          % (to_b[:8], to_a[:8]))
    check(not any(7001 in (x[2], x[3]) or 7000 in (x[2], x[3])
                  for x in pkts), "the plaintext ports 7000/7001 are on "
          "the wire")
    m = marker.encode()
    check(m not in pkts_raw and m not in to_b and m not in to_a,
          "the marker %s is in the capture: plaintext on the wire" % marker)
    check(canary.encode() in pkts_raw, "control: the plaintext canary is "
          "not in the capture (%s): the capture proves nothing" % cap.tool)

    for name, m in (("A", ma), ("B", mb)):
        rc = m.stop()
        check(rc == 0, "mtlsd %s: exit status %s after SIGTERM:\n%s"
              % (name, rc, m.log()))
