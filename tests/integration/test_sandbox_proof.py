"""
The sandbox's remaining promises, each proven from the outside:

- the read-back self-check fails closed: a test build (-DMTLSD_TEST) told
  by MTLSD_TEST_SKIP to leave out one drop step exits 1 before serving,
  with one error line naming the failed check, and nothing on its port
  ever completes a handshake; without the skip the same set-up serves;
- `sandbox = { seccomp = false; }` warns at start and reads back Seccomp 0,
  the default (filter on) does not warn;
- `user`/`group` by name and by number is what /proc shows for every
  thread, with no supplementary groups, an empty bounding set, no core
  files and a non-dumpable process;
- it runs unchanged on a read-only root (a private mount namespace).

Where the filter is on, LeakSanitizer is off (the filter rightly kills its
exit scan); where it is off, leak detection stays on, as in the harness.
Every process here is started by this module and stopped by its PID.
"""
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

import harness
from harness import (Skip, WEB_URI, assert_echo, check, client_context,
                     inbound_route, leaf_sha256, parse_line,
                     peer_fingerprint, random_bytes, server_tls)

NO_LSAN = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1"}
REFUSE_WITHIN = 6.0	# seconds: it starts in well under one


def need_root(why="needs root"):
    if os.geteuid() != 0:
        raise Skip(why)


def need_tool(name):
    for d in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(
            ":") + ["/usr/sbin", "/sbin"]:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    raise Skip("%s is not installed" % name)


# ------------------------------------------------------------ starting

def launch(env, conf, prefix=(), environ=None, ready=True, timeout=10.0):
    """
    mtlsd -c CONF behind `prefix` (a wrapper that execs it, so the PID is
    mtlsd's); registered with env, so that env.close() stops it too.
    With ready, waits for "serving with" (and fails if it exits first).
    """
    log_path = env.path("mtlsd%d.log" % (len(env.procs) + 1))
    m = harness.Mtlsd(env, list(prefix) + [harness.MTLSD, "-c", conf],
                      log_path, environ)
    env.procs.append(m)
    if ready:
        wait_serving(m, timeout)
    return m


def wait_serving(m, timeout=10.0):
    deadline = time.monotonic() + timeout
    while "serving with" not in m.log():
        if not m.alive():
            m.stop()
            raise AssertionError("mtlsd exited with %s before it served:\n%s"
                                 % (m.rc, m.log()))
        if time.monotonic() > deadline:
            raise harness.Timeout("mtlsd not serving within %.1f s"
                                  % timeout)
        time.sleep(0.03)


def inbound_conf(env, target, seccomp=None, workers=2, extra=None,
                 tls=None, port=None):
    port = port or env.port()
    conf = env.config(inbound=[inbound_route(
        "api", "127.0.0.1:%d" % port, target, {"uri": [WEB_URI]})],
        seccomp=seccomp, workers=workers, extra=extra, tls=tls)
    return conf, port


def lsan_env(seccomp):
    """Leak detection only where no filter will be in place at exit."""
    return {} if seccomp is False else dict(NO_LSAN)


# ------------------------------------------------------------ /proc

def status_fields(path):
    d = {}
    with open(path) as f:
        for l in f:
            k, _, v = l.partition(":")
            d[k] = v.strip()
    return d


def threads(pid):
    """{tid: status fields} of every thread of pid."""
    out = {}
    for tid in sorted(os.listdir("/proc/%d/task" % pid)):
        try:
            out[tid] = status_fields("/proc/%d/task/%s/status" % (pid, tid))
        except FileNotFoundError:	# ended meanwhile
            continue
    return out


def own_seccomp():
    return status_fields("/proc/self/status").get("Seccomp")


