#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Stat latency through containerd's API: lazypull-snapshotter (proxy plugin
# "nydus") against containerd's built-in overlayfs, in the same containerd
# and the same run, alternating, ROUNDS rounds of N sequential calls plus N
# calls over 8 goroutines; medians and the ratio (target <= 1.3x).  Also the
# snapshotter's RSS at idle, after the load, and its peak.
#
# env: SNAPSHOTTER, SRCDIR, WORKDIR, ROUNDS (5), N (1000).  Exit 77 (SKIP)
# without root, containerd or Go.
set -euo pipefail
SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
HERE=$SRCDIR/tests/snapshotter
SNAP=${SNAPSHOTTER:?set SNAPSHOTTER}
W=${WORKDIR:-/tmp/lp-snap-bench}
ROUNDS=${ROUNDS:-5}
N=${N:-1000}

[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
for t in containerd ctr go; do
	command -v $t >/dev/null || { echo "SKIP: $t"; exit 77; }
done
rm -rf "$W"
mkdir -p "$W/ctrd/root" "$W/ctrd/opt"
R=$(mktemp -d /run/lp-bench.XXXXXX)
NS=lp-bench-$$
SNAP_PID= CTRD_PID=
stop_pid() {
	[ -n "$1" ] || return 0
	kill -TERM "$1" 2>/dev/null || return 0
	for _ in $(seq 100); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
	set +e
	stop_pid "$SNAP_PID"
	stop_pid "$CTRD_PID"
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
cat >"$W/containerd.toml" <<EOF
version = 2
root = "$W/ctrd/root"
state = "$R/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$R/ctrd.sock"
[ttrpc]
  address = "$R/ctrd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$W/ctrd/opt"
[proxy_plugins.nydus]
  type = "snapshot"
  address = "$R/snap.sock"
EOF
containerd --config "$W/containerd.toml" >"$W/containerd.log" 2>&1 &
CTRD_PID=$!
for _ in $(seq 100); do
	ctr -a "$R/ctrd.sock" version >/dev/null 2>&1 && break
	sleep 0.2
done

rss() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
idle=$(rss "$SNAP_PID" VmRSS)
threads=$(ls "/proc/$SNAP_PID/task" | wc -l)

for r in $(seq "$ROUNDS"); do
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
