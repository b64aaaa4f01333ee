#!/bin/bash
# Engine benchmarks, each printing ratios against a baseline measured in the
# same run:
#   bench-toc:  TOC parse time (vs jansson alone) and model bytes per inode
#               for a 100k-entry eStargz TOC;
#   bench-zran: zran index build (vs `gzip -dc` of the same layer) and 4 KiB
#               random-read latency deep inside a ~100 MB gzip layer.
# Usage: bench/engine.sh [BUILD_DIR]   (default: build)
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-$SRC/build}
ninja -C "$B" bench/bench-toc bench/bench-zran >/dev/null
WORK=$(mktemp -d /tmp/lazypull-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

echo "== bench-toc"
"$B/bench/bench-toc" 100000 5

echo
echo "== bench-zran: building a ~100 MB gzip layer from /usr"
# file contents of a real system (binaries, libraries, text): the first
# 260 MB of regular files under /usr, a whole tar stream
(cd / && find usr -xdev -type f -size -64M -printf '%s %p\n' 2>/dev/null |
	awk '{ t += $1; if (t > 260000000) exit; sub(/^[0-9]+ /, ""); print }' \
	>"$WORK/files") || true  # find gets SIGPIPE when awk is done
tar -C / --numeric-owner -cf - -T "$WORK/files" 2>/dev/null |
	gzip -6 >"$WORK/layer.tar.gz"
ls -l "$WORK/layer.tar.gz" | awk '{printf "layer: %.1f MB gzip\n", $5/1e6}'
"$B/bench/bench-zran" "$WORK/layer.tar.gz" 256 1024 4096