def check_every_thread(m, uid=None, gid=None, seccomp="2", bounding=True,
                       min_threads=3):
    """
    The contract's state on every thread of m; returns the thread count.
    uid/gid None: anything but 0.
    """
    ts = threads(m.pid)
    check(len(ts) >= min_threads, "expected at least %d threads (main + "
          "workers), saw %d" % (min_threads, len(ts)))
    for tid, st in ts.items():
        where = "thread %s of pid %d" % (tid, m.pid)
        uids = st.get("Uid", "").split()
        gids = st.get("Gid", "").split()
        check(len(uids) == 4 and len(gids) == 4, "%s: no Uid/Gid lines: "
              "%r %r" % (where, uids, gids))
        if uid is None:
            check("0" not in uids, "%s runs with uid %s" % (where, uids))
        else:
            check(uids == [str(uid)] * 4, "%s: Uid %s, want %s (real, "
                  "effective, saved, fs)" % (where, uids, uid))
        if gid is None:
            check("0" not in gids, "%s runs with gid %s" % (where, gids))
        else:
            check(gids == [str(gid)] * 4, "%s: Gid %s, want %s" % (
                where, gids, gid))
        check(st.get("Groups", "x") == "", "%s keeps supplementary groups "
              "%r" % (where, st.get("Groups")))
        caps = ["CapEff", "CapPrm", "CapInh", "CapAmb"]
        if bounding:
            caps.append("CapBnd")
        for cap in caps:
            check(int(st.get(cap, "1"), 16) == 0, "%s has %s %s"
                  % (where, cap, st.get(cap)))
        check(st.get("NoNewPrivs") == "1", "%s NoNewPrivs %s"
              % (where, st.get("NoNewPrivs")))
        check(st.get("Seccomp") == seccomp, "%s Seccomp %s, want %s"
              % (where, st.get("Seccomp"), seccomp))
    return len(ts)


def core_limit(pid):
    """(soft, hard) of 'Max core file size' in /proc/PID/limits."""
    with open("/proc/%d/limits" % pid) as f:
        for l in f:
            if l.startswith("Max core file size"):
                w = l[len("Max core file size"):].split()
                return w[0], w[1]
    raise AssertionError("no core limit line in /proc/%d/limits" % pid)


def level_lines(m, level):
    return [l for l in m.lines() if parse_line(l).get("level") == level]


# ------------------------------------------------ the self-check fails

class Prober(threading.Thread):
    """
    Knocks on 127.0.0.1:port from before mtlsd starts until stopped: each
    TCP connection that gets through tries a full TLS handshake with the
    allowed client certificate.  None may ever complete.  (The listeners
    are bound before the sandbox, so a refusing mtlsd has its port open
    for a millisecond or so: the kernel may queue a connection then, but
    mtlsd must never accept it.  Most runs see only refusals; an mtlsd
    that served anyway would complete handshakes here.)
    """

    def __init__(self, port, deadline=15.0):
        super().__init__(daemon=True)
        self.port = port
        self.ctx = client_context("client", check_hostname=False)
        self.stop_ev = threading.Event()
        self.deadline = time.monotonic() + deadline
        self.attempts = self.tcp_ok = self.handshakes = 0
        self.data = b""

    def run(self):
        while not self.stop_ev.is_set() and \
                time.monotonic() < self.deadline:
            self.attempts += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(1.0)
            try:
                s.connect(("127.0.0.1", self.port))
            except OSError:
                s.close()
                time.sleep(0.0005)
                continue
            self.tcp_ok += 1
            try:
                t = self.ctx.wrap_socket(s, server_hostname=None)
                self.handshakes += 1	# mtlsd answered: it served
                t.sendall(b"x")
                self.data += t.recv(100)
                t.close()
            except (OSError, ssl.SSLError):
                pass
            finally:
                s.close()

    def finish(self):
        self.stop_ev.set()
        self.join(timeout=5)


