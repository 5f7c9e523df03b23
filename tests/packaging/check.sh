#!/bin/bash
#
# tests/packaging/check.sh -- checks the deployment packaging of mtlsd
# without a container engine: docker/ (Dockerfile, compose.yaml, the
# seccomp and AppArmor profiles, the sidecar configs), deploy/kubernetes/,
# conf/mtlsd.service and tools/gen-seccomp-profile.py.
#
#   tests/packaging/check.sh        (from anywhere; as root for the image
#                                    emulation and the package installs)
#
# Where it can, it runs the real thing: the generated seccomp profile and
# systemd's SystemCallFilter= are loaded with libseccomp around the real
# build/mtlsd; the image's distroless root (docker/make-rootfs.sh) is built
# on this host and mtlsd is started in it (chroot, own PID and mount
# namespace, user 65532, the profile) as two sidecars relaying a connection,
# with the image's HEALTHCHECK command.  What needs a container engine (the
# image build, runc's own steps under the profile, compose networking,
# AppArmor enforcement) is not tried here: see docker/README.md.
#
# Missing tools are installed from Debian where that is cheap (apparmor,
# python3-yaml); checks that need build/mtlsd or root are skipped with a
# reason.  Every command is bounded by timeout(1).  The last line is
# "N passed, N failed, N skipped"; the exit status is 1 if anything failed.

set -eu

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY=/usr/bin/python3
MTLSD=$ROOT/build/mtlsd
PROFILE=$ROOT/docker/seccomp.json

passed=0
failed=0
skipped=0
pids=()
work=$(mktemp -d)
chmod 0755 "$work"	# mtlsd runs as 65532 in some checks

# stop PID: SIGTERM to PID and its children (unshare ignores SIGTERM
# while it waits for its child), at most 10 s, then SIGKILL.  Returns PID's
# exit status (1 if it had to be killed).
stop() {
	local p=$1 kids rc=0
	kids=$(pgrep -P "$p" 2>/dev/null || true)
	# shellcheck disable=SC2086
	kill -TERM $kids "$p" 2>/dev/null || true
	if ! timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null; then
		# shellcheck disable=SC2086
		kill -KILL $kids "$p" 2>/dev/null || true
		rc=1
	fi
	wait "$p" 2>/dev/null || rc=$?
	return "$rc"
}

