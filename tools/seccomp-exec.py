#!/usr/bin/python3
"""seccomp-exec.py -- run a command under a Docker/OCI seccomp profile.

    tools/seccomp-exec.py [--root DIR] [--user UID:GID] PROFILE.json \
        [--] COMMAND ARGS...
    tools/seccomp-exec.py --check-names PROFILE.json

Loads PROFILE the way a container runtime (runc) does -- the host's entry
of "archMap" (or "architectures"), one rule per name and argument set,
names unknown to this architecture skipped -- then executes COMMAND, so
that COMMAND starts under the profile exactly as an image's ENTRYPOINT
would.  --root DIR first changes the root directory to DIR (an unpacked
image), --user switches to UID:GID with no supplementary groups (the
image's USER); both happen before the profile is loaded, as in runc.  This is what lets tests/packaging/check.sh try docker/seccomp.json
against the real mtlsd binary on a host without a container engine.  It
does not reproduce what runc itself does after loading the profile (that
part of the profile cannot be tried without runc).

--check-names: only report names that no architecture of the profile
knows (typos), and exit 1 if there is one.

Standard library only (ctypes and the system's libseccomp.so.2).
"""

import ctypes
import ctypes.util
import json
import os
import platform
import sys

ACTIONS = {
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7ff00000,
    "SCMP_ACT_LOG": 0x7ffc0000,
    "SCMP_ACT_ALLOW": 0x7fff0000,
}
OPS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}
NATIVE = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64",
          "i686": "SCMP_ARCH_X86", "armv7l": "SCMP_ARCH_ARM"}
NR_SCMP_ERROR = -1


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def die(msg, code=2):
    print("seccomp-exec: " + msg, file=sys.stderr)
    sys.exit(code)


def lib():
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        so = ctypes.CDLL(name, use_errno=True)
    except OSError as e:
        die("cannot load libseccomp (%s): %s" % (name, e))
    so.seccomp_init.restype = ctypes.c_void_p
    so.seccomp_init.argtypes = [ctypes.c_uint32]
    so.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    so.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    so.seccomp_arch_native.restype = ctypes.c_uint32
    so.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    so.seccomp_arch_exist.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    so.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    so.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32,
                                                     ctypes.c_char_p]
    so.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
        ctypes.POINTER(ArgCmp)]
    so.seccomp_load.argtypes = [ctypes.c_void_p]
    return so


def action(entry, key, errno_key, default_errno):
    name = entry.get(key)
    if name not in ACTIONS:
        die("unknown action %r" % name)
    act = ACTIONS[name]
    if name == "SCMP_ACT_ERRNO":
        act |= (entry.get(errno_key, default_errno) or 0) & 0xffff
    return act


def arches(profile):
    """The architectures the runtime would add on this host."""
    native = NATIVE.get(platform.machine())
    if profile.get("archMap") and profile.get("architectures"):
        die("both archMap and architectures are given")
    for a in profile.get("archMap") or []:
        if a.get("architecture") == native:
            return [native] + list(a.get("subArchitectures") or [])
    return list(profile.get("architectures") or [])


def arch_token(so, name):
    short = name[len("SCMP_ARCH_"):].lower()
    tok = so.seccomp_arch_resolve_name(short.encode())
    if tok == 0:
        die("libseccomp does not know %s" % name)
    return tok


def check_names(so, profile):
    tokens = []
    for a in profile.get("archMap") or []:
        for n in [a["architecture"]] + list(a.get("subArchitectures") or []):
            tokens.append(arch_token(so, n))
    for n in profile.get("architectures") or []:
        tokens.append(arch_token(so, n))
    if not tokens:
        tokens = [so.seccomp_arch_native()]
    bad = []
    for entry in profile.get("syscalls") or []:
        for name in entry.get("names") or []:
            if all(so.seccomp_syscall_resolve_name_arch(t, name.encode()) < 0
                   for t in tokens):
                bad.append(name)
    for name in bad:
        print("seccomp-exec: %s is a system call on none of the profile's "
              "architectures" % name, file=sys.stderr)
    return 1 if bad else 0


def load(so, profile):
    errno_default = profile.get("defaultErrnoRet", 1)
    ctx = so.seccomp_init(action(profile, "defaultAction", "defaultErrnoRet",
                                 1))
    if not ctx:
        die("seccomp_init failed")
    for a in arches(profile):
        tok = arch_token(so, a)
        if so.seccomp_arch_exist(ctx, tok) != 0:
            rc = so.seccomp_arch_add(ctx, tok)
            if rc != 0:
                die("seccomp_arch_add %s: %s" % (a, os.strerror(-rc)))
    for entry in profile.get("syscalls") or []:
        act = action(entry, "action", "errnoRet", errno_default)
        args = entry.get("args") or []
        cmps = (ArgCmp * max(1, len(args)))()
        for i, a in enumerate(args):
            cmps[i].arg = a["index"]
            cmps[i].op = OPS[a["op"]]
            cmps[i].datum_a = a.get("value", 0)
            cmps[i].datum_b = a.get("valueTwo", 0)
        for name in entry.get("names") or []:
            nr = so.seccomp_syscall_resolve_name(name.encode())
            if nr == NR_SCMP_ERROR:
                continue        # not on this architecture: runc skips it
            rc = so.seccomp_rule_add_array(ctx, act, nr, len(args), cmps)
            if rc != 0:
                die("rule for %s: %s" % (name, os.strerror(-rc)))
    rc = so.seccomp_load(ctx)
    if rc != 0:
        die("seccomp_load: %s" % os.strerror(-rc))


def main():
    argv = sys.argv[1:]
    only_names = False
    root = user = None
    while argv and argv[0].startswith("--") and argv[0] != "--":
        opt = argv.pop(0)
        if opt == "--check-names":
            only_names = True
        elif opt in ("--root", "--user") and argv:
            if opt == "--root":
                root = argv.pop(0)
            else:
                user = argv.pop(0)
        else:
            die("unknown option %s" % opt)
    if not argv:
        die("usage: seccomp-exec.py [--root DIR] [--user UID:GID] "
            "PROFILE.json [--] COMMAND ARGS... | --check-names PROFILE.json")
    path, rest = argv[0], argv[1:]
    if rest and rest[0] == "--":
        rest = rest[1:]
    try:
        with open(path, encoding="utf-8") as f:
            profile = json.load(f)
    except (OSError, ValueError) as e:
        die("%s: %s" % (path, e))
    so = lib()
    if only_names:
        return check_names(so, profile)
    if not rest:
        die("no command")
    if root is not None:
        os.chroot(root)
        os.chdir("/")
    if user is not None:
        try:
            uid, gid = (int(x) for x in user.split(":"))
        except ValueError:
            die("--user wants UID:GID, numeric")
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    load(so, profile)
    try:
        os.execv(rest[0], rest)
    except OSError as e:
        die("exec %s: %s" % (rest[0], e.strerror), 127)


if __name__ == "__main__":
    sys.exit(main())