def assert_refuses(env, skip, want, seccomp=None, prefix=()):
    """
    mtlsd with MTLSD_TEST_SKIP=skip: exit 1 before serving, one error
    line that names `want`, no handshake ever completed on its port, the
    target never reached, and the port refused once it exited.
    """
    rec = env.recorder()
    conf, port = inbound_conf(env, rec.addr, seccomp=seccomp)
    environ = {"MTLSD_TEST_SKIP": skip}
    environ.update(lsan_env(seccomp))
    probe = Prober(port)
    probe.start()
    try:
        m = launch(env, conf, prefix, environ, ready=False)
        rc = m.wait_exit(REFUSE_WITHIN)
    finally:
        probe.finish()
    if rc is None:
        m.stop()
        raise AssertionError("MTLSD_TEST_SKIP=%s: mtlsd still running "
                             "after %.0f s (it should refuse to serve; %d "
                             "TLS handshake(s) completed on its port):\n%s"
                             % (skip, REFUSE_WITHIN, probe.handshakes,
                                m.log()))
    log = m.log()
    check(rc == 1, "MTLSD_TEST_SKIP=%s: exit status %s, want 1:\n%s"
          % (skip, rc, log))
    check("serving with" not in log and " started with " not in log,
          "MTLSD_TEST_SKIP=%s: it served before it exited:\n%s"
          % (skip, log))
    errs = level_lines(m, "error")
    check(len(errs) == 1, "MTLSD_TEST_SKIP=%s: want one error line, got "
          "%d:\n%s" % (skip, len(errs), log))
    check(want in errs[0] and "refusing to serve" in errs[0],
          "MTLSD_TEST_SKIP=%s: the error line does not name %r: %s"
          % (skip, want, errs[0]))
    check(probe.attempts > 0, "the prober never ran")
    check(probe.handshakes == 0 and probe.data == b"",
          "MTLSD_TEST_SKIP=%s: %d TLS handshake(s) completed on the port "
          "of an mtlsd that refused to serve (got %r)"
          % (skip, probe.handshakes, probe.data[:40]))
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        raise AssertionError("MTLSD_TEST_SKIP=%s: port %d still accepts "
                             "after mtlsd exited" % (skip, port))
    except ConnectionRefusedError:
        pass
    finally:
        s.close()
    time.sleep(0.1)
    check(rec.connections == 0, "MTLSD_TEST_SKIP=%s: the target saw %d "
          "connection(s)" % (skip, rec.connections))
    return errs[0]


def assert_serves(env, seccomp=None, prefix=(), environ=None, uid=None,
                  gid=None, bounding=True):
    """The positive control: the same set-up serves, and is sandboxed."""
    echo = env.echo()
    conf, port = inbound_conf(env, echo.addr, seccomp=seccomp)
    e = lsan_env(seccomp)
    e.update(environ or {})
    m = launch(env, conf, prefix, e)
    check(level_lines(m, "error") == [], "error lines from an mtlsd that "
          "serves:\n%s" % m.log())
    check_every_thread(m, uid=uid, gid=gid, bounding=bounding,
                       seccomp="2" if seccomp is not False
                       else own_seccomp())
    assert_echo(port)
    rc = m.stop()
    check(rc == 0, "exit status %s after SIGTERM:\n%s" % (rc, m.log()))
    return m


def test_selfcheck_positive_control_serves(env):
    # Without a skip the very set-up the refusals use serves.
    need_root("needs root to see the privilege drop")
    m = assert_serves(env)
    check(re.search(r"sandbox: uid=65534 gid=65534 CapEff=0+ CapPrm=0+ "
                    r"CapBnd=0+ CapAmb=0+ NoNewPrivs=1 Seccomp=2", m.log()),
          "no read-back line with the dropped state:\n%s" % m.log())


def test_selfcheck_skip_seccomp_refuses(env):
    assert_refuses(env, "seccomp", "Seccomp is 0, not 2")


def test_selfcheck_skip_setuid_refuses(env):
    need_root("the switch of user happens only when started as root")
    assert_refuses(env, "setuid", "Uid is 0")


def test_selfcheck_skip_bounding_refuses(env):
    need_root("the bounding set is emptied only when started as root")
    assert_refuses(env, "bounding", "bounding set not empty")


def test_selfcheck_skip_nnp_refuses(env):
    # libseccomp's seccomp_load() sets no_new_privs itself (its NNP
    # attribute defaults to on), so the skip shows only with the filter
    # off; the next test covers the filter on.
    assert_refuses(env, "nnp", "NoNewPrivs is 0, not 1", seccomp=False)


