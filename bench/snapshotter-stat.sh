#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Stat latency through containerd's API: lazypull-snapshotter (proxy plugin
# "nydus") against containerd's built-in overlayfs, in the same containerd
# and the same run, alternating, ROUNDS rounds of N sequential calls plus N
# calls over 8 goroutines; medians and the ratio (target <= 1.3x).  Also the
# snapshotter's RSS at idle, after the load, and its peak.
#
# Usage: bench/snapshotter-stat.sh [BUILD_DIR]   (default: build); as root.
# env: SNAPSHOTTER (default BUILD_DIR/snapshotter/lazypull-snapshotter),
# WORKDIR (default BUILD_DIR/bench/work-snapshotter-stat, emptied first),
# GOCACHE, ROUNDS (5), N (1000).  Exit 77 (SKIP) without root, containerd
# or Go.  Its containerd has its own root (WORKDIR), state and sockets
# (a fresh /run/lp-bench.XXXXXX) and namespace (lp-bench-PID).
set -euo pipefail
SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
HERE=$SRCDIR/tests/snapshotter
B=$(cd "${1:-$SRCDIR/build}" && pwd)
SNAP=${SNAPSHOTTER:-$B/snapshotter/lazypull-snapshotter}
W=${WORKDIR:-$B/bench/work-snapshotter-stat}
export GOCACHE=${GOCACHE:-$B/tests/snapshotter-gocache}
ROUNDS=${ROUNDS:-5}
N=${N:-1000}
# shellcheck source=SCRIPTDIR/../tests/snapshotter/lib.sh
. "$HERE/lib.sh"

[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
for t in containerd ctr go; do
	command -v $t >/dev/null || { echo "SKIP: $t"; exit 77; }
done
[ -x "$SNAP" ] || { echo "no snapshotter binary $SNAP (ninja -C $B)" >&2; exit 1; }
rm -rf "$W"
mkdir -p "$W"
W=$(cd "$W" && pwd)
R=$(mktemp -d /run/lp-bench.XXXXXX)
NS=lp-bench-$$
SNAP_PID="" CTRD_PID=""
cleanup() {
	set +e
	stop_pid "$CTRD_PID"
	stop_pid "$SNAP_PID"
	unmount_ours
	rm -rf "$R"
}
trap cleanup EXIT

rc=0
"$HERE/run-go.sh" build "$W/go" "$W/snapctl" || rc=$?
[ $rc = 0 ] || exit $rc

"$SNAP" --root "$W/snap" --address "$R/snap.sock" --log-level warn \
	--log-to-stdout >"$W/snapshotter.log" 2>&1 &
SNAP_PID=$!
"$W/snapctl" wait "$R/snap.sock" 20
start_containerd

rss() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
idle=$(rss "$SNAP_PID" VmRSS)
threads=$(ls "/proc/$SNAP_PID/task" | wc -l)

for _ in $(seq "$ROUNDS"); do
	for s in overlayfs nydus; do
		"$W/snapctl" bench-ctrd "$R/ctrd.sock" "$NS" "$s" "$N" 8
	done
done | tee "$W/bench.txt"
loaded=$(rss "$SNAP_PID" VmRSS)
peak=$(rss "$SNAP_PID" VmHWM)

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { grep "^$1 " "$W/bench.txt" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2 | median; }
ov=$(field overlayfs mean_us)
ny=$(field nydus mean_us)
echo
printf 'Stat via containerd, median of %d rounds x %d calls:\n' "$ROUNDS" "$N"
printf '  overlayfs (built in)   mean %8.1f us  p50 %8.1f us  8-way %6.0f calls/s\n' \
	"$ov" "$(field overlayfs p50_us)" "$(field overlayfs par8_calls_per_s)"
printf '  lazypull (proxy)       mean %8.1f us  p50 %8.1f us  8-way %6.0f calls/s\n' \
	"$ny" "$(field nydus p50_us)" "$(field nydus par8_calls_per_s)"
ratio=$(awk -v a="$ny" -v b="$ov" 'BEGIN {printf "%.2f", a / b}')
echo "  ratio lazypull/overlayfs: ${ratio}x (target <= 1.3x)"
echo "snapshotter RSS: idle ${idle} kB, after load ${loaded} kB, peak ${peak} kB; threads at idle: $threads"
