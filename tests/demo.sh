#!/bin/bash
# The demo: install, build, make a sample eStargz layer with the reference
# (Go) estargz library, and read it with lazypull: inspect, ls, cat, check.
set -euo pipefail

LP_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export LP_BUILD=${LP_BUILD:-$LP_SRC/build}
"$LP_SRC/tests/setup.sh"
LP=$LP_BUILD/cli/lazypull
WORK=$(mktemp -d /tmp/lazypull-demo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

echo "== building a sample layer (busybox-like tree, 64 KiB chunks)"
mkdir -p "$WORK/root/bin" "$WORK/root/etc" "$WORK/root/lib"
head -c 300000 /dev/urandom >"$WORK/root/bin/busybox"
chmod 755 "$WORK/root/bin/busybox"
ln "$WORK/root/bin/busybox" "$WORK/root/bin/sh"
ln -s busybox "$WORK/root/bin/ls"
echo "root:x:0:0:root:/root:/bin/sh" >"$WORK/root/etc/passwd"
seq 1 20000 >"$WORK/root/lib/numbers.txt"
tar -C "$WORK/root" --numeric-owner -cf "$WORK/layer.tar" .
"$LP_SRC/tests/refgen/build.sh" "$LP_BUILD/refgen" >/dev/null
"$LP_BUILD/refgen/refgen" -format estargz -chunk-size 65536 \
	"$WORK/layer.tar" "$WORK/layer.esgz" 2>"$WORK/toc-digest"
echo "layer: $(stat -c %s "$WORK/layer.esgz") bytes eStargz, $(stat -c %s "$WORK/layer.tar") bytes tar"

echo; echo "== lazypull inspect"
"$LP" inspect "$WORK/layer.esgz"
echo; echo "== lazypull ls"
"$LP" ls "$WORK/layer.esgz"
echo; echo "== lazypull ls --json --digest (first lines)"
"$LP" ls --json --digest "$WORK/layer.esgz" | head -5
echo; echo "== lazypull cat -v /etc/passwd"
"$LP" cat -v "$WORK/layer.esgz" /etc/passwd
echo; echo "== lazypull cat /lib/numbers.txt | tail -1 (reads only what it needs)"
"$LP" cat -v "$WORK/layer.esgz" /lib/numbers.txt | tail -1
echo; echo "== lazypull check"
"$LP" check "$WORK/layer.esgz"

echo
echo "== end to end: registry, containerd, lazypull-snapshotter"
"$LP_SRC/tests/demo-e2e.sh" "$LP_BUILD"
