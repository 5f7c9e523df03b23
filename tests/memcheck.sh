#!/bin/bash
# Memory checks: the integration tests against a non-sanitizer debug
# build of mtlsd, every mtlsd process under valgrind's memcheck.
#
#   tests/memcheck.sh [-j N] [-k PATTERN]... [MTLSD]
#
# MTLSD: the binary (default build/debug/mtlsd: -O1 -g, no sanitizer;
# valgrind cannot run an ASan build).  -k PATTERN (repeatable) runs the
# tests whose name holds PATTERN instead of the default subset below;
# MEMCHECK_TESTS="pat1 pat2" does the same.  -j: tests at once (default 2).
#
# run.py starts mtlsd through a wrapper that execs
#   valgrind --tool=memcheck --leak-check=full
#            --errors-for-leak-kinds=definite,indirect --error-exitcode=99
#            --track-fds=no ... MTLSD "$@"
# with one valgrind log per process in a temporary directory.  The PID
# is mtlsd's, so the harness's signals reach it.  Valgrind keeps working
# after mtlsd drops to uid 65534 (its log is opened before), but not under
# mtlsd's seccomp filter: the subset leaves out the tests that turn the
# filter on (test_sandbox*, and the modules that run whole deployments).
# MTLSD_TIME_FACTOR=4 stretches the time bounds of test_faults.py.
#
# Fails (exit 1) when any valgrind log reports an error or a definite or
# indirect leak, or has no summary (the process was killed before its
# leak check); a process that died of a signal is listed, and judged on
# its errors only (what it had in flight would show as lost).  Tests
# that fail under valgrind's slowness are listed and fail the run too
# unless MEMCHECK_IGNORE_TEST_FAILURES=1.  The logs of a failed run are
# kept in /tmp/mtlsd-memcheck-logs-*.
set -u

cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)

JOBS=2
PATTERNS=()
BIN=
while [ $# -gt 0 ]; do
	case "$1" in
	-j) JOBS=$2; shift 2 ;;
	-j*) JOBS=${1#-j}; shift ;;
	-k) PATTERNS+=("$2"); shift 2 ;;
	-h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next }
	    NR > 1 { exit }' "$0"; exit 0 ;;
	-*) echo "memcheck: unknown option $1" >&2; exit 2 ;;
	*) BIN=$1; shift ;;
	esac
done
BIN=${BIN:-build/debug/mtlsd}

