"""The admin endpoint: /healthz, --health, /metrics, /status."""
import json
import ssl
import time

from harness import (TlsConn, WEB_URI, assert_echo, check, cert,
                     http_get, inbound_route, leaf_sha256, metric,
                     parse_metrics, try_client)


def start_with_admin(env, target, limits=None):
    port, admin = env.port(), env.port()
    conf = env.config(inbound=[inbound_route(
        "api", "127.0.0.1:%d" % port, target, {"uri": [WEB_URI]})],
        limits=limits, extra={"admin": {"listen": "127.0.0.1:%d" % admin}})
    return env.start_mtlsd(conf), port, admin, conf


def test_admin_healthz_and_health_flag(env):
    m, port, admin, conf = start_with_admin(env, env.echo().addr)
    status, body = http_get(admin, "/healthz")
    check(status == 200 and body.strip() == "ok",
          "/healthz: %s %r" % (status, body))
    rc, out, err = env.run_mtlsd(["-c", conf, "--health"])
    check(rc == 0, "--health against a running instance: exit %s" % rc)
    check(m.stop() == 0, "mtlsd did not exit 0")
    rc, out, err = env.run_mtlsd(["-c", conf, "--health"])
    check(rc == 1, "--health with nothing running: exit %s, not 1" % rc)


def test_admin_metrics_count_every_result(env):
    echo = env.echo()
    m, port, admin, conf = start_with_admin(env, echo.addr,
                                            limits={"max_connections": 1})
    data = b"counted\n" * 8
    assert_echo(port, data=data)
    try_client(port, "other")		# identity_rejected
    try_client(port, None)		# handshake_failed, no_certificate
    try_client(port, "expired")		# handshake_failed, expired
    held = TlsConn.connect("127.0.0.1", port)
    try:
        r = held.exchange(b"h", half_close=False, timeout=5, expect=1)
        check(r.data == b"h", "no echo on the held connection")
        try_client(port, "client")	# limit
        time.sleep(0.3)
        s = parse_metrics(http_get(admin, "/metrics")[1])
        check(metric(s, "mtlsd_connections_active", route="api") == 1,
              "active connections: %r"
              % metric(s, "mtlsd_connections_active", route="api"))
    finally:
        held.close()
    deadline = time.monotonic() + 5
    while True:
        s = parse_metrics(http_get(admin, "/metrics")[1])
        if metric(s, "mtlsd_connections_active", route="api") == 0 or \
                time.monotonic() > deadline:
            break
        time.sleep(0.1)
    want = {"ok": 2, "identity_rejected": 1, "handshake_failed": 2,
            "limit": 1, "target_failed": 0, "timeout": 0}
    for result, n in want.items():
        got = metric(s, "mtlsd_connections_total", route="api",
                     result=result)
        check(got == n, "mtlsd_connections_total{result=%s} is %r, not %d"
              % (result, got, n))
    for reason, n in (("identity", 1), ("no_certificate", 1),
                      ("expired", 1), ("untrusted", 0)):
        got = metric(s, "mtlsd_rejections_total", route="api",
                     reason=reason)
        check(got == n, "mtlsd_rejections_total{reason=%s} is %r, not %d"
              % (reason, got, n))
    check(metric(s, "mtlsd_bytes_total", route="api", direction="in")
          == len(data) + 1, "bytes in: %r" % metric(
              s, "mtlsd_bytes_total", route="api", direction="in"))
    check(metric(s, "mtlsd_bytes_total", route="api", direction="out")
          == len(data) + 1, "bytes out")
    for result in ("ok", "failed"):
        check(metric(s, "mtlsd_reloads_total", result=result) == 0,
              "mtlsd_reloads_total{result=%s} missing at start" % result)
    not_after = ssl.cert_time_to_seconds(
        ssl._ssl._test_decode_cert(cert("server.leaf.crt"))["notAfter"])
    check(metric(s, "mtlsd_cert_expiry_timestamp_seconds", route="api")
          == not_after, "cert expiry %r, not %d" % (metric(
              s, "mtlsd_cert_expiry_timestamp_seconds", route="api"),
              not_after))
    check(metric(s, "mtlsd_handshake_seconds_count") is not None,
          "no mtlsd_handshake_seconds histogram")


def test_admin_status(env):
    m, port, admin, conf = start_with_admin(env, env.echo().addr)
    status, body = http_get(admin, "/status")
    check(status == 200, "/status: %s" % status)
    st = json.loads(body)
    check("version" in st and ("uptime_seconds" in st or "uptime" in st),
          "version/uptime missing: %r" % st)
    routes = st.get("routes", [])
    check(len(routes) == 1 and routes[0].get("name") == "api",
          "routes: %r" % routes)
    r = routes[0]
    check(r.get("listen") == "127.0.0.1:%d" % port, "listen %r"
          % r.get("listen"))
    blob = json.dumps(r)
    check(leaf_sha256("server") in blob.replace(":", "").lower(),
          "the route's certificate fingerprint is missing: %s" % blob)
    sb = st.get("sandbox", {})
    check(sb.get("NoNewPrivs") in (1, "1"), "sandbox read-back: %r" % sb)


def test_admin_listen_not_loopback_is_config_error(env):
    path = env.config(inbound=[inbound_route(
        "api", "127.0.0.1:%d" % env.port(), "127.0.0.1:%d" % env.port(),
        {"uri": [WEB_URI]})], extra={"admin": {"listen": "0.0.0.0:%d"
                                               % env.port()}})
    rc, out, err = env.run_mtlsd(["-c", path])
    check(rc == 2, "a non-loopback admin listener: exit %s, not 2" % rc)
    check("0.0.0.0" in err, "the error does not name the address: %r" % err)
