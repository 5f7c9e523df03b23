"""
TLS scanners against an inbound listener on 127.0.0.1: testssl.sh and
sslscan (Debian packages; installed here with apt-get when missing and
these tests are selected, else skipped with the reason).

What fails a test: any protocol below TLS 1.2 offered, any cipher without
forward secrecy ((EC)DHE; every TLS 1.3 suite is), a finding of severity
MEDIUM or above about protocols, ciphers or vulnerabilities, renegotiation
or compression offered.

mtlsd requires a client certificate, so a scanner without one sees every
full handshake fail.  testssl.sh 3.0 has no --mtls, so it gets an openssl
wrapper (--openssl) that adds the demo client's certificate and chain to
every `s_client -connect`; its own socket probes (ClientHello only) need
none.  sslscan sends only the leaf of --certs, so its route trusts the
demo intermediate directly (ca = bundle + intermediate).

Judged not: findings about the demo PKI's certificates (ids cert*,
intermediate*, OCSP*, DNS_CAArecord, certificate_transparency: e.g. no
CRL/OCSP URI in the demo certificates, a validity over 825 days) and
scanner-side limitations (its local openssl lacking a cipher); each run
lists what it left out.  sslscan runs with --no-heartbleed: its probe
sends a heartbeat right behind a ClientHello that mtlsd refuses and
resets, and sslscan 2.0.7 then aborts the whole scan on send() ->
ECONNRESET; heartbleed is judged by testssl.sh -U instead.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

from harness import (Skip, WEB_URI, cert, check, inbound_route)

PACKAGES = {"testssl": "testssl.sh", "sslscan": "sslscan"}
_install_error = {}
SEVERE = ("MEDIUM", "HIGH", "CRITICAL", "FATAL")
CERT_IDS = ("cert", "intermediate", "OCSP", "DNS_CAArecord",
            "certificate_transparency")
SCAN_TIMEOUT = 80		# seconds: run.py fails a test at 90


def tool(name):
    path = shutil.which(name)
    if path is None:
        raise Skip("%s is not installed (Debian package %s): %s"
                   % (name, PACKAGES[name], _install_error.get(
                       name, "not tried")))
    return path


def _install_missing():
    """apt-get install the missing scanners, bounded; notes why not."""
    missing = [p for t, p in PACKAGES.items() if shutil.which(t) is None]
    if not missing:
        return
    why = None
    if os.geteuid() != 0:
        why = "not root, cannot apt-get install"
    elif shutil.which("apt-get") is None:
        why = "no apt-get"
    else:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            p = subprocess.run(["apt-get", "install", "-y", "-qq"] + missing,
                               stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=240, env=env)
            if p.returncode != 0:
                # The package lists may be missing or stale: once more.
                subprocess.run(["apt-get", "update", "-qq"],
                               stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=240, env=env)
                p = subprocess.run(["apt-get", "install", "-y", "-qq"] +
                                   missing, stdin=subprocess.DEVNULL,
                                   capture_output=True, timeout=240,
                                   env=env)
            if p.returncode != 0:
                why = "apt-get install %s: exit %d: %s" % (
                    " ".join(missing), p.returncode,
                    p.stderr.decode("utf-8", "replace").strip()[-300:])
        except (subprocess.TimeoutExpired, OSError) as e:
            why = "apt-get install %s: %s" % (" ".join(missing), e)
    for t, p in PACKAGES.items():
        if shutil.which(t) is None:
            _install_error[t] = why or "apt-get install %s did not " \
                "install it" % p


# ---------------------------------------------------------- set-up

def start_scan_target(env, trust_intermediate=False):
    """An inbound route in front of an echo server: (mtlsd, port)."""
    echo = env.echo()
    port = env.port()
    tls = {"cert": cert("server.crt"), "key": cert("server.key"),
           "ca": cert("ca-bundle.crt")}
    if trust_intermediate:
        ca = env.path("ca-and-intermediate.crt")
        with open(ca, "w") as f:
            for name in ("ca-bundle.crt", "int.crt"):
                with open(cert(name)) as g:
                    f.write(g.read())
        os.chmod(ca, 0o644)
        tls["ca"] = ca
    conf = env.config(inbound=[inbound_route(
        "api", "127.0.0.1:%d" % port, echo.addr, {"uri": [WEB_URI]})],
        tls=tls, limits={"handshake_timeout": 5.0})
    return env.start_mtlsd(conf), port


def openssl_with_client_cert(env):
    """An openssl that presents the demo client's chain on s_client."""
    real = shutil.which("openssl") or "/usr/bin/openssl"
    path = env.path("openssl-mtls")
    crt, key = cert("client.crt"), cert("client.key")
    with open(path, "w") as f:
        f.write("""#!/bin/sh
# openssl for testssl.sh: s_client -connect ... with a client certificate
if [ "$1" = s_client ]; then
    case " $* " in
    *" -connect "*) exec %s "$@" -cert %s -key %s -cert_chain %s ;;
    esac
fi
exec %s "$@"
""" % (real, crt, key, crt, real))
    os.chmod(path, 0o755)
    return path


