"""
mtlsd with its whole sandbox, seccomp included.  The other modules run
with seccomp = false so that LeakSanitizer can scan at exit (the filter
kills the scan's system calls); here leak detection is off instead.
"""
import os
import signal
import time

from harness import (TlsConn, WEB_URI, assert_echo, check, inbound_route,
                     random_bytes)

NO_LSAN = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1"}


def start_sandboxed(env, target):
    port = env.port()
    conf = env.config(inbound=[inbound_route(
        "api", "127.0.0.1:%d" % port, target, {"uri": [WEB_URI]})],
        seccomp=None, workers=2)
    return env.start_mtlsd(conf, environ=NO_LSAN), port


def status_fields(path):
    d = {}
    with open(path) as f:
        for l in f:
            k, _, v = l.partition(":")
            d[k] = v.strip()
    return d


def test_sandbox_every_thread(env):
    if os.geteuid() != 0:
        from harness import Skip
        raise Skip("needs root to see the privilege drop")
    echo = env.echo()
    m, port = start_sandboxed(env, echo.addr)
    assert_echo(port)
    tids = os.listdir("/proc/%d/task" % m.pid)
    check(len(tids) >= 3, "expected main + 2 workers, saw %d threads"
          % len(tids))
    for tid in tids:
        st = status_fields("/proc/%d/task/%s/status" % (m.pid, tid))
        where = "thread %s" % tid
        uids = st.get("Uid", "0").split()
        gids = st.get("Gid", "0").split()
        check("0" not in uids, "%s runs with uid %s" % (where, uids))
        check("0" not in gids, "%s runs with gid %s" % (where, gids))
        for cap in ("CapEff", "CapPrm", "CapBnd"):
            check(int(st.get(cap, "1"), 16) == 0, "%s has %s %s"
                  % (where, cap, st.get(cap)))
        check(st.get("NoNewPrivs") == "1", "%s NoNewPrivs %s"
              % (where, st.get("NoNewPrivs")))
        check(st.get("Seccomp") == "2", "%s Seccomp %s"
              % (where, st.get("Seccomp")))


def test_sandboxed_relay_and_clean_exit(env):
    # Everything a connection needs passes the filter: handshake, relay,
    # half-close, the drain; and SIGTERM still ends in exit 0.
    echo = env.echo()
    m, port = start_sandboxed(env, echo.addr)
    data = random_bytes(1024 * 1024)
    assert_echo(port, data=data)
    # A reload reads files again, after the filter is in place.
    m.signal(signal.SIGHUP)
    m.wait_log(r"generation 2|reload.*ok|reloaded")
    check(m.alive(), "mtlsd died reloading under the filter (status %s)"
          % m.wait_exit(0.1))
    assert_echo(port)
    c = TlsConn.connect("127.0.0.1", port)
    try:
        r = c.exchange(b"x", half_close=False, timeout=5, expect=1)
        check(r.data == b"x", "no echo: %r" % r)
        m.signal(signal.SIGTERM)
        time.sleep(0.3)
        check(m.alive(), "mtlsd died under the filter (status %s)"
              % m.wait_exit(0.1))
        r = c.exchange(b"drain", timeout=10)
        check(r.data == b"drain", "the drain under the filter: %r" % r)
    finally:
        c.close()
    rc = m.wait_exit(8)
    check(rc == 0, "exit status %s under the seccomp filter (-31 is "
          "SIGSYS: a forbidden system call)" % rc)