def test_selfcheck_skip_nnp_with_filter_never_serves_without_nnp(env):
    # Whatever installs it, mtlsd must never serve with NoNewPrivs 0: it
    # either refuses, or every thread reads back NoNewPrivs 1.
    echo = env.echo()
    conf, port = inbound_conf(env, echo.addr)
    e = dict(NO_LSAN)
    e["MTLSD_TEST_SKIP"] = "nnp"
    m = launch(env, conf, environ=e, ready=False)
    deadline = time.monotonic() + 10
    while m.alive() and "serving with" not in m.log() and \
            time.monotonic() < deadline:
        time.sleep(0.03)
    if not m.alive():
        check(m.wait_exit(1) == 1 and "serving with" not in m.log(),
              "MTLSD_TEST_SKIP=nnp: exit %s:\n%s" % (m.rc, m.log()))
        return
    check("serving with" in m.log(), "neither serving nor refusing in 10 s")
    for tid, st in threads(m.pid).items():
        check(st.get("NoNewPrivs") == "1", "thread %s serves with "
              "NoNewPrivs %s" % (tid, st.get("NoNewPrivs")))
    assert_echo(port)


# The kernel's own set-uid fix-up empties the permitted and effective sets
# when root becomes another user, which hides a skipped capset().  The
# securebit NO_SETUID_FIXUP (kept across execve) turns that fix-up off, so
# only mtlsd's own clearing can empty them.
NO_FIXUP = ["setpriv", "--securebits", "+no_setuid_fixup", "--"]


def test_selfcheck_skip_caps_as_root_refuses(env):
    need_root("needs root")
    need_tool("setpriv")
    line = assert_refuses(env, "caps", "capabilities remain",
                          prefix=NO_FIXUP)
    check("CapEff=0 " not in line, "the refusal names no capability: %s"
          % line)


def test_selfcheck_no_setuid_fixup_control_serves(env):
    # The positive control of the one above: mtlsd itself empties them.
    need_root("needs root")
    need_tool("setpriv")
    assert_serves(env, prefix=NO_FIXUP)


# Started as an ordinary user that holds a capability (ambient, so that it
# survives the execve): the capability sets are mtlsd's to empty.
UNPRIV_CAP = ["setpriv", "--reuid", "65534", "--regid", "65534",
              "--clear-groups", "--inh-caps", "+net_bind_service",
              "--ambient-caps", "+net_bind_service", "--"]


def test_selfcheck_skip_caps_unprivileged_refuses(env):
    need_root("needs root to start mtlsd as another user")
    need_tool("setpriv")
    assert_refuses(env, "caps", "capabilities remain (CapEff=400",
                   prefix=UNPRIV_CAP)


def test_selfcheck_unprivileged_with_cap_control_serves(env):
    need_root("needs root to start mtlsd as another user")
    need_tool("setpriv")
    # Not started as root: the bounding set stays (the contract asks it
    # only of a start with CAP_SETPCAP as root).
    assert_serves(env, prefix=UNPRIV_CAP, uid=65534, gid=65534,
                  bounding=False)


# --------------------------------------------------- seccomp = false

def test_seccomp_off_warns_and_reads_back_zero(env):
    echo = env.echo()
    conf, port = inbound_conf(env, echo.addr, seccomp=False)
    m = launch(env, conf, environ=lsan_env(False))
    warns = [l for l in level_lines(m, "warn")
             if "seccomp filter is OFF" in l]
    check(len(warns) == 1, "want one warning that the seccomp filter is "
          "OFF, got %d:\n%s" % (len(warns), m.log()))
    # Every other step still in place; Seccomp as inherited (0 here, or
    # the container's own mode where the test runs under one).
    want = own_seccomp()
    check(want is not None, "no Seccomp line in /proc/self/status")
    check_every_thread(m, seccomp=want,
                       bounding=os.geteuid() == 0)
    if os.geteuid() == 0:
        check(want == "0", "the test runs under a seccomp filter of its "
              "own (Seccomp %s): cannot see 0" % want)
    assert_echo(port)
    m.signal(signal.SIGHUP)
    m.wait_log(r"generation 2 in service")
    assert_echo(port)
    check_every_thread(m, seccomp=want, bounding=os.geteuid() == 0)
    rc = m.stop()
    check(rc == 0, "exit status %s:\n%s" % (rc, m.log()))


