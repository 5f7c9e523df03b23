"""
Reload: SIGHUP and reload_interval swap certificates, keys and allow
rules for new handshakes, check the new material first, and leave open
connections alone.
"""
import os
import shutil
import signal
import time

from harness import (INTRUDER_URI, TlsConn, WEB_URI, assert_echo,
                     assert_rejected, cert, check, http_get, inbound_route,
                     leaf_sha256, metric, parse_metrics, peer_fingerprint,
                     server_tls, start_inbound)


def install(env, name, dest_dir=None, cert_as="svc.crt", key_as="svc.key"):
    """Copies NAME.crt/.key of the PKI to the test's directory."""
    d = dest_dir or env.dir
    tmp_c, tmp_k = os.path.join(d, ".tmp.crt"), os.path.join(d, ".tmp.key")
    shutil.copy(cert(name + ".crt"), tmp_c)
    shutil.copy(cert(name + ".key"), tmp_k)
    os.rename(tmp_k, os.path.join(d, key_as))
    os.rename(tmp_c, os.path.join(d, cert_as))


def wait_fingerprint(port, want, timeout=6.0):
    deadline = time.monotonic() + timeout
    while True:
        got = peer_fingerprint(port)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_sighup_swaps_certificate(env):
    install(env, "server")
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr, tls=server_tls(
        cert=env.path("svc.crt"), key=env.path("svc.key")))
    check(peer_fingerprint(port) == leaf_sha256("server"),
          "not serving the first certificate")
    held = TlsConn.connect("127.0.0.1", port)
    try:
        r = held.exchange(b"1", half_close=False, timeout=5, expect=1)
        check(r.data == b"1", "no echo")
        install(env, "other")	# serverAuth, another identity
        m.signal(signal.SIGHUP)
        got = wait_fingerprint(port, leaf_sha256("other"))
        check(got == leaf_sha256("other"), "after SIGHUP the new "
              "certificate is not served (%s)" % got[:16])
        # The connection made before goes on untouched.
        r = held.exchange(b"2", half_close=True, timeout=5)
        check(r.data == b"2" and r.error is None,
              "an open connection was disturbed by the reload: %r" % r)
    finally:
        held.close()


def test_sighup_reloads_allow_rules(env):
    echo = env.echo()
    port = env.port()

    def write(allow):
        return env.write_conf(open(env.config(inbound=[inbound_route(
            "api", "127.0.0.1:%d" % port, echo.addr, allow)])).read(),
            name="live.conf")
    conf = write({"uri": [WEB_URI]})
    m = env.start_mtlsd(conf)
    assert_echo(port, "client")
    write({"uri": [INTRUDER_URI]})
    m.signal(signal.SIGHUP)
    m.wait_log(r"generation 2|reload.*ok|reloaded")
    assert_echo(port, "other")
    assert_rejected(m, port, "client", None, "identity",
                    ["identity not allowed"], [WEB_URI])


def test_sighup_bad_material_keeps_serving(env):
    install(env, "server")
    port, admin = env.port(), env.port()
    echo = env.echo()
    conf = env.config(inbound=[inbound_route(
        "api", "127.0.0.1:%d" % port, echo.addr, {"uri": [WEB_URI]})],
        tls=server_tls(cert=env.path("svc.crt"), key=env.path("svc.key")),
        extra={"admin": {"listen": "127.0.0.1:%d" % admin}})
    m = env.start_mtlsd(conf)
    # A key that does not belong to the certificate.
    shutil.copy(cert("client.key"), env.path("svc.key"))
    m.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while True:
        s = parse_metrics(http_get(admin, "/metrics")[1])
        if metric(s, "mtlsd_reloads_total", result="failed") or \
                time.monotonic() > deadline:
            break
        time.sleep(0.1)
    check(metric(s, "mtlsd_reloads_total", result="failed") == 1,
          "the failed reload was not counted: %r"
          % metric(s, "mtlsd_reloads_total", result="failed"))
    check(m.alive(), "mtlsd stopped after a bad reload")
    check("match" in m.log(), "the log does not say why the reload "
          "failed:\n%s" % m.log())
    check(peer_fingerprint(port) == leaf_sha256("server"),
          "the old certificate is no longer served")
    assert_echo(port, "client")


def k8s_volume(env, name):
    """A Kubernetes-style secret volume: tls.crt -> ..data/tls.crt."""
    vol = env.path("vol")
    os.mkdir(vol)
    d = os.path.join(vol, "..v1")
    os.mkdir(d)
    install(env, name, d, "tls.crt", "tls.key")
    os.symlink("..v1", os.path.join(vol, "..data"))
    for f in ("tls.crt", "tls.key"):
        os.symlink(os.path.join("..data", f), os.path.join(vol, f))
    return vol


def k8s_swap(vol, env, name, version):
    d = os.path.join(vol, "..v%d" % version)
    os.mkdir(d)
    install(env, name, d, "tls.crt", "tls.key")
    tmp = os.path.join(vol, "..data_tmp")
    os.symlink("..v%d" % version, tmp)
    os.rename(tmp, os.path.join(vol, "..data"))


def test_reload_interval_symlink_swap(env):
    vol = k8s_volume(env, "server")
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr, tls=server_tls(
        cert=os.path.join(vol, "tls.crt"), key=os.path.join(vol, "tls.key"),
        reload_interval=0.5))
    check(peer_fingerprint(port) == leaf_sha256("server"), "first cert")
    k8s_swap(vol, env, "other", 2)
    got = wait_fingerprint(port, leaf_sha256("other"), timeout=8)
    check(got == leaf_sha256("other"), "reload_interval did not pick up "
          "a symlink swap within 8 s")
    assert_echo(port, "client", check_hostname=False)


def test_reload_interval_waits_for_matching_key(env):
    install(env, "server")
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr, tls=server_tls(
        cert=env.path("svc.crt"), key=env.path("svc.key"),
        reload_interval=0.5))
    # The certificate changes first, its key a moment later.
    shutil.copy(cert("other.crt"), env.path("svc.crt"))
    time.sleep(1.5)
    check(m.alive(), "mtlsd died on a half-written rotation")
    check(peer_fingerprint(port) == leaf_sha256("server"),
          "a certificate was swapped in without its key")
    shutil.copy(cert("other.key"), env.path("svc.key"))
    got = wait_fingerprint(port, leaf_sha256("other"), timeout=8)
    check(got == leaf_sha256("other"), "the matching pair was not "
          "swapped in")


def test_sighup_reloads_crl(env):
    shutil.copy(cert("crl.pem"), env.path("live.crl"))
    echo = env.echo()
    m, port = start_inbound(env, target=echo.addr,
                            tls=server_tls(crl=env.path("live.crl")))
    assert_echo(port, "client")
    # The new CRL revokes the intermediate that issued the client.
    shutil.copy(cert("crl-int-revoked.pem"), env.path(".new.crl"))
    os.rename(env.path(".new.crl"), env.path("live.crl"))
    m.signal(signal.SIGHUP)
    m.wait_log(r"generation 2|reload.*ok|reloaded")
    assert_rejected(m, port, "client", None, "chain", ["revoked"],
                    [WEB_URI], fingerprint_of="client")