cleanup() {
	local p
	for p in "${pids[@]}"; do
		if kill -0 "$p" 2>/dev/null; then
			stop "$p" || true
		fi
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

pass() {
	passed=$((passed + 1))
	echo "ok - $1"
}
fail() {
	failed=$((failed + 1))
	echo "not ok - $1"
	if [ -n "${2-}" ]; then
		printf '%s\n' "$2" | sed 's/^/#   /'
	fi
}
skip() {
	skipped=$((skipped + 1))
	echo "skip - $1: $2"
}

# check NAME SECONDS CMD...: passes if CMD exits 0 within SECONDS.
check() {
	local name=$1 secs=$2 out rc
	shift 2
	set +e
	out=$(timeout "$secs" "$@" 2>&1)
	rc=$?
	set -e
	if [ "$rc" -eq 0 ]; then
		pass "$name"
	else
		[ "$rc" -eq 124 ] && out="$out
(timed out after ${secs}s)"
		fail "$name" "$out"
	fi
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# need_deb PACKAGE COMMAND-OR-TEST: install PACKAGE from Debian if missing.
need_deb() {
	if dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null |
	    grep -q '^install ok installed'; then
		return 0
	fi
	is_root || return 1
	echo "# installing $1 from Debian"
	timeout 300 apt-get update -qq >/dev/null 2>&1 || true
	DEBIAN_FRONTEND=noninteractive timeout 300 \
	    apt-get install -y -qq "$1" >/dev/null 2>&1
}

# free_ports N: N free TCP ports on 127.0.0.1, one a line.
free_ports() {
	"$PY" - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
PY
}

# The demo PKI: certs-example/out if complete, else a fresh one here.
pki() {
	if [ -f certs-example/out/.complete ]; then
		echo "$ROOT/certs-example/out"
	else
		timeout 120 ./certs-example/make-certs.sh "$work/pki" >/dev/null
		echo "$work/pki"
	fi
}

have_mtlsd() { [ -x "$MTLSD" ]; }

# The demo PKI, once (empty if it cannot be had).
CERTS=""
if have_mtlsd; then
	CERTS=$(pki 2>/dev/null) || CERTS=""
fi

echo "# mtlsd packaging checks in $ROOT"

# --- (a) the seccomp profile --------------------------------------------------

check "a1 docker/seccomp.json parses as JSON" 10 \
    "$PY" -c 'import json,sys; json.load(open(sys.argv[1]))' "$PROFILE"
check "a2 docker/seccomp.json is up to date and allows every call of src/sandbox_syscalls.c (gen-seccomp-profile.py --check)" 30 \
    "$PY" tools/gen-seccomp-profile.py --check
check "a3 every name in docker/seccomp.json is a system call on one of its architectures (libseccomp)" 30 \
    "$PY" tools/seccomp-exec.py --check-names "$PROFILE"
check "a4 gen-seccomp-profile.py --check notices a call missing from the profile" 30 \
    bash -c '
	set -e
	d=$(mktemp -d); trap "rm -rf \$d" EXIT
	sed "s/\"epoll_create1\", //" src/sandbox_syscalls.c >"$d/list.c"
	'"$PY"' tools/gen-seccomp-profile.py --source "$d/list.c" -o "$d/p.json" >/dev/null
	cp src/sandbox_syscalls.c "$d/full.c"
	if '"$PY"' tools/gen-seccomp-profile.py --source "$d/full.c" -o "$d/p.json" --check 2>"$d/err"; then
		echo "--check passed on a profile without epoll_create1"; exit 1
	fi
	grep -q "misses epoll_create1" "$d/err" || { cat "$d/err"; exit 1; }'

# --- (b) docker/compose.yaml --------------------------------------------------

yaml_ok=0
if "$PY" -c 'import yaml' 2>/dev/null || { need_deb python3-yaml &&
    "$PY" -c 'import yaml' 2>/dev/null; }; then
	yaml_ok=1
fi

if timeout 20 docker compose version >/dev/null 2>&1; then
	check "b1 docker compose config -q accepts docker/compose.yaml" 60 \
	    docker compose -f docker/compose.yaml config -q
else
	skip "b1 docker compose config -q" \
	    "the docker compose plugin is not installed here; structural checks below"
fi

if [ "$yaml_ok" -eq 1 ]; then
	check "b2 compose.yaml: each mtlsd has cap_drop ALL, read_only, no-new-privileges + seccomp + apparmor, user 65532, network_mode service:, :ro volumes matching its config; A reaches B only through the two routes" 30 \
	    "$PY" - docker/compose.yaml <<'PY'
import os, re, sys, yaml

path = sys.argv[1]
base = os.path.dirname(os.path.abspath(path))
doc = yaml.safe_load(open(path))
problems = []
def bad(msg):
    problems.append(msg)

TOP = {"name", "services", "networks", "volumes", "configs", "secrets",
       "include", "version", "models"}
SERVICE = set("""annotations attach blkio_config build cap_add cap_drop
cgroup cgroup_parent command configs container_name cpu_count cpu_percent
cpu_period cpu_quota cpu_rt_period cpu_rt_runtime cpu_shares cpus cpuset
credential_spec depends_on deploy develop device_cgroup_rules devices dns
dns_opt dns_search domainname entrypoint env_file environment expose
extends external_links extra_hosts gpus group_add healthcheck hostname
image init ipc isolation labels label_file links logging mac_address
mem_limit mem_reservation mem_swappiness memswap_limit network_mode
networks oom_kill_disable oom_score_adj pid pids_limit platform ports
post_start pre_stop privileged profiles provider pull_policy read_only
restart runtime scale secrets security_opt shm_size stdin_open
stop_grace_period stop_signal storage_opt sysctls tmpfs tty ulimits
use_api_socket user userns_mode uts volumes volumes_from
working_dir""".split())

for k in doc:
    if k not in TOP and not k.startswith("x-"):
        bad("unknown top-level key %r" % k)
services = doc.get("services") or {}
for name, svc in services.items():
    for k in svc:
        if k not in SERVICE and not k.startswith("x-"):
            bad("%s: unknown key %r" % (name, k))

def is_mtlsd(svc):
    b = svc.get("build") or {}
    return str(svc.get("image", "")).split(":")[0].endswith("mtlsd") or \
        (isinstance(b, dict) and str(b.get("dockerfile", "")).endswith(
            "docker/Dockerfile"))

sidecars = {n: s for n, s in services.items() if is_mtlsd(s)}
apps = {n: s for n, s in services.items() if not is_mtlsd(s)}
if len(sidecars) < 2 or len(apps) < 2:
    bad("want two legacy services and two mtlsd sidecars, found %s and %s"
        % (sorted(apps), sorted(sidecars)))

def conf_paths(text):
    return set(re.findall(r'"(/etc/mtlsd/[^"]+)"', text))

confs = {}
for name, s in sorted(sidecars.items()):
    where = "service " + name
    if s.get("cap_drop") != ["ALL"]:
        bad("%s: cap_drop is %r, not [ALL]" % (where, s.get("cap_drop")))
    if s.get("cap_add"):
        bad("%s: cap_add %r" % (where, s.get("cap_add")))
    if s.get("privileged"):
        bad("%s: privileged" % where)
    if s.get("read_only") is not True:
        bad("%s: read_only is not true" % where)
    so = s.get("security_opt") or []
    if "no-new-privileges:true" not in so:
        bad("%s: no no-new-privileges:true in security_opt" % where)
    sec = [o for o in so if re.match(r"seccomp[=:]", o)]
    if len(sec) != 1:
        bad("%s: want one seccomp=PROFILE in security_opt" % where)
    else:
        p = sec[0].split("=", 1)[-1] if "=" in sec[0] else sec[0].split(":", 1)[1]
        full = os.path.normpath(os.path.join(base, p))
        if full != os.path.join(base, "seccomp.json"):
            bad("%s: %s resolves (against %s, as Compose does) to %s, not "
                "docker/seccomp.json" % (where, sec[0], base, full))
    if "apparmor=mtlsd" not in so and "apparmor:mtlsd" not in so:
        bad("%s: no apparmor=mtlsd in security_opt" % where)
    user = str(s.get("user", ""))
    m = re.fullmatch(r"(\d+):(\d+)", user)
    if not m or int(m.group(1)) == 0 or int(m.group(2)) == 0:
        bad("%s: user %r is not a numeric non-root uid:gid" % (where, user))
    elif user != "65532:65532":
        bad("%s: user %r, the image's is 65532:65532" % (where, user))
    nm = str(s.get("network_mode", ""))
    if not nm.startswith("service:") or nm[8:] not in apps:
        bad("%s: network_mode %r does not name a legacy service" % (where, nm))
    targets = {}
    for v in s.get("volumes") or []:
        if isinstance(v, dict):
            if not v.get("read_only"):
                bad("%s: volume %r is not read_only" % (where, v))
            src, dst = v.get("source", ""), v.get("target", "")
        else:
            parts = v.split(":")
            if len(parts) < 3 or "ro" not in parts[2].split(","):
                bad("%s: volume %r is not :ro" % (where, v))
            src, dst = parts[0], parts[1]
        targets[dst] = os.path.normpath(os.path.join(base, src))
        if os.path.basename(src).endswith("ca.key") or "rogue" in src:
            bad("%s: mounts %s: a sidecar never gets a CA key" % (where, src))
    conf = targets.get("/etc/mtlsd/mtlsd.conf")
    if conf is None:
        bad("%s: nothing mounted on /etc/mtlsd/mtlsd.conf" % where)
        continue
    if not os.path.isfile(conf):
        bad("%s: %s does not exist" % (where, conf))
        continue
    text = open(conf).read()
    confs[name] = (nm[8:], text)
    for p in sorted(conf_paths(text)):
        if p not in targets:
            bad("%s: %s names %s, which is not mounted" % (where, conf, p))
    if not re.search(r'admin\s*=\s*\{\s*listen\s*=\s*"127\.0\.0\.1:9901"', text):
        bad("%s: %s has no admin 127.0.0.1:9901 (HEALTHCHECK)" % (where, conf))
    if re.search(r"(?m)^\s*(user|group)\s*=\s*\"?0\"?\s*;", text):
        bad("%s: %s runs as root" % (where, conf))

# A calls B only through A's outbound and B's inbound route.
def routes(text, kind):
    m = re.search(kind + r"\s*=\s*\((.*?)\)\s*;", text, re.S)
    if not m:
        return []
    out = []
    for blk in re.findall(r"\{(.*?)\n\s*\}", m.group(1), re.S):
        r = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', blk))
        out.append(r)
    return out

outs = [(n, a, r) for n, (a, t) in confs.items() for r in routes(t, "outbound")]
ins = [(n, a, r) for n, (a, t) in confs.items() for r in routes(t, "inbound")]
linked = False
for n1, app1, o in outs:
    host, _, port = o.get("target", "").rpartition(":")
    for n2, app2, i in ins:
        lhost, _, lport = i.get("listen", "").rpartition(":")
        if host == app2 and port == lport and app1 != app2:
            linked = True
            if not o.get("listen", "").startswith("127.0.0.1:"):
                bad("%s: outbound listen %s is not loopback" % (n1, o["listen"]))
            if not i.get("target", "").startswith("127.0.0.1:"):
                bad("%s: inbound target %s is not loopback" % (n2, i["target"]))
if not linked:
    bad("no outbound route of one sidecar targets the inbound route of the "
        "other (service:port)")
for name, s in apps.items():
    for k in ("cap_add",):
        if s.get(k):
            bad("%s: %s" % (name, k))

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
PY
else
	skip "b2 compose.yaml structure" "python3-yaml is missing and could not be installed"
fi

# --- (c) deploy/kubernetes ----------------------------------------------------

if [ "$yaml_ok" -eq 1 ]; then
	check "c1 deploy/kubernetes/*.yaml parse; the mtlsd sidecar runs as non-root 65532, read-only root, no privilege escalation, drops ALL, seccomp RuntimeDefault/Localhost; certs from a read-only Secret, config from a ConfigMap, exec --health probes, a Service" 30 \
	    "$PY" - deploy/kubernetes <<'PY'
import glob, os, re, sys, yaml

d = sys.argv[1]
problems = []
bad = problems.append
docs = []
files = sorted(glob.glob(os.path.join(d, "*.yaml")))
if not files:
    bad("no YAML in %s" % d)
for f in files:
    for doc in yaml.safe_load_all(open(f)):
        if doc is not None:
            docs.append((os.path.basename(f), doc))
kinds = {}
for f, doc in docs:
    kinds.setdefault(doc.get("kind"), []).append((f, doc))
for k in ("Deployment", "Service", "ConfigMap"):
    if k not in kinds:
        bad("no %s" % k)
for f, doc in docs:
    if doc.get("kind") == "Kustomization":
        for r in doc.get("resources") or []:
            if not os.path.exists(os.path.join(d, r)):
                bad("%s: resource %s does not exist" % (f, r))
    if doc.get("kind") == "Secret":
        bad("%s: a Secret with key material does not belong in the repo" % f)

for f, dep in kinds.get("Deployment", []):
    spec = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"].get("labels") or {}
    psc = spec.get("securityContext") or {}
    conts = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    side = [c for c in conts if c.get("name") == "mtlsd" or
            "mtlsd" in str(c.get("image", "")).split("/")[-1].split(":")[0]]
    if len(side) != 1:
        bad("%s: want one mtlsd container, found %d" % (f, len(side)))
        continue
    c = side[0]
    sc = c.get("securityContext") or {}
    def eff(key):
        return sc.get(key, psc.get(key))
    if eff("runAsNonRoot") is not True:
        bad("mtlsd: runAsNonRoot is not true")
    if eff("runAsUser") != 65532:
        bad("mtlsd: runAsUser is %r, not 65532" % eff("runAsUser"))
    if eff("runAsGroup") in (0, None):
        bad("mtlsd: runAsGroup is %r" % eff("runAsGroup"))
    if sc.get("readOnlyRootFilesystem") is not True:
        bad("mtlsd: readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        bad("mtlsd: allowPrivilegeEscalation is not false")
    if sc.get("privileged"):
        bad("mtlsd: privileged")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []) or caps.get("add"):
        bad("mtlsd: capabilities %r, want drop [ALL] and no add" % caps)
    sp = eff("seccompProfile") or {}
    if sp.get("type") not in ("RuntimeDefault", "Localhost"):
        bad("mtlsd: seccompProfile %r" % sp)
    if sp.get("type") == "Localhost" and not sp.get("localhostProfile"):
        bad("mtlsd: Localhost seccompProfile without localhostProfile")
    vols = {v["name"]: v for v in spec.get("volumes") or []}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
    secret = [m for m in mounts.values() if "secret" in vols.get(m["name"], {})]
    cm = [m for m in mounts.values() if "configMap" in vols.get(m["name"], {})]
    if not secret:
        bad("mtlsd: no Secret volume mounted")
    if not cm:
        bad("mtlsd: no ConfigMap volume mounted")
    for m in mounts.values():
        if m.get("readOnly") is not True:
            bad("mtlsd: volume %s is not mounted readOnly" % m["name"])
    args = c.get("args") or []
    conf = args[args.index("-c") + 1] if "-c" in args else "/etc/mtlsd/mtlsd.conf"
    if not any(conf.startswith(m["mountPath"].rstrip("/") + "/") for m in cm):
        bad("mtlsd: -c %s is not in the ConfigMap mount" % conf)
    for probe in ("livenessProbe", "readinessProbe"):
        cmd = ((c.get(probe) or {}).get("exec") or {}).get("command") or []
        if "--health" not in cmd or cmd[:1] != ["/usr/local/bin/mtlsd"] or \
                conf not in cmd:
            bad("mtlsd: %s is not exec mtlsd --health -c %s (%r)"
                % (probe, conf, cmd))
    # The config's certificate paths live in the Secret mount.
    for cf, cmdoc in kinds.get("ConfigMap", []):
        for key, text in (cmdoc.get("data") or {}).items():
            for p in re.findall(r'"(/etc/mtlsd/[^"]+)"', text):
                if not any(p.startswith(m["mountPath"].rstrip("/") + "/")
                           for m in secret):
                    bad("%s: %s is not in the Secret mount" % (cf, p))
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    svc_ok = False
    for sf, svc in kinds.get("Service", []):
        sel = svc["spec"].get("selector") or {}
        if sel and all(labels.get(k) == v for k, v in sel.items()):
            for p in svc["spec"].get("ports") or []:
                t = p.get("targetPort")
                if t in ports or t in ports.values():
                    svc_ok = True
    if not svc_ok:
        bad("no Service selects the pod and targets an mtlsd port")
    # Nothing but mtlsd exposes a port.
    for o in conts:
        if o is not c and o.get("ports"):
            bad("container %s exposes ports: only mtlsd should" % o["name"])

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
PY
else
	skip "c1 deploy/kubernetes" "python3-yaml is missing and could not be installed"
fi

# --- (d) docker/Dockerfile ----------------------------------------------------

check "d1 Dockerfile: two debian:stable-slim stages, final stage without shell, numeric non-root USER, HEALTHCHECK mtlsd --health, ENTRYPOINT/CMD as specified, COPY sources in the build context" 20 \
    "$PY" - docker/Dockerfile <<'PY'
import fnmatch, json, os, re, sys

path = sys.argv[1]
lines, cur = [], ""
for raw in open(path):
    s = raw.rstrip("\n")
    if not cur and (s.strip().startswith("#") or not s.strip()):
        continue
    if s.strip().startswith("#"):
        continue
    if s.endswith("\\"):
        cur += s[:-1] + " "
        continue
    cur += s
    lines.append(cur.strip())
    cur = ""
problems = []
bad = problems.append
stages = []
for l in lines:
    ins, _, rest = l.partition(" ")
    ins = ins.upper()
    if ins == "FROM":
        stages.append({"from": rest.split()[0], "name": rest.split()[-1]
                       if " AS " in rest.upper() else None, "ins": []})
    elif stages:
        stages[-1]["ins"].append((ins, rest.strip()))
debian = [s for s in stages if s["from"] == "debian:stable-slim"]
if len(debian) < 2:
    bad("want two FROM debian:stable-slim stages (build, runtime), found %d"
        % len(debian))
final = stages[-1] if stages else {"from": "", "ins": []}
fins = dict((i, r) for i, r in final["ins"])
allins = [i for s in stages for i in s["ins"]]
if final["from"] != "scratch":
    # A Debian final stage must at least remove the shell.
    if not any(i == "RUN" and "/bin/sh" in r and "rm" in r for i, r in final["ins"]):
        bad("final stage is %s and keeps /bin/sh" % final["from"])
user = fins.get("USER", "")
m = re.fullmatch(r"(\d+)(?::(\d+))?", user)
if not m or int(m.group(1)) == 0 or (m.group(2) and int(m.group(2)) == 0):
    bad("final USER %r is not numeric non-root" % user)
elif user != "65532:65532":
    bad("final USER is %r, not 65532:65532" % user)
hc = fins.get("HEALTHCHECK", "")
want_hc = ["/usr/local/bin/mtlsd", "--health", "-c", "/etc/mtlsd/mtlsd.conf"]
mh = re.search(r"\bCMD\s+(\[.*\])", hc)
if not mh or json.loads(mh.group(1)) != want_hc:
    bad("HEALTHCHECK is %r, want CMD %s" % (hc, json.dumps(want_hc)))
for ins, want in (("ENTRYPOINT", ["/usr/local/bin/mtlsd"]),
                  ("CMD", ["-c", "/etc/mtlsd/mtlsd.conf"])):
    try:
        got = json.loads(fins.get(ins, "null"))
    except ValueError:
        got = fins.get(ins)
    if got != want:
        bad("%s is %r, want %s" % (ins, got, json.dumps(want)))
build = debian[0] if debian else {"ins": []}
runs = " ".join(r for i, r in build["ins"] if i == "RUN")
for pkg in ("gcc", "make", "pkg-config", "libssl-dev", "libevent-dev",
            "libconfig-dev", "libseccomp-dev"):
    if not re.search(r"(^|\s)%s(\s|$)" % re.escape(pkg), runs):
        bad("build stage does not install %s" % pkg)
if len(debian) >= 2:
    rruns = " ".join(r for i, r in debian[1]["ins"] if i == "RUN")
    if re.search(r"-dev\b|\bgcc\b", rruns):
        bad("runtime stage installs build packages")
# COPY sources (not --from) must exist and pass the .dockerignore.
ign = os.path.join(os.path.dirname(path), "Dockerfile.dockerignore")
pats = [p.strip() for p in open(ign) if p.strip() and not p.startswith("#")] \
    if os.path.exists(ign) else []
def ignored(rel):
    res = False
    for p in pats:
        neg = p.startswith("!")
        pat = p[1:] if neg else p
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(rel, pat) or rel.startswith(pat + "/"):
            res = not neg
    return res
for i, r in allins:
    if i != "COPY" or "--from=" in r:
        continue
    srcs = r.split()[:-1]
    for s in srcs:
        s = s.rstrip("/")
        if not os.path.exists(s):
            bad("COPY %s: no such file in the build context" % s)
        elif ignored(s):
            bad("COPY %s: excluded by %s" % (s, ign))
for s in ("certs-example/out/ca.key", "build/mtlsd"):
    if pats and not ignored(s):
        bad("%s is sent in the build context" % s)
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
PY

if command -v hadolint >/dev/null 2>&1; then
	check "d2 hadolint docker/Dockerfile" 30 hadolint docker/Dockerfile
else
	skip "d2 hadolint" "not installed (not packaged in Debian)"
fi

# --- (e) AppArmor -------------------------------------------------------------

if command -v apparmor_parser >/dev/null 2>&1 || { need_deb apparmor &&
    command -v apparmor_parser >/dev/null 2>&1; }; then
	# -Q: compile but do not load (this kernel may have no AppArmor);
	# -K: neither read nor write the cache.
	check "e1 apparmor_parser -Q -K docker/apparmor/mtlsd compiles the profile" 60 \
	    apparmor_parser -Q -K docker/apparmor/mtlsd
	check "e2 the AppArmor profile is named mtlsd (compose's apparmor=mtlsd), denies every write, and allows only setuid, setgid, setpcap" 30 \
	    bash -c '
		set -e
		n=$(apparmor_parser -N docker/apparmor/mtlsd 2>/dev/null)
		[ "$n" = mtlsd ] || { echo "profile names: $n"; exit 1; }
		grep -Eq "^[[:space:]]*deny /\*\* w,"  docker/apparmor/mtlsd ||
		    { echo "no deny /** w"; exit 1; }
		caps=$(grep -Eo "^[[:space:]]*capability[[:space:]]+[a-z_]+" \
		    docker/apparmor/mtlsd | awk "{print \$2}" | sort | tr "\n" " ")
		[ "$caps" = "setgid setpcap setuid " ] ||
		    { echo "capabilities: $caps"; exit 1; }
		if grep -Eq "^[[:space:]]*capability[[:space:]]*,|^[[:space:]]*(file|network)[[:space:]]*,|[[:space:]]ux[[:space:],]|[[:space:]]Ux" docker/apparmor/mtlsd; then
			echo "a blanket capability/file/network rule or unconfined exec"
			exit 1
		fi'
else
	fail "e1 apparmor_parser" "not installed and apt-get install apparmor failed"
fi

# --- (f) the sidecar configurations -------------------------------------------

if have_mtlsd && [ -n "$CERTS" ]; then
	certs=$CERTS
	# k8s.conf: the ConfigMap's configuration, with cert-manager's names.
	if [ "$yaml_ok" -eq 1 ]; then
		"$PY" -c '
import sys, yaml
for d in yaml.safe_load_all(open("deploy/kubernetes/configmap.yaml")):
    if d and d.get("kind") == "ConfigMap":
        sys.stdout.write(d["data"]["mtlsd.conf"])' >"$work/k8s.conf.in" ||
		    fail "f the ConfigMap holds no mtlsd.conf"
	fi
	for c in docker/sidecar-a.conf docker/sidecar-b.conf k8s; do
		if [ "$c" = k8s ]; then
			[ -s "$work/k8s.conf.in" ] || continue
			src=$work/k8s.conf.in
			label="deploy/kubernetes/configmap.yaml"
		else
			src=$c
			label=$c
		fi
		sed -e "s|/etc/mtlsd/certs/tls.crt|$certs/server.crt|" \
		    -e "s|/etc/mtlsd/certs/tls.key|$certs/server.key|" \
		    -e "s|/etc/mtlsd/certs/ca.crt|$certs/ca-bundle.crt|" \
		    -e "s|/etc/mtlsd/certs|$certs|g" "$src" >"$work/t.conf"
		check "f mtlsd -t accepts $label (certificates from the demo PKI)" 20 \
		    "$MTLSD" -t -c "$work/t.conf"
	done
else
	skip "f mtlsd -t on the sidecar configurations" \
	    "no build/mtlsd (run make) or no demo PKI (certs-example/make-certs.sh)"
fi

# --- (g) systemd --------------------------------------------------------------

if command -v systemd-analyze >/dev/null 2>&1; then
	# verify wants ExecStart's binary to exist: point it at build/mtlsd
	# (or /bin/true) in a copy with the same name.
	mkdir -p "$work/unit"
	exe=$MTLSD
	have_mtlsd || exe=/bin/true
	sed "s|/usr/local/bin/mtlsd|$exe|g" conf/mtlsd.service \
	    >"$work/unit/mtlsd.service"
	check "g1 systemd-analyze verify conf/mtlsd.service (ExecStart pointed at $exe)" 60 \
	    systemd-analyze verify --man=no "$work/unit/mtlsd.service"
	check "g2 systemd-analyze security --offline: exposure as recorded at the top of conf/mtlsd.service, and below 2.0" 60 \
	    bash -c '
		set -e
		got=$(systemd-analyze security --offline=yes conf/mtlsd.service 2>&1 |
		    sed -n "s/.*Overall exposure level for mtlsd.service: \([0-9.]*\).*/\1/p")
		[ -n "$got" ] || { echo "no exposure level in the output"; exit 1; }
		grep -q "overall exposure level $got " conf/mtlsd.service ||
		    { echo "measured $got; the header of conf/mtlsd.service says: $(grep -o "exposure level [0-9.]*" conf/mtlsd.service)"; exit 1; }
		awk -v v="$got" "BEGIN { exit !(v < 2.0) }" ||
		    { echo "exposure $got"; exit 1; }
		echo "exposure $got"'
	# SystemCallFilter= emulated with libseccomp around the real binary.
	if ! have_mtlsd || [ -z "$CERTS" ] || ! is_root ||
	    ! command -v setpriv >/dev/null 2>&1; then
		skip "g3 SystemCallFilter= emulation" \
		    "needs root, setpriv, build/mtlsd and the demo PKI"
	elif ! "$PY" - conf/mtlsd.service "$work/sd-filter.json" <<'PY'
import json, re, subprocess, sys

unit, out = sys.argv[1], sys.argv[2]
lines = [l.split("=", 1)[1].split() for l in open(unit)
         if l.startswith("SystemCallFilter=")]
def expand(name, seen=None):
    if not name.startswith("@"):
        return {name}
    txt = subprocess.run(["systemd-analyze", "syscall-filter", name],
                         capture_output=True, text=True, check=True).stdout
    res = set()
    for l in txt.splitlines()[1:]:
        l = l.strip()
        if not l or l.startswith("#"):
            continue
        res |= expand(l)
    return res
allow = None
for words in lines:
    neg = words[0].startswith("~")
    if neg:
        words[0] = words[0][1:]
    s = set().union(*(expand(w) for w in words))
    if allow is None:
        if neg:
            sys.exit("first SystemCallFilter= is a deny list: not emulated")
        allow = s
    elif neg:
        allow -= s
    else:
        allow |= s
json.dump({"defaultAction": "SCMP_ACT_KILL_PROCESS",
           "syscalls": [{"names": sorted(allow), "action": "SCMP_ACT_ALLOW"}]},
          open(out, "w"))
PY
	then
		fail "g3 cannot build a filter from the unit's SystemCallFilter="
	else
		certs=$CERTS
		mapfile -t ports < <(free_ports 2)
		p_in=${ports[0]} p_adm=${ports[1]}
		sed -e "s|/etc/mtlsd/certs|$certs|g" \
		    -e "s|0.0.0.0:8443|127.0.0.1:$p_in|" \
		    -e "s|127.0.0.1:9901|127.0.0.1:$p_adm|" \
		    docker/sidecar-b.conf >"$work/sd.conf"
		sd_run() {
			exec setpriv --reuid 65532 --regid 65532 --clear-groups -- \
			    "$PY" tools/seccomp-exec.py "$work/sd-filter.json" -- "$@"
		}
		(sd_run "$MTLSD" -c "$work/sd.conf") 2>"$work/sd.log" &
		sdpid=$!
		pids+=("$sdpid")
		ok=0
		for _ in $(seq 1 50); do
			if timeout 5 setpriv --reuid 65532 --regid 65532 \
			    --clear-groups -- "$PY" tools/seccomp-exec.py \
			    "$work/sd-filter.json" -- "$MTLSD" --health \
			    -c "$work/sd.conf" >/dev/null 2>&1; then
				ok=1
				break
			fi
			kill -0 "$sdpid" 2>/dev/null || break
			sleep 0.2
		done
		rc=0
		stop "$sdpid" || rc=$?
		if [ "$ok" -eq 1 ] && [ "$rc" -eq 0 ] &&
		    grep -q "Seccomp=2" "$work/sd.log"; then
			pass "g3 mtlsd as a non-root User= starts, answers --health and stops cleanly under the unit's SystemCallFilter= (emulated with libseccomp, kill on violation)"
		else
			fail "g3 mtlsd under the unit's SystemCallFilter= (health=$ok, exit=$rc)" \
			    "$(tail -n 5 "$work/sd.log")"
		fi
	fi
else
	skip "g systemd-analyze" "systemd is not installed"
fi

# --- (h) the image, emulated: distroless root + profile + user 65532 ----------

if ! have_mtlsd || [ -z "$CERTS" ]; then
	skip "h image emulation" "no build/mtlsd (run make) or no demo PKI"
elif ! is_root || ! command -v unshare >/dev/null 2>&1; then
	skip "h image emulation" "needs root and unshare (chroot, PID namespace)"
else
	certs=$CERTS
	ra=$work/root-a
	rb=$work/root-b
	check "h1 docker/make-rootfs.sh assembles the distroless root from build/mtlsd" 60 \
	    bash -c "sh docker/make-rootfs.sh '$MTLSD' '$ra' && sh docker/make-rootfs.sh '$MTLSD' '$rb'"
	# in_image ROOT CMD...: as the image's ENTRYPOINT runs: own PID and
	# mount namespace with /proc, chroot, 65532:65532, the profile.
	# exec: the caller's PID is unshare's, whose child is mtlsd (PID 1 in
	# its namespace, as in a container).
	in_image() {
		local r=$1
		shift
		exec unshare --mount --pid --fork --kill-child=SIGTERM \
		    --mount-proc="$r/proc" \
		    "$PY" "$ROOT/tools/seccomp-exec.py" --root "$r" \
		    --user 65532:65532 "$PROFILE" -- "$@"
	}
	export -f in_image
	export PY ROOT PROFILE
	check "h2 in the distroless root, as 65532, under docker/seccomp.json: mtlsd -V" 20 \
	    bash -c 'in_image "$@"' _ "$ra" /usr/local/bin/mtlsd -V
	mapfile -t ports < <(free_ports 5)
	p_app=${ports[0]} p_in=${ports[1]} p_out=${ports[2]}
	p_adma=${ports[3]} p_admb=${ports[4]}
	# The sidecars' own configurations, at their image paths; only ports
	# (this host is shared) and svc-b's address (/etc/hosts) differ.
	for s in a b; do
		r=$work/root-$s
		mkdir -p "$r/etc/mtlsd/certs"
		cp "$certs"/{server,client}.{crt,key} "$certs/ca-bundle.crt" \
		    "$certs/crl.pem" "$r/etc/mtlsd/certs/"
		chmod 0444 "$r"/etc/mtlsd/certs/*
	done
	sed -e "s|127.0.0.1:15000|127.0.0.1:$p_out|" \
	    -e "s|svc-b:8443|svc-b:$p_in|" \
	    -e "s|127.0.0.1:9901|127.0.0.1:$p_adma|" \
	    docker/sidecar-a.conf >"$ra/etc/mtlsd/mtlsd.conf"
	sed -e "s|0.0.0.0:8443|127.0.0.1:$p_in|" \
	    -e "s|127.0.0.1:8080|127.0.0.1:$p_app|" \
	    -e "s|127.0.0.1:9901|127.0.0.1:$p_admb|" \
	    docker/sidecar-b.conf >"$rb/etc/mtlsd/mtlsd.conf"
	# What Docker's embedded DNS would answer for svc-b, and the
	# resolv.conf it bind-mounts (evdns needs a nameserver line).
	printf '127.0.0.1\tsvc-b\n' >>"$ra/etc/hosts"
	for r in "$ra" "$rb"; do
		printf 'nameserver 127.0.0.11\noptions ndots:0\n' \
		    >"$r/etc/resolv.conf"
	done
	# svc-b: a plaintext echo service on loopback.
	"$PY" - "$p_app" <<'PY' &
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(8)
srv.settimeout(60)
def serve(c):
    with c:
        c.settimeout(10)
        while True:
            d = c.recv(4096)
            if not d:
                break
            c.sendall(d)
try:
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
except socket.timeout:
    pass
PY
	pids+=($!)
	(in_image "$rb" /usr/local/bin/mtlsd -c /etc/mtlsd/mtlsd.conf) \
	    2>"$work/b.log" &
	pb=$!
	pids+=("$pb")
	(in_image "$ra" /usr/local/bin/mtlsd -c /etc/mtlsd/mtlsd.conf) \
	    2>"$work/a.log" &
	pa=$!
	pids+=("$pa")
	# The image's HEALTHCHECK, as Docker runs it: a second process in the
	# same root, user and profile.
	healthy=1
	for r in "$ra" "$rb"; do
		ok=0
		for _ in $(seq 1 50); do
			if timeout 5 bash -c 'in_image "$@"' _ "$r" \
			    /usr/local/bin/mtlsd --health \
			    -c /etc/mtlsd/mtlsd.conf >/dev/null 2>&1; then
				ok=1
				break
			fi
			sleep 0.2
		done
		[ "$ok" -eq 1 ] || healthy=0
	done
	if [ "$healthy" -eq 1 ]; then
		pass "h3 HEALTHCHECK (mtlsd --health -c /etc/mtlsd/mtlsd.conf) passes in both sidecars"
	else
		fail "h3 HEALTHCHECK in both sidecars" \
		    "$(tail -n 5 "$work/a.log" "$work/b.log")"
	fi
	reply=$(timeout 15 "$PY" - "$p_out" <<'PY' 2>&1 || true
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.settimeout(10)
s.sendall(b"svc-a to svc-b through two sidecars\n")
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    got += d
print(got.decode().strip())
PY
)
	if [ "$reply" = "svc-a to svc-b through two sidecars" ]; then
		pass "h4 svc-a -> mtlsd-a (outbound) ==mTLS==> mtlsd-b (inbound) -> svc-b relays, both sidecars sandboxed (Seccomp=2, uid 65532)"
	else
		fail "h4 relay through both sidecars" "reply: $reply
$(tail -n 5 "$work/a.log" "$work/b.log")"
	fi
	if grep -q "uid=65532 gid=65532 .*NoNewPrivs=1 Seccomp=2" "$work/a.log" &&
	    grep -q "uid=65532 gid=65532 .*NoNewPrivs=1 Seccomp=2" "$work/b.log"
	then
		pass "h5 both sidecars report uid/gid 65532, no capabilities, NoNewPrivs 1, Seccomp 2"
	else
		fail "h5 sandbox lines" "$(grep -h sandbox "$work/a.log" "$work/b.log")"
	fi
	# docker stop: SIGTERM to PID 1 of the container (unshare's child;
	# stop() signals both, and unshare ignores it).
	rc=0
	for p in "$pa" "$pb"; do
		stop "$p" || rc=$?
	done
	if [ "$rc" -eq 0 ]; then
		pass "h6 SIGTERM (docker stop): both sidecars drain and exit 0"
	else
		fail "h6 SIGTERM: exit status $rc" "$(tail -n 3 "$work/a.log" "$work/b.log")"
	fi
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