def test_seccomp_default_on_no_warning(env):
    echo = env.echo()
    # The key left out (the default), then written out as true.
    for seccomp in (None, True):
        conf, port = inbound_conf(env, echo.addr, seccomp=seccomp)
        m = launch(env, conf, environ=NO_LSAN)
        check("seccomp filter is OFF" not in m.log(),
              "sandbox.seccomp=%s: warns that the filter is off:\n%s"
              % (seccomp, m.log()))
        check(not [l for l in level_lines(m, "warn") + level_lines(
            m, "error") if "seccomp" in l.lower()],
            "a seccomp warning with the filter on:\n%s" % m.log())
        check_every_thread(m, seccomp="2", bounding=os.geteuid() == 0)
        assert_echo(port)
        rc = m.stop()
        check(rc == 0, "exit status %s under the filter (-31: SIGSYS):\n%s"
              % (rc, m.log()))


# --------------------------------------------------------- user/group

def check_identity(env, user, group, uid, gid):
    echo = env.echo()
    extra = {}
    if user is not None:
        extra["user"] = user
    if group is not None:
        extra["group"] = group
    conf, port = inbound_conf(env, echo.addr, extra=extra)
    m = launch(env, conf, environ=NO_LSAN)
    check_every_thread(m, uid=uid, gid=gid)
    check(re.search(r"sandbox: uid=%d gid=%d " % (uid, gid), m.log()),
          "the read-back line does not show uid=%d gid=%d:\n%s"
          % (uid, gid, m.log()))
    assert_echo(port)
    # A reload reads the files again as that user.
    m.signal(signal.SIGHUP)
    m.wait_log(r"generation 2 in service")
    assert_echo(port)
    check_every_thread(m, uid=uid, gid=gid)
    rc = m.stop()
    check(rc == 0, "exit status %s:\n%s" % (rc, m.log()))


def test_user_group_by_name(env):
    need_root("needs root to switch user")
    import grp
    import pwd
    for user, group in (("nobody", "nogroup"), ("daemon", "bin")):
        try:
            uid = pwd.getpwnam(user).pw_uid
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise Skip("no user %s or group %s here" % (user, group))
        check_identity(env, user, group, uid, gid)
    # daemon:bin (1:2 on Debian) is not the default 65534:65534, so the
    # names were looked up, not ignored.


def test_user_group_by_number(env):
    need_root("needs root to switch user")
    check_identity(env, "65533", "65533", 65533, 65533)
    check_identity(env, "4242", "4343", 4242, 4343)


def test_user_root_or_unknown_refused(env):
    need_root("needs root to switch user")
    rec = env.recorder()
    cases = (({"user": "root"}, "must not be root"),
             ({"user": "0"}, "must not be root"),
             ({"group": "root"}, "must not be root"),
             ({"group": "0"}, "must not be root"),
             ({"user": "no-such-user-mtlsd"},
              'no such user "no-such-user-mtlsd"'),
             ({"group": "no-such-group-mtlsd"},
              'no such group "no-such-group-mtlsd"'))
    for extra, want in cases:
        conf, port = inbound_conf(env, rec.addr, extra=extra)
        m = launch(env, conf, environ=NO_LSAN, ready=False)
        rc = m.wait_exit(REFUSE_WITHIN)
        if rc is None:
            m.stop()
        log = m.log()
        check(rc not in (None, 0) and rc > 0, "%r: exit status %s, want "
              "a refusal:\n%s" % (extra, rc, log))
        check("serving with" not in log, "%r: it served:\n%s"
              % (extra, log))
        errs = level_lines(m, "error")
        check(len(errs) == 1 and want in errs[0], "%r: want one error "
              "line naming %r:\n%s" % (extra, want, log))
        check(not harness.is_listening("127.0.0.1:%d" % port),
              "%r: port %d still listening" % (extra, port))
    check(rec.connections == 0, "the target was reached")


# ---------------------------------------------- no core, not dumpable

CORE_UNLIMITED = ["prlimit", "--core=unlimited:unlimited", "--"]