if [ ${#PATTERNS[@]} -eq 0 ] && [ -n "${MEMCHECK_TESTS:-}" ]; then
	read -r -a PATTERNS <<< "$MEMCHECK_TESTS"
fi
if [ ${#PATTERNS[@]} -eq 0 ]; then
	# Representative: every relay path, every rejection, reloads,
	# limits, timeouts, drain, faults, the admin endpoint, the CLI.
	PATTERNS=(
		test_relay.
		test_faults.test_target
		test_faults.test_client
		test_faults.test_garbage
		test_faults.test_handshake_flood
		test_faults.test_max_connections
		test_lifecycle.
		test_reload.
		test_admin.
		test_inbound.
		test_tls.
		test_outbound.
		test_proxy_protocol.
		test_cli.
	)
fi

if ! command -v valgrind >/dev/null 2>&1; then
	echo "memcheck: installing valgrind"
	timeout 600 sh -c 'apt-get update -qq &&
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind' \
	    >/dev/null || { echo "memcheck: no valgrind" >&2; exit 2; }
fi
if [ ! -x "$BIN" ]; then
	echo "memcheck: $BIN is not built (make build/debug/mtlsd)" >&2
	exit 2
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
if ldd "$BIN" 2>/dev/null | grep -q 'libasan\|libubsan\|libtsan'; then
	echo "memcheck: $BIN is a sanitizer build; valgrind needs a plain one" \
	    "(make build/debug/mtlsd)" >&2
	exit 2
fi
if [ ! -f certs-example/out/ca-bundle.crt ]; then
	echo "memcheck: no demo PKI (make certs)" >&2
	exit 2
fi

VGDIR=$(mktemp -d /tmp/mtlsd-memcheck.XXXXXX) || exit 2
chmod 0755 "$VGDIR"
trap 'rm -rf "$VGDIR"' EXIT
mkdir "$VGDIR/logs"
WRAP=$VGDIR/mtlsd-valgrind
cat > "$WRAP" <<EOF
#!/bin/sh
# mtlsd under memcheck, one log per process.
exec valgrind --tool=memcheck --leak-check=full \\
    --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \\
    --track-fds=no --vgdb=no --num-callers=30 \\
    --log-file=$VGDIR/logs/vg.%p.log "$BIN" "\$@"
EOF
chmod 0755 "$WRAP"

echo "memcheck: $BIN under $(valgrind --version), ${#PATTERNS[@]} test" \
    "groups, -j $JOBS"
T0=$(date +%s)
export MTLSD_TIME_FACTOR=${MTLSD_TIME_FACTOR:-4}
test_failed=0
failed_lines=()
total_pass=0
total_fail=0
g=0
for pat in "${PATTERNS[@]}"; do
	out=$VGDIR/run.out
	t=$(date +%s)
	# One log directory per group, so that a finding names its group.
	g=$((g + 1))
	mkdir -p "$VGDIR/logs/$g"
	echo "$pat" > "$VGDIR/logs/$g/group"
	sed -i "s|--log-file=[^ ]*|--log-file=$VGDIR/logs/$g/vg.%p.log|" "$WRAP"
	/usr/bin/python3 tests/integration/run.py --mtlsd "$WRAP" -k "$pat" \
	    -j "$JOBS" > "$out" 2>&1
	rc=$?
	last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
	echo "  $pat: ${last:-no result (exit $rc)} ($(( $(date +%s) - t )) s)"
	if [ -n "$last" ]; then
		set -- $last
		total_pass=$((total_pass + $1))
		total_fail=$((total_fail + $3))
	fi
	if [ $rc -ne 0 ]; then
		test_failed=1
		while IFS= read -r l; do failed_lines+=("$l"); done \
		    < <(grep -E '^FAIL ' "$out")
		[ -z "$last" ] && failed_lines+=("$pat: $(tail -3 "$out")")
	fi
done
SECS=$(( $(date +%s) - T0 ))

# Judge the valgrind logs.
nlogs=0
bad=0
incomplete=0
killed=0
for f in "$VGDIR"/logs/*/vg.*.log; do
	[ -e "$f" ] || continue
	nlogs=$((nlogs + 1))
	cmd="$(sed -n 's/^==[0-9]*== Command: //p' "$f" | head -1)"
	cmd="$cmd [group $(cat "$(dirname "$f")/group")]"
	if ! grep -q 'ERROR SUMMARY:' "$f"; then
		incomplete=$((incomplete + 1))
		echo "memcheck: no summary (killed before its leak check?):" \
		    "$cmd"
		continue
	fi
	sig=$(sed -n 's/.*Process terminating with default action of signal \([0-9]*\) (\(SIG[A-Z]*\)).*/\2/p' "$f" | head -1)
	if [ -n "$sig" ]; then
		# Killed by a signal (a test stopping a slow start, or a
		# signal before mtlsd handles it): what was in flight shows
		# as lost; only real errors count.
		killed=$((killed + 1))
		errs=$(grep -c '^==[0-9]*== \(Invalid \|Conditional jump\|Use of uninitialised\|Syscall param\|Mismatched\|Source and destination overlap\)' "$f")
		echo "memcheck: died of $sig (leaks not judged, $errs errors): $cmd"
		if [ "$errs" != 0 ]; then
			bad=$((bad + 1))
			sed -n '/^==[0-9]*== .*\(Invalid \|uninitialised\|Mismatched\|overlap\|Syscall param\)/,/^==[0-9]*== $/p' \
			    "$f" | head -80
		fi
		continue
	fi
	errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$f" |
	    tail -1 | tr -d ,)
	def=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$f" |
	    tail -1 | tr -d ,)
	ind=$(sed -n 's/.*indirectly lost: \([0-9,]*\) bytes.*/\1/p' "$f" |
	    tail -1 | tr -d ,)
	if [ "${errs:-0}" != 0 ] || [ "${def:-0}" != 0 ] ||
	    [ "${ind:-0}" != 0 ]; then
		bad=$((bad + 1))
		echo "memcheck: ${errs:-0} errors, ${def:-0} bytes definitely" \
		    "and ${ind:-0} indirectly lost: $cmd"
		sed -n '/^==[0-9]*== .*\(Invalid \|uninitialised\|Mismatched\|overlap\|Syscall param\|are definitely lost\|are indirectly lost\)/,/^==[0-9]*== $/p' \
		    "$f" | head -80
	fi
done

echo
echo "memcheck: $nlogs mtlsd processes under valgrind in $SECS s;" \
    "tests $total_pass passed, $total_fail failed;" \
    "$bad with memory errors or leaks, $killed killed by a signal," \
    "$incomplete without a summary"
if [ ${#failed_lines[@]} -gt 0 ]; then
	echo "memcheck: tests that failed under valgrind:"
	printf '  %s\n' "${failed_lines[@]}"
fi
status=0
if [ $bad -ne 0 ] || [ $incomplete -ne 0 ] || [ $nlogs -eq 0 ]; then
	status=1
fi
if [ $test_failed -ne 0 ] && [ "${MEMCHECK_IGNORE_TEST_FAILURES:-0}" != 1 ]; then
	status=1
fi
if [ $status -eq 0 ]; then
	echo "memcheck: clean"
else
	keep=/tmp/mtlsd-memcheck-logs-$(date +%s)
	cp -r "$VGDIR/logs" "$keep" && echo "memcheck: valgrind logs kept in $keep"
	echo "memcheck: FAILED"
fi
exit $status
