#!/usr/bin/python3
"""
Runs the integration tests of mtlsd.

    run.py --mtlsd PATH [-k SUBSTRING] [-v] [-j N]

Discovers test_*.py beside this file and runs every function named
test_* with a fresh harness.Env, a few at a time (each test has its own
ports and directory).  Prints PASS/FAIL/SKIP per test, the mtlsd logs of
a failed test, and one last line "N passed, N failed[, N skipped]".
Exit status 1 when a test failed, 2 when the suite cannot run.
"""
import argparse
import importlib.util
import inspect
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

TEST_TIMEOUT = 90.0	# seconds one test may take before it is failed
# Tests that take long go first, so that the pool ends evenly.
SLOW_FIRST = ("10mb", "drain", "timeout", "limit")


def discover(pattern):
    tests = []
    for fn in sorted(os.listdir(HERE)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        modname = "it_" + fn[:-3]
        spec = importlib.util.spec_from_file_location(modname,
                                                      os.path.join(HERE, fn))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        funcs = [f for n, f in inspect.getmembers(mod, inspect.isfunction)
                 if n.startswith("test_") and f.__module__ == modname]
        funcs.sort(key=lambda f: f.__code__.co_firstlineno)
        for f in funcs:
            name = "%s.%s" % (fn[:-3], f.__name__)
            if pattern is None or pattern in name:
                tests.append((name, f))
    return tests


def where(exc):
    """file:line of the innermost frame in a test module."""
    tb = traceback.extract_tb(exc.__traceback__)
    for fr in reversed(tb):
        base = os.path.basename(fr.filename)
        if base.startswith("test_"):
            return "%s:%d" % (base, fr.lineno)
    if tb:
        return "%s:%d" % (os.path.basename(tb[-1].filename), tb[-1].lineno)
    return "?"


class Result:
    def __init__(self, name):
        self.name = name
        self.status = None	# PASS FAIL SKIP
        self.reason = ""
        self.secs = 0.0
        self.logs = []
        self.trace = ""


def run_one(name, func, verbose):
    res = Result(name)
    env = harness.Env(name)
    box = {}

    def body():
        try:
            func(env)
            box["ok"] = True
        except harness.Skip as e:
            box["skip"] = str(e)
        except BaseException as e:  # noqa: B902 -- report everything
            box["exc"] = e
            box["trace"] = traceback.format_exc()

    t0 = time.monotonic()
    t = threading.Thread(target=body, name=name, daemon=True)
    t.start()
    t.join(TEST_TIMEOUT)
    timed_out = t.is_alive()
    # Stop everything the test started, also when it failed or hangs.
    stop_problems = env.close()
    if timed_out:
        t.join(10)
    res.secs = time.monotonic() - t0
    res.logs = env.all_logs()
    if timed_out:
        res.status, res.reason = "FAIL", "timed out after %.0f s" % \
            TEST_TIMEOUT
    elif "skip" in box:
        res.status, res.reason = "SKIP", box["skip"]
    elif "exc" in box:
        e = box["exc"]
        msg = str(e) or e.__class__.__name__
        if not isinstance(e, AssertionError):
            msg = "%s: %s" % (e.__class__.__name__, msg)
        res.status, res.reason = "FAIL", "%s [%s]" % (msg, where(e))
        res.trace = box.get("trace", "")
    else:
        res.status = "PASS"
    bad = env.sanitizer_problems() + stop_problems
    if bad and res.status != "FAIL":
        res.status, res.reason = "FAIL", "; ".join(bad)
    env.remove()
    return res


def report(res, verbose, out_lock):
    with out_lock:
        if res.status == "PASS":
            print("PASS %s (%.1fs)" % (res.name, res.secs))
        elif res.status == "SKIP":
            print("SKIP %s: %s" % (res.name, res.reason))
        else:
            print("FAIL %s: %s" % (res.name, res.reason))
            if verbose and res.trace:
                print("    " + res.trace.rstrip().replace("\n", "\n    "))
        if res.status == "FAIL" or verbose:
            for label, text in res.logs:
                print("    --- %s" % label)
                for l in text.rstrip().splitlines():
                    print("    | " + l)
        sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description="mtlsd integration tests")
    ap.add_argument("--mtlsd", required=True, help="the binary under test")
    ap.add_argument("-k", dest="pattern", help="run tests whose name "
                    "holds this substring")
    ap.add_argument("-v", dest="verbose", action="store_true",
                    help="tracebacks, and logs of passing tests too")
    ap.add_argument("-j", dest="jobs", type=int, default=3,
                    help="tests run at once (default 3)")
    a = ap.parse_args()

    mtlsd = os.path.abspath(a.mtlsd)
    if not os.access(mtlsd, os.X_OK):
        print("run.py: %s is not an executable" % mtlsd, file=sys.stderr)
        return 2
    certs = harness.CERTS
    if not os.path.exists(os.path.join(certs, "ca-bundle.crt")):
        print("run.py: no demo PKI in %s (make certs)" % certs,
              file=sys.stderr)
        return 2
    # A private copy: make-certs.sh may swap the directory meanwhile.
    work = tempfile.mkdtemp(prefix="mtlsd-it-certs-")
    try:
        shutil.copytree(certs, os.path.join(work, "pki"))
        # Readable by mtlsd after it dropped privileges (reloads).
        os.chmod(work, 0o755)
        os.chmod(os.path.join(work, "pki"), 0o755)
        harness.CERTS = os.path.join(work, "pki")
        harness.MTLSD = mtlsd
        tests = discover(a.pattern)
        if not tests:
            print("run.py: no test matches", file=sys.stderr)
            return 2
        tests.sort(key=lambda t: 0 if any(s in t[0] for s in SLOW_FIRST)
                   else 1)
        return run_all(tests, max(1, a.jobs), a.verbose)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_all(tests, jobs, verbose):
    out_lock = threading.Lock()
    results = []
    queue = list(tests)
    qlock = threading.Lock()

    def worker():
        while True:
            with qlock:
                if not queue:
                    return
                name, func = queue.pop(0)
            res = run_one(name, func, verbose)
            results.append(res)
            report(res, verbose, out_lock)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True)
               for _ in range(min(jobs, len(tests)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    npass = sum(1 for r in results if r.status == "PASS")
    nfail = sum(1 for r in results if r.status == "FAIL")
    nskip = sum(1 for r in results if r.status == "SKIP")
    if verbose:
        print("(%.1f s)" % (time.monotonic() - t0))
    line = "%d passed, %d failed" % (npass, nfail)
    if nskip:
        line += ", %d skipped" % nskip
    print(line)
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
