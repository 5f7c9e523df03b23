#!/usr/bin/python3
"""gen-seccomp-profile.py -- Docker/OCI seccomp profile for the mtlsd image.

    tools/gen-seccomp-profile.py            write docker/seccomp.json
    tools/gen-seccomp-profile.py --check    exit 1 if docker/seccomp.json is
                                            out of date or misses a call
    tools/gen-seccomp-profile.py --stdout   print the profile

The one list of system calls mtlsd may make once it serves is the C array
sandbox_syscalls[] in src/sandbox_syscalls.c; mtlsd builds its own seccomp
filter from it (src/sandbox.c).  This script reads the quoted names out of
that array and writes the profile the container runtime applies to the
whole container process, from just before execve(2) on.  That profile must
therefore also allow what happens before mtlsd installs its own, stricter
filter:

  * the container runtime (runc, crun) loads the profile, then still runs a
    few steps of its own init (in Go, for runc) and calls execve(2): with
    no_new_privileges (the compose file and the Kubernetes example set it)
    only the exec steps; without it also the user switch and capability
    drop (capset, setresuid, ...);
  * the dynamic loader and libc start-up of mtlsd itself;
  * mtlsd's start-up before its own filter: listen(2), the privilege drop
    (prctl, capset, setgroups, setresgid, setresuid), seccomp(2).

mtlsd's own filter then narrows the process to the C list only.  Where
sandbox.c narrows a call by its arguments (clone, clone3, socket, ioctl),
the profile does the same, so that the outer profile is never looser than
the inner one for those calls; a narrowing in sandbox.c this script does not
know is allowed without arguments (never stricter than mtlsd: a safe
default) and reported on stderr.

Everything not allowed fails with EPERM (SCMP_ACT_ERRNO, defaultErrnoRet 1)
rather than killing the process: runc tolerates EPERM where a call is
optional (fchown of stdio, for instance), and an unexpected call at start-up
gives an error message instead of a SIGSYS.  mtlsd's own filter kills.

Standard library only; run with Debian's /usr/bin/python3.
"""

import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_SOURCE = os.path.join(ROOT, "src", "sandbox_syscalls.c")
DEFAULT_SANDBOX = os.path.join(ROOT, "src", "sandbox.c")
DEFAULT_OUTPUT = os.path.join(ROOT, "docker", "seccomp.json")

# Linux constants, identical on x86_64, x86, x32, aarch64 and arm.
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
CLONE_THREAD = 0x10000
FIONREAD = 0x541B
ENOSYS = 38
EPERM = 1

# How sandbox.c narrows a call, mirrored here: name -> list of entries
# (without "names"), each one rule; several entries for one name are OR-ed.
NARROWED = {
    "clone": [{
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": CLONE_THREAD,
                  "valueTwo": CLONE_THREAD, "op": "SCMP_CMP_MASKED_EQ"}],
        "comment": "threads only, never a new process (as src/sandbox.c)",
    }],
    "clone3": [{
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": ENOSYS,
        "comment": "clone3 keeps its flags in memory, out of a filter's "
                   "sight: ENOSYS makes glibc fall back to clone (as "
                   "src/sandbox.c, and Docker's default profile)",
    }],
    "socket": [{
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": fam, "op": "SCMP_CMP_EQ"}],
        "comment": "socket(%s, ...) only (as src/sandbox.c)" % name,
    } for fam, name in ((AF_INET, "AF_INET"), (AF_INET6, "AF_INET6"),
                        (AF_UNIX, "AF_UNIX"))],
    "ioctl": [{
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 1, "value": FIONREAD, "op": "SCMP_CMP_EQ"}],
        "comment": "ioctl(fd, FIONREAD) only (as src/sandbox.c); libc's "
                   "isatty() probe gets EPERM, which it takes for 'not a "
                   "terminal'",
    }],
}

