#!/bin/sh
#
# run.sh SECONDS HARNESS...  -- run by `make fuzz` and `make fuzz-smoke`.
#
# For each harness: replay fuzz/regressions/<harness>/* once each, then
# fuzz for SECONDS with the working corpus build/fuzz/corpus/<harness>
# (new inputs land there) seeded read-only from fuzz/corpus/<harness>,
# with fuzz/dict/<harness>.dict and the flags in fuzz/<harness>.options
# if they exist.  Long runs go in chunks of FUZZ_CHUNK seconds (120), each
# a fresh process, so that memory a library leaks (fuzz/lsan.supp) cannot
# pile up.  Crashes, leaks and timeouts go to build/fuzz/artifacts/; the
# full output to build/fuzz/logs/<harness>.log.  One line per harness;
# exits 1 when any harness failed, after running them all.
set -eu

secs=$1
shift
chunk=${FUZZ_CHUNK:-120}
out=build/fuzz
mkdir -p "$out/artifacts" "$out/logs"

# Leaks are bugs; UBSan stops at the first report (-fno-sanitize-recover).
LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=fuzz/lsan.supp:print_suppressions=0}
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS

# What to show of a failure: the harness's words, sanitizer headlines.
show="^(==[0-9]+==ERROR|SUMMARY|.*runtime error|fuzz_[a-z0-9_]*:)"

# The last value libFuzzer printed for a final statistic.
stat() {
	sed -n "s/^stat::$1: *//p" "$2" | tail -n 1
}

failed=""
for h in "$@"; do
	bin=$out/$h
	log=$out/logs/$h.log
	: >"$log"

	# The regressions first: each must run clean.
	nreg=0
	if [ -d "fuzz/regressions/$h" ]; then
		for f in "fuzz/regressions/$h"/*; do
			[ -f "$f" ] || continue
			case $f in *.md|*.txt) continue ;; esac
			nreg=$((nreg + 1))
			if ! "$bin" -runs=1 "$f" >>"$log" 2>&1; then
				echo "$h: FAIL regression $f"
				grep -a -m 3 -E "$show" "$log" |
				    sed 's/^/    /' || true
				failed="$failed $h"
				continue 2
			fi
		done
	fi

	mkdir -p "$out/corpus/$h"
	flags=""
	[ -f "fuzz/dict/$h.dict" ] && flags="-dict=fuzz/dict/$h.dict"
	[ -f "fuzz/$h.options" ] &&
	    flags="$flags $(grep -v '^[[:space:]]*\(#\|$\)' "fuzz/$h.options" |
	    tr '\n' ' ')"
	left=$secs
	execs=0
	rc=0
	while [ "$left" -gt 0 ] && [ "$rc" -eq 0 ]; do
		t=$chunk
		[ "$left" -lt "$t" ] && t=$left
		# shellcheck disable=SC2086
		"$bin" -max_total_time="$t" -print_final_stats=1 -timeout=10 \
		    -rss_limit_mb=2048 -artifact_prefix="$out/artifacts/$h-" \
		    $flags "$out/corpus/$h" "fuzz/corpus/$h" >>"$log" 2>&1 ||
		    rc=$?
		n=$(stat number_of_executed_units "$log")
		execs=$((execs + ${n:-0}))
		left=$((left - t))
	done

	last=$(grep -a -E '^#[0-9]+' "$log" | tail -n 1 || true)
	cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	corp=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
	if [ "$rc" -ne 0 ]; then
		art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" |
		    tail -n 1)
		echo "$h: FAIL after $execs execs: ${art:-see $log}"
		grep -a -m 3 -E "$show" "$log" | sed 's/^/    /' || true
		failed="$failed $h"
		continue
	fi
	printf '%-16s ok  %10d execs  %6d/s  %ss  cov %s  corpus %s  ' \
	    "$h:" "$execs" "$((execs / secs))" "$secs" "${cov:-?}" \
	    "${corp:-?}"
	printf 'regressions %d\n' "$nreg"
done

if [ -n "$failed" ]; then
	echo "fuzz: failed:$failed"
	exit 1
fi
exit 0