def testssl(env, port, checks, name):
    """Runs testssl.sh with `checks`; returns (findings, seconds)."""
    exe = tool("testssl")
    jf = env.path("testssl-%s.json" % name)
    argv = [exe, "--quiet", "--warnings", "off", "--color", "0",
            "--openssl", openssl_with_client_cert(env),
            "--add-ca", cert("ca-bundle.crt"), "--openssl-timeout", "10",
            "--jsonfile", jf] + list(checks) + ["127.0.0.1:%d" % port]
    t0 = time.monotonic()
    rc, out, err = env.run(argv, timeout=SCAN_TIMEOUT)
    took = time.monotonic() - t0
    text = out.decode("utf-8", "replace")
    env.outputs.append(("testssl %s (exit %s, %.0f s)" % (" ".join(checks),
                                                          rc, took),
                        text + err.decode("utf-8", "replace")))
    check(rc is not None, "testssl.sh did not finish within %d s"
          % SCAN_TIMEOUT)
    check(os.path.exists(jf), "testssl.sh wrote no JSON (exit %s):\n%s"
          % (rc, text[-2000:]))
    with open(jf) as f:
        findings = json.load(f)
    check(isinstance(findings, list) and findings, "empty testssl JSON")
    return findings, took


def judge_findings(env, findings):
    """Fails on severe findings that are not about the demo PKI or the
    scanner's own limits; lists what it left out."""
    severe, excluded, local = [], [], []
    for f in findings:
        fid, sev = f.get("id", ""), f.get("severity", "")
        text = f.get("finding", "")
        if "local" in text.lower() and "openssl" in text.lower():
            local.append("%s %s: %s" % (sev, fid, text))
            continue
        if fid.startswith(CERT_IDS):
            if sev in SEVERE or sev in ("LOW", "WARN"):
                excluded.append("%s %s: %s" % (sev, fid, text))
            continue
        if fid == "scanProblem" or sev in SEVERE or sev == "WARN":
            severe.append("%s %s: %s" % (sev, fid, text))
    env.outputs.append(("judged out (demo PKI)", "\n".join(excluded) or
                        "(none)"))
    env.outputs.append(("judged out (scanner's openssl)", "\n".join(local) or
                        "(none)"))
    check(not severe, "testssl.sh findings of severity MEDIUM or above (or "
          "scan problems):\n  " + "\n  ".join(severe))


def by_id(findings):
    d = {}
    for f in findings:
        d.setdefault(f.get("id"), f)
    return d


# ------------------------------------------------------------ tests

def test_testssl_protocols_and_ciphers(env):
    # -p protocols, -s cipher categories, -f forward secrecy, -E every
    # cipher of every protocol.
    tool("testssl")
    m, port = start_scan_target(env)
    findings, took = testssl(env, port, ["-p", "-s", "-f", "-E"], "pc")
    ids = by_id(findings)
    for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        f = ids.get(old)
        check(f is not None, "testssl.sh did not report %s" % old)
        check("not offered" in f["finding"], "%s offered: %s"
              % (old, f["finding"]))
    for new in ("TLS1_2", "TLS1_3"):
        f = ids.get(new)
        check(f is not None and f["finding"].startswith("offered"),
              "%s not offered: %r" % (new, f))
    for cat in ("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT",
                "cipherlist_LOW", "cipherlist_3DES_IDEA",
                "cipherlist_AVERAGE"):
        f = ids.get(cat)
        check(f is None or "not offered" in f["finding"],
              "%s offered: %s" % (cat, f and f["finding"]))
    # Every cipher offered, per protocol: key exchange (EC)DH.
    ciphers = [f for f in findings
               if re.match(r"cipher-tls1_[0-3]_x[0-9a-f]+$", f["id"])]
    check(ciphers, "testssl.sh -E listed no cipher (did the client "
          "certificate reach mtlsd?)")
    weak = []
    for f in ciphers:
        proto = f["id"].split("_x")[0]
        if proto not in ("cipher-tls1_2", "cipher-tls1_3"):
            weak.append("protocol below TLS 1.2: %s" % f["finding"])
            continue
        cols = f["finding"].split()
        # "TLS 1.2 xc02b ECDHE-ECDSA-AES128-GCM-SHA256 ECDH 253 AESGCM ..."
        kx = cols[4] if len(cols) > 4 else ""
        name = cols[3] if len(cols) > 3 else ""
        fs = kx in ("ECDH", "DH") and (proto == "cipher-tls1_3" or
                                       name.startswith(("ECDHE-", "DHE-")))
        if not fs:
            weak.append("no forward secrecy: %s" % f["finding"])
    check(not weak, "ciphers offered:\n  " + "\n  ".join(weak))
    fs = ids.get("PFS") or ids.get("FS")
    check(fs is not None and fs["severity"] == "OK", "forward secrecy: %r"
          % fs)
    judge_findings(env, findings)
    env.outputs.append(("summary", "%d ciphers, all (EC)DHE; testssl.sh took "
                        "%.0f s" % (len(ciphers), took)))
    check(m.alive(), "mtlsd died during the scan")