# Allowed before mtlsd's own filter exists, with the reason.  Names that a
# given architecture lacks (arch_prctl on aarch64, for instance) are skipped
# by the runtime's libseccomp, as in Docker's own profile.
STARTUP = [
    (["execve", "execveat"],
     "container runtime: runc loads this profile just before it executes "
     "the entrypoint (and each HEALTHCHECK / exec process); execveat for "
     "runc versions that exec a sealed copy of the binary"),
    (["capget", "capset", "prctl", "setgroups", "setresuid", "setresgid",
      "setuid", "setgid"],
     "container runtime without no_new_privileges: runc drops capabilities "
     "(capget/capset, prctl PR_CAPBSET_DROP, PR_SET_KEEPCAPS, "
     "PR_SET_PDEATHSIG) and switches user after loading the profile; mtlsd "
     "itself does the same before its own filter (prctl, capset, and when "
     "started as root setgroups/setresgid/setresuid)"),
    (["chdir", "fchdir", "getcwd", "getppid", "kill"],
     "container runtime: working directory, the parent check before exec "
     "(runc kills itself if it was reparented)"),
    (["access", "faccessat", "faccessat2", "newfstatat", "fstat", "statx",
      "fstatfs", "readlink", "readlinkat"],
     "container runtime and dynamic loader: finding and checking the "
     "executable (exec.LookPath, eaccess), /etc/ld.so.preload, "
     "/proc/thread-self"),
    (["openat", "getdents64", "close", "close_range", "fcntl", "read",
      "write", "epoll_ctl", "epoll_pwait"],
     "container runtime: opening the exec fifo, closing inherited file "
     "descriptors (/proc/self/fd), Go's netpoller"),
    (["futex", "nanosleep", "sched_yield", "sched_getaffinity", "mmap",
      "munmap", "madvise", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
      "sigaltstack", "gettid", "getpid", "tgkill", "exit", "exit_group",
      "restart_syscall"],
     "Go runtime threads of runc init (scheduler, GC, preemption signals) "
     "until execve; restart_syscall: the kernel's restart of an interrupted "
     "sleep"),
    (["arch_prctl", "set_tid_address", "set_robust_list", "rseq",
      "prlimit64", "pread64", "brk", "mprotect", "getrandom", "uname"],
     "dynamic loader and libc start-up of mtlsd (TLS setup, stack limit, "
     "reading ELF notes)"),
    (["listen", "sysinfo", "seccomp", "getuid", "geteuid", "getgid",
      "getegid"],
     "mtlsd start-up before its own filter: listen on the routes and the "
     "admin endpoint, memory size probe (sysinfo), installing its own "
     "filter (seccomp: SECCOMP_GET_ACTION_AVAIL, SET_MODE_FILTER with "
     "TSYNC)"),
]

