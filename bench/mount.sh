#!/bin/bash
# FUSE mount benchmark (issue 6): warm read throughput through the mount vs
# the extracted file, cold first reads from a local docker-registry, daemon
# RSS, and on-demand reads during --prefetch-all.  See bench/mount_bench.py.
# Usage: bench/mount.sh [BUILD_DIR] [ROUNDS]   (default: build, 5); as root.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-$SRC/build}
ninja -C "$B" cli/lazypull >/dev/null
WORK=$(mktemp -d /tmp/lazypull-mount-bench.XXXXXX)
# mount_bench.py unmounts and stops what it started; this is the safety net
cleanup() {
	awk -v w="$WORK/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r mp; do umount -l "$mp" 2>/dev/null; done
	rm -rf "$WORK"
}
trap cleanup EXIT
python3 "$SRC/bench/mount_bench.py" "$B/cli/lazypull" "$WORK/w" "${2:-5}"