def as_user(uid, gid):
    return ["setpriv", "--reuid", str(uid), "--regid", str(gid),
            "--clear-groups", "--"]


def environ_readable_by(pid, uid, gid):
    """Whether uid:gid (no capability) can read /proc/PID/environ."""
    p = subprocess.run(as_user(uid, gid) + ["cat", "/proc/%d/environ" % pid],
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=10)
    return p.returncode == 0, p.stderr.decode("utf-8", "replace").strip()


def check_not_dumpable(env, m, uid, gid):
    """
    A non-dumpable process: the kernel makes root the owner of its /proc
    files (they would be uid's otherwise) and refuses its environ even to
    a process of the same uid.  A dumpable control process of the same
    uid shows the opposite, so the method can tell them apart.
    """
    ctl = subprocess.Popen(as_user(uid, gid) + ["sleep", "30"],
                           stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                st = status_fields("/proc/%d/status" % ctl.pid)
                if st.get("Name") == "sleep":
                    break
            except OSError:
                pass
            time.sleep(0.02)
        owner = os.stat("/proc/%d/status" % ctl.pid).st_uid
        check(owner == uid, "control: /proc/%d/status of a dumpable "
              "process of uid %d is owned by %d" % (ctl.pid, uid, owner))
        ok, err = environ_readable_by(ctl.pid, uid, gid)
        check(ok, "control: uid %d cannot read the environ of its own "
              "dumpable process: %s" % (uid, err))
    finally:
        if ctl.poll() is None:
            os.kill(ctl.pid, signal.SIGKILL)
        ctl.wait(timeout=5)
    for tid in os.listdir("/proc/%d/task" % m.pid):
        path = "/proc/%d/task/%s/status" % (m.pid, tid)
        st = status_fields(path)
        check(st.get("Uid", "").split()[:1] == [str(uid)],
              "thread %s runs as %s, not %d" % (tid, st.get("Uid"), uid))
        owner = os.stat(path).st_uid
        check(owner == 0, "%s is owned by uid %d: thread %s is dumpable"
              % (path, owner, tid))
    ok, err = environ_readable_by(m.pid, uid, gid)
    check(not ok, "uid %d reads /proc/%d/environ of mtlsd: it is dumpable"
          % (uid, m.pid))
    check("Permission denied" in err, "reading mtlsd's environ failed "
          "for another reason: %s" % err)


def check_no_core(m):
    soft, hard = core_limit(m.pid)
    check((soft, hard) == ("0", "0"), "mtlsd's RLIMIT_CORE is %s/%s, want "
          "0/0 (started with unlimited)" % (soft, hard))


def core_unlimited_works():
    need_tool("prlimit")
    p = subprocess.run(CORE_UNLIMITED + ["cat", "/proc/self/limits"],
                       capture_output=True, timeout=10)
    text = p.stdout.decode()
    check(re.search(r"Max core file size\s+unlimited\s+unlimited", text),
          "control: prlimit does not raise RLIMIT_CORE here:\n%s" % text)


def test_no_core_and_not_dumpable_as_root(env):
    need_root("needs root to switch user")
    need_tool("setpriv")
    core_unlimited_works()
    echo = env.echo()
    conf, port = inbound_conf(env, echo.addr,
                              extra={"user": "65533", "group": "65533"})
    m = launch(env, conf, CORE_UNLIMITED, NO_LSAN)
    check_every_thread(m, uid=65533, gid=65533)
    check_no_core(m)
    check_not_dumpable(env, m, 65533, 65533)
    assert_echo(port)


def test_not_dumpable_started_unprivileged(env):
    # Root turning into another user makes the kernel itself set the
    # process non-dumpable (fs.suid_dumpable); started as that user
    # already, only mtlsd's own prctl can.
    need_root("needs root to start mtlsd as another user")
    need_tool("setpriv")
    core_unlimited_works()
    echo = env.echo()
    conf, port = inbound_conf(env, echo.addr)
    m = launch(env, conf, CORE_UNLIMITED + as_user(65533, 65533), NO_LSAN)
    check_every_thread(m, uid=65533, gid=65533, bounding=False)
    check_no_core(m)
    check_not_dumpable(env, m, 65533, 65533)
    assert_echo(port)


# ----------------------------------------------------- read-only root

RO_SETUP = "mount --make-rprivate / && mount -o remount,bind,ro /"


def test_readonly_root(env):
    need_root("needs root for a mount namespace")
    unshare = need_tool("unshare")
    p = subprocess.run([unshare, "-m", "--", "/bin/sh", "-c", RO_SETUP],
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=10)
    if p.returncode != 0:
        raise Skip("no read-only root here: unshare -m sh -c '%s': exit "
                   "%d: %s" % (RO_SETUP, p.returncode,
                               p.stderr.decode("utf-8", "replace").strip()))
    # The certificates where the test can replace them (from outside the
    # namespace, where the same files stay writable).
    import shutil

    def install(name):
        for ext in (".key", ".crt"):
            shutil.copy(harness.cert(name + ext), env.path(".tmp" + ext))
            os.rename(env.path(".tmp" + ext), env.path("svc" + ext))
    install("server")
    echo = env.echo()
    conf, port = inbound_conf(env, echo.addr, tls=server_tls(
        cert=env.path("svc.crt"), key=env.path("svc.key")))
    probe = "/mtlsd-ro-probe-%d" % os.getpid()
    script = (RO_SETUP + " || exit 97\n"
              "for f in %s %s; do\n"
              "  if touch \"$f\" 2>/dev/null; then\n"
              "    echo \"RO-PROBE: $f is writable\" >&2; rm -f \"$f\"; "
              "exit 98\n"
              "  fi\n"
              "  echo \"RO-PROBE: $(touch \"$f\" 2>&1)\" >&2\n"
              "done\n"
              "exec \"$@\"\n") % (probe, env.path("ro-probe"))
    m = launch(env, conf, [unshare, "-m", "--", "/bin/sh", "-c", script,
                           "sh"], NO_LSAN)
    log = m.log()
    for f in (probe, env.path("ro-probe")):
        check(re.search(r"RO-PROBE: .*%s.*Read-only file system"
                        % re.escape(f), log),
              "a write to %s inside the namespace did not fail as "
              "read-only:\n%s" % (f, log))
        check(not os.path.exists(f), "%s exists" % f)
    # mtlsd itself (this PID: every wrapper exec'd) sees / read-only, in
    # a mount namespace of its own, while the test's / stays writable.
    check(os.readlink("/proc/%d/ns/mnt" % m.pid) !=
          os.readlink("/proc/self/ns/mnt"), "mtlsd shares the test's "
          "mount namespace")
    check(status_fields("/proc/%d/status" % m.pid).get("Name") == "mtlsd",
          "pid %d is not mtlsd" % m.pid)

    def root_opts(pid):
        with open("/proc/%s/mountinfo" % pid) as f:
            for l in f:
                w = l.split()
                if w[4] == "/":
                    opts = w[5].split(",")
            return opts
    check("ro" in root_opts(m.pid), "mtlsd's / is mounted %s"
          % root_opts(m.pid))
    check("rw" in root_opts("self"), "the test's own / is not writable: "
          "the proof would prove nothing")
    check_every_thread(m, bounding=True)
    data = random_bytes(256 * 1024)
    assert_echo(port, data=data)
    # SIGHUP reads every file again, on the read-only root: the new
    # certificate is served afterwards.
    install("other")
    m.signal(signal.SIGHUP)
    m.wait_log(r"generation 2 in service")
    deadline = time.monotonic() + 5
    while peer_fingerprint(port) != leaf_sha256("other") and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    check(peer_fingerprint(port) == leaf_sha256("other"),
          "after SIGHUP on a read-only root the new certificate is not "
          "served:\n%s" % m.log())
    check(m.alive(), "mtlsd died reloading on a read-only root")
    # (other's certificate names no IP address: no host name check)
    assert_echo(port, data=data, check_hostname=False)
    rc = m.stop()
    check(rc == 0, "exit status %s on a read-only root after SIGTERM:\n%s"
          % (rc, m.log()))