ARCH_MAP = [
    {"architecture": "SCMP_ARCH_X86_64",
     "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
    {"architecture": "SCMP_ARCH_AARCH64",
     "subArchitectures": ["SCMP_ARCH_ARM"]},
]

NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


class SourceError(Exception):
    pass


def read_c_list(path):
    """The quoted names of sandbox_syscalls[] in the C file, in order."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # Comments first: a name in a comment is not a name in the list.
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    m = re.search(r"\bsandbox_syscalls\s*\[\s*\]\s*=\s*\{(.*?)\}\s*;",
                  text, flags=re.S)
    if m is None:
        raise SourceError("%s: no 'sandbox_syscalls[] = { ... };' array"
                          % path)
    body = m.group(1)
    items = [s.strip() for s in body.split(",")]
    if items and items[-1] == "":
        items.pop()
    if not items or items[-1] != "NULL":
        raise SourceError("%s: sandbox_syscalls[] does not end with NULL"
                          % path)
    names = []
    for item in items[:-1]:
        m = re.fullmatch(r'"([^"\\]*)"', item)
        if m is None:
            raise SourceError("%s: sandbox_syscalls[] holds %r, not a "
                              "quoted name" % (path, item))
        name = m.group(1)
        if not NAME_RE.match(name):
            raise SourceError("%s: %r is not a system call name"
                              % (path, name))
        if name in names:
            raise SourceError("%s: %s is listed twice" % (path, name))
        names.append(name)
    if "NULL" in items[:-1]:
        raise SourceError("%s: NULL before the end of sandbox_syscalls[]"
                          % path)
    if not names:
        raise SourceError("%s: sandbox_syscalls[] is empty" % path)
    return names


def read_narrowed(path):
    """Names that sandbox.c gives a rule of their own (strcmp cases)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return set()
    return set(re.findall(
        r'strcmp\s*\(\s*sandbox_syscalls\s*\[\s*\w+\s*\]\s*,\s*"(\w+)"\s*\)',
        text))


def build(names, narrowed, warn):
    """The profile as a dict, deterministic for a given input."""
    special = []
    plain = []
    for n in names:
        if n in NARROWED:
            special.append(n)
        else:
            if n in narrowed:
                warn("note: src/sandbox.c narrows %s by its arguments; the "
                     "profile allows it without (teach NARROWED in %s)"
                     % (n, os.path.relpath(__file__, ROOT)))
            plain.append(n)
    syscalls = [{
        "names": sorted(plain),
        "action": "SCMP_ACT_ALLOW",
        "comment": "mtlsd while serving: sandbox_syscalls[] of "
                   "src/sandbox_syscalls.c, the single source of truth",
    }]
    for n in sorted(special):
        for rule in NARROWED[n]:
            entry = {"names": [n]}
            entry.update(rule)
            syscalls.append(entry)
    taken = set(names)
    for group, why in STARTUP:
        extra = sorted(set(group) - taken)
        taken.update(extra)
        if extra:
            syscalls.append({"names": extra, "action": "SCMP_ACT_ALLOW",
                             "comment": "start-up only: " + why})
    return {
        "comment": "GENERATED by tools/gen-seccomp-profile.py from "
                   "src/sandbox_syscalls.c: do not edit; regenerate. "
                   "Allows mtlsd's own list plus what the container runtime "
                   "and the start-up need before mtlsd installs its own, "
                   "stricter filter (see each entry's comment). Anything "
                   "else fails with EPERM.",
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "archMap": ARCH_MAP,
        "syscalls": syscalls,
    }


def render(profile):
    return json.dumps(profile, indent=2) + "\n"


def allowed_names(profile):
    """name -> set of actions that the profile gives it."""
    out = {}
    for entry in profile.get("syscalls", []):
        for n in entry.get("names", []):
            out.setdefault(n, set()).add(entry.get("action"))
    return out


def check(path, names, expected, narrowed):
    problems = []
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        return ["cannot read %s: %s" % (path, e.strerror)]
    try:
        current = json.loads(text)
    except ValueError as e:
        return ["%s is not JSON: %s" % (path, e)]
    if not isinstance(current, dict):
        return ["%s: not a JSON object" % path]
    have = allowed_names(current)
    for n in names:
        want = {r["action"] for r in NARROWED[n]} if n in NARROWED \
            else {"SCMP_ACT_ALLOW"}
        if n not in have:
            problems.append("%s misses %s (listed in "
                            "src/sandbox_syscalls.c)" % (path, n))
        elif not want <= have[n]:
            problems.append("%s gives %s %s, not %s"
                            % (path, n, "/".join(sorted(have[n])),
                               "/".join(sorted(want))))
    if current.get("defaultAction") not in ("SCMP_ACT_ERRNO",
                                            "SCMP_ACT_KILL_PROCESS"):
        problems.append("%s: defaultAction is %r" %
                        (path, current.get("defaultAction")))
    if text != expected:
        problems.append("%s is out of date: run %s"
                        % (path, os.path.relpath(__file__, ROOT)))
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default=DEFAULT_SOURCE,
                    help="the C list (default: src/sandbox_syscalls.c)")
    ap.add_argument("--sandbox", default=DEFAULT_SANDBOX,
                    help="where the filter is built (default: "
                         "src/sandbox.c)")
    ap.add_argument("-o", "--output", default=DEFAULT_OUTPUT,
                    help="the profile (default: docker/seccomp.json)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="exit 1 if the profile is out of date or "
                           "misses a call of the C list")
    mode.add_argument("--stdout", action="store_true",
                      help="print the profile instead of writing it")
    args = ap.parse_args()

    def warn(msg):
        print("gen-seccomp-profile: " + msg, file=sys.stderr)

    try:
        names = read_c_list(args.source)
    except (OSError, SourceError) as e:
        warn(str(e))
        return 2
    narrowed = read_narrowed(args.sandbox)
    for n in sorted(narrowed - set(names)):
        warn("note: src/sandbox.c has a rule for %s, which is not in the "
             "list" % n)
    text = render(build(names, narrowed, warn))

    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        problems = check(args.output, names, text, narrowed)
        for p in problems:
            warn(p)
        if problems:
            return 1
        print("gen-seccomp-profile: %s is up to date (%d calls of the C "
              "list)" % (os.path.relpath(args.output), len(names)))
        return 0
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, args.output)
    print("gen-seccomp-profile: wrote %s (%d calls of the C list)"
          % (os.path.relpath(args.output), len(names)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
