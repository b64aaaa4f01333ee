#!/bin/bash
# The end-to-end part of the demo (tests/demo.sh runs it after the build):
# a docker-registry, a containerd 1.6 (own root, socket and namespace, CRI
# off) and lazypull-snapshotter, all started here; an image holding 40 MiB
# the container never reads, converted to eStargz with ctr-remote and
# pushed; `ctr-remote image rpull --snapshotter nydus` + `ctr run` start a
# container lazily; prints what was fetched against the image size.
# Everything started is stopped by PID and unmounted at the end.
# usage: tests/demo-e2e.sh BUILD_DIR
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=$(cd "${1:?usage: demo-e2e.sh BUILD_DIR}" && pwd)
LP=$B/cli/lazypull
SNAP=$B/snapshotter/lazypull-snapshotter
W=$(mktemp -d /tmp/lazypull-e2e.XXXXXX)
R=$(mktemp -d /run/lazypull-e2e.XXXXXX)
NS=lazypull-demo
REG_PID='' CTRD_PID='' SNAP_PID=''

# shellcheck source=snapshotter/lib.sh
. "$SRC/tests/snapshotter/lib.sh"

cleanup() {
	set +e
	if [ -n "$CTRD_PID" ]; then
		for c in $(ctr -a "$R/ctrd.sock" -n $NS containers ls -q 2>/dev/null); do
			ctr -a "$R/ctrd.sock" -n $NS task rm -f "$c" >/dev/null 2>&1
			ctr -a "$R/ctrd.sock" -n $NS containers rm "$c" >/dev/null 2>&1
		done
	fi
	stop_pid "$SNAP_PID"
	stop_pid "$CTRD_PID"
	stop_pid "$REG_PID"
	unmount_ours
	for f in "$W"/snap/daemons/*.pid; do
		[ -f "$f" ] && stop_pid "$(cat "$f" 2>/dev/null)"
	done
	rm -rf "$W" "$R"
}
trap cleanup EXIT

start_registry warn
echo "registry:     http://$REG (pid $REG_PID)"

echo '{"device": {"backend": {"type": "registry", "config": {"scheme": "http"}}}}' \
	>"$W/nydusd.json"
"$SNAP" --root "$W/snap" --address "$R/snap.sock" --enable-stargz \
	--nydusd-config "$W/nydusd.json" --lazypull-path "$LP" \
	--log-to-stdout --log-level info >"$W/snapshotter.log" 2>&1 &
SNAP_PID=$!
for _ in $(seq 100); do
	[ -S "$R/snap.sock" ] && break
	sleep 0.1
done
[ -S "$R/snap.sock" ] || { tail "$W/snapshotter.log"; exit 1; }
echo "snapshotter:  lazypull-snapshotter (pid $SNAP_PID)"

start_containerd
ctr_() { ctr -a "$R/ctrd.sock" -n "$NS" "$@"; }
ctrb() { ctr -a "$R/ctrd.sock" -n "$NS-build" "$@"; }
echo "containerd:   $(containerd --version | awk '{print $3}') (pid $CTRD_PID, namespace $NS)"

echo
echo "== an image with 40 MiB the container never reads, converted to eStargz"
python3 "$SRC/tests/snapshotter/mkimage.py" /bin/busybox "$W/oci" demo:1 40 >/dev/null
skopeo copy --quiet --dest-tls-verify=false "oci:$W/oci:demo:1" "docker://$REG/demo/app:1"
ctrb images pull --plain-http "$REG/demo/app:1" >/dev/null
ctr-remote -a "$R/ctrd.sock" -n "$NS-build" image convert --estargz --oci \
	"$REG/demo/app:1" "$REG/demo/app:esgz" >/dev/null
ctrb images push --plain-http "$REG/demo/app:esgz" >/dev/null 2>&1
curl -fs -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
	"http://$REG/v2/demo/app/manifests/esgz" >"$W/manifest.json"
size=$(python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(open(sys.argv[1]))["layers"]))' "$W/manifest.json")
python3 -c 'import json,sys; [print(l["digest"]) for l in json.load(open(sys.argv[1]))["layers"]]' \
	"$W/manifest.json" >"$W/layers"
echo "pushed $REG/demo/app:esgz: layers of $size bytes"

echo
echo "== ctr-remote image rpull --snapshotter nydus, then ctr run"
t0=$(date +%s.%N)
ctr-remote -a "$R/ctrd.sock" -n "$NS" image rpull --plain-http \
	--snapshotter nydus "$REG/demo/app:esgz" >"$W/rpull.log" 2>&1
t1=$(date +%s.%N)
out=$(ctr_ run --rm --snapshotter nydus "$REG/demo/app:esgz" demo1 \
	cat /hello.txt </dev/null)
t2=$(date +%s.%N)
echo "the container printed: $out"
awk -v a="$t0" -v b="$t1" -v c="$t2" \
	'BEGIN { printf "rpull %.2f s, run %.2f s\n", b - a, c - b }'
echo "layer blobs in containerd's content store: $(ctr_ content ls -q | grep -c -F -x -f "$W/layers" || true) of $(wc -l <"$W/layers") (containerd never downloaded them)"
echo "fuse.lazypull mounts: $(awk -v w="$W/" 'index($5, w) == 1 && / - fuse\.lazypull /' /proc/self/mountinfo | grep -c . || true) (one fs daemon serves the image)"
# the blob cache holds what came from the registry (cache/decoded holds
# decoded chunks, not fetched bytes)
fetched=$(du -s --block-size=1 --exclude=decoded "$W/snap/cache" | awk '{print $1}')
awk -v f="$fetched" -v s="$size" 'BEGIN {
	printf "fetched %d bytes of the image'"'"'s %d (%.1f%%)\n", f, s, 100 * f / s }'
[ "$out" = "hello from layer 2" ]