def test_testssl_vulnerabilities(env):
    # -U: heartbleed, CCS, ticketbleed, ROBOT, renegotiation, CRIME,
    # BREACH, POODLE, fallback SCSV, SWEET32, FREAK, DROWN, LOGJAM, BEAST,
    # LUCKY13, RC4.
    tool("testssl")
    m, port = start_scan_target(env)
    findings, took = testssl(env, port, ["-U"], "vuln")
    ids = by_id(findings)
    for vid in ("heartbleed", "CCS", "ROBOT", "secure_renego",
                "secure_client_renego", "CRIME_TLS", "POODLE_SSL",
                "fallback_SCSV", "SWEET32", "FREAK", "DROWN", "LOGJAM",
                "BEAST", "LUCKY13"):
        f = ids.get(vid)
        check(f is not None, "testssl.sh did not report %s" % vid)
        check(f["severity"] in ("OK", "INFO"), "%s: %s %s"
              % (vid, f["severity"], f["finding"]))
    judge_findings(env, findings)
    env.outputs.append(("summary", "testssl.sh -U took %.0f s" % took))
    check(m.alive(), "mtlsd died during the scan")


def test_sslscan(env):
    exe = tool("sslscan")
    m, port = start_scan_target(env, trust_intermediate=True)
    xf = env.path("sslscan.xml")
    argv = [exe, "--no-colour", "--no-heartbleed", "--show-sigs",
            "--xml=" + xf, "--certs=" + cert("client.crt"),
            "--pk=" + cert("client.key"), "127.0.0.1:%d" % port]
    t0 = time.monotonic()
    rc, out, err = env.run(argv, timeout=SCAN_TIMEOUT)
    took = time.monotonic() - t0
    env.outputs.append(("sslscan (exit %s, %.1f s)" % (rc, took),
                        (out + err).decode("utf-8", "replace")))
    check(rc == 0, "sslscan: exit %s" % rc)
    root = ET.parse(xf).getroot()
    test = root.find("ssltest")
    check(test is not None, "sslscan XML without ssltest")
    protos = {}
    for p in test.findall("protocol"):
        protos["%s%s" % (p.get("type"), p.get("version"))] = p.get("enabled")
    for old in ("ssl2", "ssl3", "tls1.0", "tls1.1"):
        check(protos.get(old) == "0", "%s accepted (or not tested): %r"
              % (old, protos))
    for new in ("tls1.2", "tls1.3"):
        check(protos.get(new) == "1", "%s not accepted: %r" % (new, protos))
    ciphers = [c for c in test.findall("cipher")
               if c.get("status") in ("accepted", "preferred")]
    versions = set(c.get("sslversion") for c in ciphers)
    check("TLSv1.2" in versions and "TLSv1.3" in versions,
          "sslscan found ciphers only for %s (the TLS 1.2 cipher tests need "
          "the client certificate to pass)" % sorted(versions))
    weak = []
    for c in ciphers:
        v, name = c.get("sslversion"), c.get("cipher")
        if v not in ("TLSv1.2", "TLSv1.3"):
            weak.append("%s %s" % (v, name))
        elif v == "TLSv1.2" and not name.startswith(("ECDHE-", "DHE-")):
            weak.append("%s %s: no (EC)DHE" % (v, name))
        elif c.get("ecdhebits") is None and c.get("dhebits") is None:
            weak.append("%s %s: no ephemeral key reported" % (v, name))
    check(not weak, "ciphers without forward secrecy or below TLS 1.2: %s"
          % weak)
    reneg = test.find("renegotiation")
    check(reneg is None or reneg.get("supported") == "0" or
          reneg.get("secure") == "1", "insecure renegotiation: %r"
          % (reneg.attrib,))
    check(reneg is None or reneg.get("supported") == "0",
          "renegotiation supported: %r" % (reneg.attrib,))
    comp = test.find("compression")
    check(comp is None or comp.get("supported") == "0",
          "compression: %r" % (comp.attrib if comp is not None else None))
    env.outputs.append(("summary", "%d ciphers accepted (%s), all (EC)DHE;"
                        " %.1f s" % (len(ciphers), ", ".join(sorted(
                            versions)), took)))
    check(m.alive(), "mtlsd died during the scan")


# Install the scanners at import, but only when this run selects one of
# these tests (run.py imports every module, whatever -k says).
def _selected():
    names = ["test_scanners.%s" % n for n in globals()
             if n.startswith("test_")]
    argv = sys.argv
    for i, a in enumerate(argv):
        if a == "-k" and i + 1 < len(argv):
            return any(argv[i + 1] in n for n in names)
        if a.startswith("-k") and len(a) > 2:
            return any(a[2:] in n for n in names)
    return os.path.basename(argv[0] if argv else "") == "run.py"


if _selected():
    _install_missing()
