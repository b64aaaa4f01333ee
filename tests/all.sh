#!/bin/bash
# The whole test suite: dependencies, a normal build with every suite, an
# ASan+UBSan build running the unit and format suites and the FUSE,
# snapshotter and fetcher integration tests, and a bounded libFuzzer run
# of every fuzz target.  Run as root on Debian 12.
set -euo pipefail

LP_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export LP_BUILD=${LP_BUILD:-$LP_SRC/build}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}

"$LP_SRC/tests/setup.sh"

echo "== tests (normal build)"
meson test -C "$LP_BUILD" --print-errorlogs --num-processes 2

echo "== tests under ASan+UBSan"
SAN=$LP_SRC/build-san
if [ ! -f "$SAN/build.ninja" ]; then
	CC=clang meson setup "$SAN" "$LP_SRC" -Db_sanitize=address,undefined \
		-Db_lundef=false -Dfuzzers=true >"$SAN.setup.log" 2>&1 ||
		{ cat "$SAN.setup.log"; rm -rf "$SAN"; exit 1; }
fi
ninja -C "$SAN" >"$SAN.ninja.log" 2>&1 || {
	grep -E -B2 -A12 'FAILED|error' "$SAN.ninja.log" | head -80
	exit 1
}
# the unit suite, the same-model conformance run and the bad-input cases;
# the long tar-conformance matrix runs in the normal build only
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1
meson test -C "$SAN" --print-errorlogs --num-processes 2 \
	--suite unit --suite conformance
meson test -C "$SAN" --print-errorlogs bad-input
# the real-parts tests whose daemons run many threads (FUSE servers,
# layer opens, prefetch, fs daemons under the snapshotter), under the
# sanitizers too; a daemon's report lands in its log file, so scan them
meson test -C "$SAN" --print-errorlogs --num-processes 2 \
	mount-remote snapshotter-remote cli-remote fetcher-faults
if grep -rl --include='*.log' -E 'runtime error|ERROR: (Address|Leak)Sanitizer' \
	"$SAN"/tests/work-* 2>/dev/null; then
	echo "sanitizer reports in the daemons' logs above"
	exit 1
fi

echo "== fuzzing (${FUZZ_SECONDS}s per target)"
shopt -s nullglob
for f in "$SAN"/tests/fuzz-*; do
	[ -f "$f" ] && [ -x "$f" ] || continue
	name=$(basename "$f")
	corpus=$(mktemp -d)
	args=("$corpus")
	[ -d "$LP_SRC/testdata/fuzz/$name" ] && args+=("$LP_SRC/testdata/fuzz/$name")
	echo "-- $name"
	if ! "$f" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 "${args[@]}" >"$corpus.log" 2>&1; then
		tail -60 "$corpus.log"
		echo "fuzz target $name failed (crash input saved in $PWD)"
		exit 1
	fi
	grep -E '^stat::number_of_executed_units' "$corpus.log" || true
	rm -rf "$corpus" "$corpus.log"
done
echo "== all tests passed"
