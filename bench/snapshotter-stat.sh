#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Stat latency through containerd's API: lazypull-snapshotter (proxy plugin
# "nydus") against containerd's built-in overlayfs, in the same containerd
# and the same run, alternating, ROUNDS rounds of N sequential calls plus N
# calls over 8 goroutines; medians and the ratio (target <= 1.3x).  A third
# variant, refproxy (tests/snapshotter/go/refproxy: containerd's own
# overlayfs snapshotter served by containerd's contrib/snapshotservice over
# grpc-go, proxy plugin "refproxy"), is the reference proxy: the ratio
# lazypull/refproxy is what our server costs against containerd's own code
# behind the same proxy path.  Also the snapshotter's RSS at idle, after the
# load, and its peak.
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
SNAP_PID="" REF_PID="" CTRD_PID=""
cleanup() {
	set +e
	stop_pid "$CTRD_PID"
	stop_pid "$SNAP_PID"
	stop_pid "$REF_PID"
	unmount_ours # refproxy's root, W/refproxy-root, is under W
	rm -rf "$R"
}
trap cleanup EXIT

rc=0
"$HERE/run-go.sh" build "$W/go" "$W/snapctl" || rc=$?
[ $rc = 0 ] || exit $rc
"$HERE/run-go.sh" build "$W/go" "$W/refproxy" refproxy || rc=$?
[ $rc = 0 ] || exit $rc

"$SNAP" --root "$W/snap" --address "$R/snap.sock" --log-level warn \
	--log-to-stdout >"$W/snapshotter.log" 2>&1 &
SNAP_PID=$!
"$W/refproxy" --root "$W/refproxy-root" --address "$R/ref.sock" \
	>"$W/refproxy.log" 2>&1 &
REF_PID=$!
"$W/snapctl" wait "$R/snap.sock" 20
# not `snapctl wait`: a fresh overlay snapshotter answers List with
# NotFound ("bucket does not exist") until its first Prepare; refproxy
# listens once the snapshotter is open, and the kernel queues connections
for _ in $(seq 200); do
	[ -S "$R/ref.sock" ] && break
	kill -0 "$REF_PID" 2>/dev/null || break
	sleep 0.1
done
[ -S "$R/ref.sock" ] || { cat "$W/refproxy.log" >&2; exit 1; }
CTRD_EXTRA_CONFIG="
[proxy_plugins.refproxy]
  type = \"snapshot\"
  address = \"$R/ref.sock\""
start_containerd

rss() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
idle=$(rss "$SNAP_PID" VmRSS)
threads=$(ls "/proc/$SNAP_PID/task" | wc -l)

for _ in $(seq "$ROUNDS"); do
	for s in overlayfs nydus refproxy; do
		"$W/snapctl" bench-ctrd "$R/ctrd.sock" "$NS" "$s" "$N" 8
	done
done | tee "$W/bench.txt"
loaded=$(rss "$SNAP_PID" VmRSS)
peak=$(rss "$SNAP_PID" VmHWM)
ref_loaded=$(rss "$REF_PID" VmRSS)
ref_peak=$(rss "$REF_PID" VmHWM)

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { grep "^$1 " "$W/bench.txt" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2 | median; }
ov=$(field overlayfs mean_us)
ny=$(field nydus mean_us)
rp=$(field refproxy mean_us)
echo
printf 'Stat via containerd, median of %d rounds x %d calls:\n' "$ROUNDS" "$N"
printf '  overlayfs (built in)   mean %8.1f us  p50 %8.1f us  8-way %6.0f calls/s\n' \
	"$ov" "$(field overlayfs p50_us)" "$(field overlayfs par8_calls_per_s)"
printf '  lazypull (proxy)       mean %8.1f us  p50 %8.1f us  8-way %6.0f calls/s\n' \
	"$ny" "$(field nydus p50_us)" "$(field nydus par8_calls_per_s)"
printf '  refproxy (Go proxy)    mean %8.1f us  p50 %8.1f us  8-way %6.0f calls/s\n' \
	"$rp" "$(field refproxy p50_us)" "$(field refproxy par8_calls_per_s)"
div() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo "  ratio lazypull/overlayfs: $(div "$ny" "$ov")x (target <= 1.3x)"
echo "  ratio lazypull/refproxy:  $(div "$ny" "$rp")x (our server against containerd's own behind the proxy path)"
echo "  ratio refproxy/overlayfs: $(div "$rp" "$ov")x (containerd's own snapshotter behind the proxy path)"
echo "snapshotter RSS: idle ${idle} kB, after load ${loaded} kB, peak ${peak} kB; threads at idle: $threads"
echo "refproxy RSS: after load ${ref_loaded} kB, peak ${ref_peak} kB"
