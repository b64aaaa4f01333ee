#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Remote layers through lazypull-snapshotter, driven by a real containerd 1.6
# (its own root, state, socket and namespaces, CRI disabled) and a private
# docker-registry on loopback:
#   - a two-layer busybox image built here (plain gzip, served through zran
#     with --enable-zran), converted by ctr-remote to eStargz and
#     zstd:chunked, pushed; a nydus image assembled from the RAFS vectors
#     (tests/snapshotter/mknydus.py: data blob + bootstrap layer, with a
#     busybox layer on top);
#   - `ctr-remote image rpull --snapshotter nydus`: every layer committed as
#     remote (AlreadyExists), containerd's content store holds no layer blob,
#     the registry saw only range reads of the layers;
#   - `ctr run` prints what it should, from an overlay whose lowerdirs are
#     the fs daemons' fuse.lazypull mounts (whiteouts of the upper layer
#     applied); the zran indexes are kept under the root and reused by a
#     restarted daemon; the nydus image's files read right in a container;
#   - SIGKILL + restart of the snapshotter while a container runs: the
#     container keeps reading every file, the snapshotter re-attaches;
#   - a killed fs daemon is restarted and new containers run;
#   - removing the images removes the snapshots, mounts and daemons;
#   - with stargz off the eStargz image still runs (containerd unpacks it).
# Every process is stopped by PID and everything unmounted in the trap.
# Exit 77 (SKIP) when root or a tool is missing.
#
# env: SNAPSHOTTER, LAZYPULL (binaries), SRCDIR, WORKDIR
set -euo pipefail

SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
HERE=$SRCDIR/tests/snapshotter
# shellcheck source=lib.sh
. "$HERE/lib.sh"
SNAP=${SNAPSHOTTER:?set SNAPSHOTTER to the lazypull-snapshotter binary}
LAZYPULL=${LAZYPULL:?set LAZYPULL to the lazypull binary}
W=${WORKDIR:-/tmp/lp-snap-remote}

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root"
for t in containerd ctr ctr-remote runc docker-registry skopeo python3 curl; do
	command -v $t >/dev/null || skip "$t is not installed"
done
[ -x /bin/busybox ] || skip "busybox-static is not installed"
[ -c /dev/fuse ] || skip "no /dev/fuse"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
	skip "no overlayfs"

rm -rf "$W"
mkdir -p "$W"
W=$(cd "$W" && pwd)
R=$(mktemp -d /run/lp-snapr.XXXXXX) # short socket paths
NS=lp-remote-$$
NSB=lp-remote-build-$$
SNAP_PID= CTRD_PID= REG_PID=
fails=0

ctr_() { ctr -a "$R/ctrd.sock" -n "$NS" "$@"; }
ctrb() { ctr -a "$R/ctrd.sock" -n "$NSB" "$@"; }
csnap() { ctr_ snapshot --snapshotter nydus "$@"; }

daemon_pids() {
	cat "$W"/snap/daemons/*.pid 2>/dev/null || true
}

kill_containers() {
	for c in $(ctr_ containers ls -q 2>/dev/null); do
		ctr_ task kill -s KILL "$c" >/dev/null 2>&1
		for _ in $(seq 50); do
			ctr_ task ls 2>/dev/null | grep -q "^$c .*RUNNING" || break
			sleep 0.1
		done
		ctr_ task rm -f "$c" >/dev/null 2>&1
		ctr_ containers rm "$c" >/dev/null 2>&1
	done
}

cleanup() {
	set +e
	if [ -n "$CTRD_PID" ] && kill -0 "$CTRD_PID" 2>/dev/null; then
		kill_containers
	fi
	stop_pid "$SNAP_PID"
	stop_pid "$CTRD_PID"
	stop_pid "$REG_PID"
	unmount_ours # an unmounted fs daemon exits by itself
	for p in $(daemon_pids) ${EXTRA_PIDS:-}; do
		grep -q "$W" "/proc/$p/cmdline" 2>/dev/null && stop_pid "$p"
	done
	rm -rf "$R"
	if [ "$fails" = 0 ] && [ -z "${KEEP:-}" ]; then
		rm -rf "$W/ctrd" "$W/snap" "$W/registry" "$W/blobcache"
	fi
}
trap cleanup EXIT

start_snapshotter() { # extra flags
	"$SNAP" --root "$W/snap" --address "$R/snap.sock" --log-level debug \
		--log-to-stdout --nydusd-config "$W/nydusd.json" \
		--lazypull-path "$LAZYPULL" "$@" >>"$W/snapshotter.log" 2>&1 &
	SNAP_PID=$!
	for _ in $(seq 100); do
		[ -S "$R/snap.sock" ] && break
		kill -0 "$SNAP_PID" 2>/dev/null || break
		sleep 0.1
	done
	[ -S "$R/snap.sock" ] || { tail "$W/snapshotter.log"; exit 1; }
	log "snapshotter up, pid $SNAP_PID ($*)"
}

restart_snapshotter() { # signal, extra flags
	local sig=$1
	shift
	kill -"$sig" "$SNAP_PID"
	wait "$SNAP_PID" 2>/dev/null || true
	rm -f "$R/snap.sock"
	start_snapshotter "$@"
	# containerd's client reconnects with backoff
	for _ in $(seq 50); do csnap ls >/dev/null 2>&1 && break; sleep 0.2; done
}

# ---- registry, images ---------------------------------------------------

start_registry info accesslog
log "registry on $REG, pid $REG_PID"

python3 "$HERE/mkimage.py" /bin/busybox "$W/oci" bb:1 >/dev/null
skopeo copy --quiet --dest-tls-verify=false "oci:$W/oci:bb:1" \
	"docker://$REG/lp/bb:1"

cat >"$W/nydusd.json" <<EOF
{
  "device": {
    "backend": {"type": "registry", "config": {"scheme": "http", "timeout": 10}},
    "cache": {"type": "blobcache", "config": {"work_dir": "$W/blobcache"}}
  },
  "mode": "direct"
}
EOF

# a bound on the blob cache, which every probe and fs daemon must get
CACHE_MAX=1073741824
start_snapshotter --enable-stargz --enable-zran --cache-max "$CACHE_MAX"
start_containerd
log "containerd up, pid $CTRD_PID, namespaces $NS, $NSB"

# conversion in its own namespace, whose content is then dropped
ctrb images pull --plain-http "$REG/lp/bb:1" >"$W/build.log" 2>&1 ||
	{ cat "$W/build.log"; exit 1; }
ctr-remote -a "$R/ctrd.sock" -n "$NSB" image convert --estargz --oci \
	"$REG/lp/bb:1" "$REG/lp/bb:esgz" >>"$W/build.log" 2>&1
ctr-remote -a "$R/ctrd.sock" -n "$NSB" image convert --zstdchunked --oci \
	"$REG/lp/bb:1" "$REG/lp/bb:zstd" >>"$W/build.log" 2>&1
for t in esgz zstd; do
	ctrb images push --plain-http "$REG/lp/bb:$t" >>"$W/build.log" 2>&1 ||
		{ tail "$W/build.log"; exit 1; }
done
for i in $(ctrb images ls -q); do ctrb images rm --sync "$i" >/dev/null; done
ctrb content ls -q | xargs -r ctrb content rm >/dev/null 2>&1 || true
log "images pushed: $REG/lp/bb:{1,esgz,zstd}"

# layer digests, from the registry
layers() { # tag
	curl -fs -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		"http://$REG/v2/lp/bb/manifests/$1" |
		python3 -c 'import json,sys; [print(l["digest"]) for l in json.load(sys.stdin)["layers"]]'
}

mounts_of() { # the fuse.lazypull mountpoints under the snapshotter root
	awk -v m="$W/snap/mnt/" '$5 ~ "^" m && / - fuse.lazypull / { print $5 }' \
		/proc/self/mountinfo | sort
}

# ---- rpull + run, per format ---------------------------------------------

check_image() { # tag format
	local tag=$1 fmt=$2 ref=$REG/lp/bb:$1 out d n content
	local regmark
	regmark=$(wc -l <"$W/registry.log")
	ctr-remote -a "$R/ctrd.sock" -n "$NS" image rpull --plain-http \
		--snapshotter nydus "$ref" >"$W/rpull-$tag.log" 2>&1 ||
		fail "rpull $tag: $(tail -3 "$W/rpull-$tag.log")"
	n=$(grep -c "remote ($fmt), committed as" "$W/snapshotter.log" || true)
	[ "$n" -ge 2 ] || fail "$tag: $n layers committed as remote $fmt"
	content=$(ctr_ content ls -q) # (not piped into grep -q: pipefail)
	for d in $(layers "$tag"); do
		grep -qx "$d" <<<"$content" &&
			fail "$tag: containerd's content store holds layer $d"
		# only range reads of the layer blobs (HEADs, 206s)
		if tail -n +"$((regmark + 1))" "$W/registry.log" |
			grep "GET /v2/lp/bb/blobs/$d" | grep -v '" 206 ' |
			grep -c . >/dev/null; then
			fail "$tag: the registry served all of $d: $(tail -n +"$((regmark + 1))" "$W/registry.log" | grep "blobs/$d" | head -3)"
		fi
	done
	out=$(ctr_ run --rm --snapshotter nydus "$ref" "r-$tag-0" true </dev/null 2>&1) ||
		fail "$tag: ctr run true: $out"
	# the cache is where the nydusd JSON's work_dir says, outside the
	# root: blobs (a layer's TOC at least) there, nothing in <root>/cache
	for d in $(layers "$tag"); do
		[ -s "$W/blobcache/blobs/sha256/${d#sha256:}.data" ] ||
			fail "$tag: layer $d is not in the configured cache dir: $(ls "$W/blobcache" "$W/blobcache/blobs/sha256" 2>&1 | head -5)"
	done
	[ ! -e "$W/snap/cache" ] ||
		fail "$tag: something was cached under the root: $(find "$W/snap/cache" | head -5)"
	# a TOC is parsed once: the probe saves the model in the cache dir,
	# the fs daemon loads it
	if [ "$fmt" != zran ]; then
		for d in $(layers "$tag"); do
			[ -s "$W/blobcache/models/sha256/${d#sha256:}.model" ] ||
				fail "$tag: no model saved for $d"
			grep -q "layer $d: its saved model" "$W"/snap/daemons/*.log ||
				fail "$tag: the fs daemon did not load the saved model of $d: $(grep -h "layer $d" "$W"/snap/daemons/*.log | head -3)"
		done
		log "$tag: the fs daemon loaded the models the probes saved"
	fi
	# what the registry sent of each layer until a container ran: a plain
	# gzip layer is read once whole (ranges) to build its zran index
	for d in $(layers "$tag"); do
		local size got
		size=$(curl -fsI "http://$REG/v2/lp/bb/blobs/$d" |
			tr -d '\r' | awk 'tolower($1) == "content-length:" { print $2 }')
		got=$(tail -n +"$((regmark + 1))" "$W/registry.log" |
			awk -v p="GET /v2/lp/bb/blobs/$d " 'index($0, p) && $9 == 206 { n++; b += $10 }
				END { printf "%d %d", n, b }')
		log "$tag: layer $d: ${got% *} ranged GETs, ${got#* } of $size bytes"
		if [ "$fmt" = zran ] && [ "${got#* }" -gt $((2 * size)) ]; then
			fail "$tag: $d was read more than twice to index it"
		fi
	done
	out=$(ctr_ run --rm --snapshotter nydus "$ref" "r-$tag-1" echo hi </dev/null 2>&1) || true
	[ "$out" = hi ] || fail "$tag: ctr run echo hi printed: $out"
	log "$tag: ctr run … echo hi: $out"
	out=$(ctr_ run --rm --snapshotter nydus "$ref" "r-$tag-2" cat /hello.txt </dev/null 2>&1) || true
	[ "$out" = "hello from layer 2" ] || fail "$tag: upper layer file: $out"
	out=$(ctr_ run --rm --snapshotter nydus "$ref" "r-$tag-3" ls /etc </dev/null 2>&1) || true
	[ "$out" = passwd ] || fail "$tag: whiteout of /etc/group not applied: $out"
	out=$(ctr_ run --rm --snapshotter nydus "$ref" "r-$tag-4" sh -c \
		'busybox md5sum /bin/busybox; grep " / " /proc/mounts' </dev/null 2>&1) || true
	echo "$out" | sed 's/^/  container: /'
	echo "$out" | grep -q "^$(md5sum </bin/busybox | cut -d' ' -f1)  /bin/busybox" ||
		fail "$tag: /bin/busybox differs"
	echo "$out" | grep -q "lowerdir=$W/snap/mnt/" ||
		fail "$tag: container root is not over our fs daemons: $out"
	# one fs daemon per image: its remote layers merged are the one
	# lowerdir (lazypull-snapshotter --merged-mounts, the default)
	echo "$out" | grep -q "lowerdir=$W/snap/mnt/[0-9]*," ||
		fail "$tag: the lowerdir is not one merged mount: $out"
	n=$(mounts_of | wc -l)
	[ "$n" -ge 1 ] || fail "$tag: $n fuse.lazypull mounts: $(mounts_of)"
	# the pull's first Prepare started the image's fs daemon (it opened
	# the image during the pull); the first container's mount took it
	grep -q "of $ref: started ahead (pid" "$W/snapshotter.log" ||
		fail "$tag: no fs daemon was started ahead of the pull's end"
	grep -q "of $ref: the one started ahead (pid [0-9]*) mounts it" \
		"$W/snapshotter.log" ||
		fail "$tag: the fs daemon started ahead was not the one used"
}

check_image esgz estargz
check_image zstd zstd:chunked
check_image 1 zran

# ---- zran: the index is built once (one pass over the layer, as ranged
# reads), kept under the root, and loaded by a restarted daemon ---------

daemon_of() { # layer digest -> pid file of the daemon serving it
	# (alone, --layer-digest, or as the top of a merged mount,
	# --up-to-layer-digest)
	local f
	for f in "$W"/snap/daemons/*.pid; do
		tr '\0' ' ' <"/proc/$(cat "$f")/cmdline" 2>/dev/null |
			grep -q -- "-layer-digest $1 " && { echo "$f"; return; }
	done
	return 0
}
wait_restarted() { # pidfile oldpid -> new pid (empty on timeout)
	local p
	for _ in $(seq 150); do
		p=$(cat "$1" 2>/dev/null || true)
		if [ -n "$p" ] && [ "$p" != "$2" ] && kill -0 "$p" 2>/dev/null &&
			grep -q "fs daemon $p serves" "$W/snapshotter.log"; then
			echo "$p"
			return
		fi
		sleep 0.1
	done
}
for d in $(layers 1); do
	idx=$W/snap/indexes/sha256/${d#sha256:}.zran
	if [ ! -s "$idx" ]; then
		fail "zran: no index of $d kept under the root: $(ls -R "$W/snap/indexes" 2>&1 | head)"
		continue
	fi
	st0=$(stat -c '%i %Y' "$idx")
	pf=$(daemon_of "$d")
	# a lower layer of the image is served by the merged daemon of its top
	[ -n "$pf" ] || pf=$(daemon_of "$(layers 1 | tail -1)")
	[ -n "$pf" ] || { fail "zran: no daemon serves $d"; continue; }
	old=$(cat "$pf")
	kill -KILL "$old"
	new=$(wait_restarted "$pf" "$old")
	[ -n "$new" ] || fail "zran: daemon of $d not restarted"
	[ "$(stat -c '%i %Y' "$idx")" = "$st0" ] ||
		fail "zran: the restarted daemon of $d rebuilt its index"
	grep -q "indexing the layer again" "${pf%.pid}.log" &&
		fail "zran: saved index of $d rejected: $(grep 'saved zran' "${pf%.pid}.log")"
	log "zran: $d indexed once ($(stat -c %s "$idx") bytes of index), daemon $old killed, $new loads the saved index"
done
out=$(ctr_ run --rm --snapshotter nydus "$REG/lp/bb:1" r-zran-again cat /hello.txt </dev/null 2>&1) || true
[ "$out" = "hello from layer 2" ] || fail "zran: run after the daemon restarts: $out"

# ---- a nydus image assembled from the RAFS vectors ------------------

RAFS=$SRCDIR/testdata/reference/rafs
BOOT=sha256-nocompress-repeatable
BLOBHEX=7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00
python3 "$HERE/mknydus.py" /bin/busybox "$RAFS" "$BOOT" "$BLOBHEX" \
	"$W/oci-nydus" nydus >"$W/nydus-layers"
skopeo copy --quiet --dest-tls-verify=false "oci:$W/oci-nydus:nydus" \
	"docker://$REG/lp/bb:nydus"
# what the files hold, read from the vectors by the CLI (no registry,
# no FUSE): "sha256  path" of every regular file and hard link
"$LAZYPULL" ls --json --digest --blob-dir "$RAFS/blobs" "$RAFS/$BOOT" |
	python3 -c '
import json, sys
e = [json.loads(l) for l in sys.stdin]
dg = {x["path"]: x["sha256"] for x in e if x["type"] == "reg"}
for x in sorted(e, key=lambda x: x["path"]):
    if x["type"] == "reg":
        print(dg[x["path"]] + "  " + x["path"])
    elif x["type"] == "hardlink":
        print(dg[x["link"]] + "  " + x["path"])' >"$W/nydus-want"
nydus_blob=$(sed -n 1p "$W/nydus-layers")
nydus_boot=$(sed -n 2p "$W/nydus-layers")
regmark=$(wc -l <"$W/registry.log")
NYDUS=$REG/lp/bb:nydus
ctr-remote -a "$R/ctrd.sock" -n "$NS" image rpull --plain-http \
	--snapshotter nydus "$NYDUS" >"$W/rpull-nydus.log" 2>&1 ||
	fail "rpull nydus: $(tail -3 "$W/rpull-nydus.log")"
grep -q "layer $nydus_blob of $NYDUS: remote (nydus-blob), committed" \
	"$W/snapshotter.log" || fail "nydus: the data blob layer was not committed as remote"
grep "of $NYDUS: remote" "$W/snapshotter.log" | grep -v "$nydus_blob" &&
	fail "nydus: a layer other than the data blob was committed as remote"
content=$(ctr_ content ls -q)
grep -qx "$nydus_blob" <<<"$content" &&
	fail "nydus: containerd's content store holds the data blob"
grep -qx "$nydus_boot" <<<"$content" ||
	fail "nydus: containerd did not fetch the bootstrap layer (it unpacks it)"
paths=$(awk '{print $2}' "$W/nydus-want" | tr '\n' ' ')
out=$(ctr_ run --rm --snapshotter nydus "$NYDUS" r-nydus-1 \
	/bin/busybox sh -c "cd / && busybox sha256sum $paths; grep ' / ' /proc/mounts" \
	</dev/null 2>&1) || true
echo "$out" | grep -v '^[0-9a-f]\{64\}  /' | sed 's/^/  container: /'
[ "$(echo "$out" | grep '^[0-9a-f]\{64\}  /')" = "$(cat "$W/nydus-want")" ] ||
	fail "nydus: the files read in the container differ from the vectors: $(echo "$out" | head -5)"
ls "$W"/snap/snapshots/*/fs/image/image.boot >/dev/null 2>&1 ||
	fail "nydus: no unpacked bootstrap snapshot"
n=$(($(wc -l <"$W/nydus-want")))
log "nydus: bootstrap layer unpacked by containerd, data blob remote; a container read the $n files of the RAFS tree right"
if tail -n +"$((regmark + 1))" "$W/registry.log" |
	grep "GET /v2/lp/bb/blobs/$nydus_blob" | grep -v '" 206 ' | grep -c . >/dev/null; then
	fail "nydus: the registry served all of the data blob"
fi
n=$(tail -n +"$((regmark + 1))" "$W/registry.log" | grep -c "GET /v2/lp/bb/blobs/$nydus_blob" || true)
[ "$n" -gt 0 ] || fail "nydus: the data blob was never read from the registry"
log "nydus: data blob: $n GETs, all ranged"
log "fs daemons: $(mounts_of | wc -l) mounts, pids $(daemon_pids | tr '\n' ' ')"
for p in $(daemon_pids); do
	tr '\0' ' ' <"/proc/$p/cmdline" | grep -q -- "--cache-dir $W/blobcache .*--cache-max $CACHE_MAX " ||
		fail "fs daemon $p lacks the cache settings: $(tr '\0' ' ' <"/proc/$p/cmdline")"
done

# ---- SIGKILL + restart of the snapshotter while a container runs -------

ESGZ=$REG/lp/bb:esgz
ctr_ run -d --snapshotter nydus "$ESGZ" sleeper sleep 600 </dev/null >/dev/null
sleep 0.5
before_mounts=$(mounts_of)
before_pids=$(daemon_pids | sort)
restart_snapshotter KILL --enable-stargz --enable-zran
log "snapshotter killed (SIGKILL) and started again"
[ "$(mounts_of)" = "$before_mounts" ] || fail "mounts changed across restart"
[ "$(daemon_pids | sort)" = "$before_pids" ] ||
	fail "fs daemons changed across restart: $before_pids / $(daemon_pids)"
grep -q "fs daemon of snapshot .* serves" "$W/snapshotter.log" ||
	fail "no re-attach logged"
ctr_ task ls | grep -E '^sleeper +[0-9]+ +RUNNING' >/dev/null ||
	fail "container stopped across the snapshotter restart"
out=$(ctr_ task exec --exec-id e1 sleeper sh -c \
	'cat /hello.txt; busybox md5sum /bin/busybox; ls /etc' </dev/null 2>&1) || true
want="hello from layer 2
$(md5sum </bin/busybox | cut -d' ' -f1)  /bin/busybox
passwd"
[ "$out" = "$want" ] || fail "exec in the running container after restart: $out"
out=$(ctr_ run --rm --snapshotter nydus "$ESGZ" r-after echo hi </dev/null 2>&1) || true
[ "$out" = hi ] || fail "ctr run after restart: $out"
log "restart: daemons re-attached, running container reads its files, new run: $out"

# ---- a crashed fs daemon is restarted ----------------------------------

# the daemon under the running container "sleeper": a new daemon takes
# its FUSE connection over (the snapshotter kept a copy of the /dev/fuse
# descriptor), so the container keeps reading its files
ld=$(ctr_ task exec --exec-id e-ld sleeper sh -c 'grep " / " /proc/mounts' \
	</dev/null 2>&1 | sed -n 's/.*lowerdir=\([^,:]*\).*/\1/p')
vfile=$W/snap/daemons/${ld##*/}.pid
victim=$(cat "$vfile" 2>/dev/null || true)
[ -n "$victim" ] || { fail "no daemon under the running container ($ld)"; victim=$(daemon_pids | head -1); vfile=$(grep -lx "$victim" "$W"/snap/daemons/*.pid); }
kill -KILL "$victim"
log "killed fs daemon $victim ($vfile)"
for _ in $(seq 100); do
	p=$(cat "$vfile" 2>/dev/null || true)
	[ -n "$p" ] && [ "$p" != "$victim" ] && kill -0 "$p" 2>/dev/null && break
	sleep 0.1
done
p=$(cat "$vfile" 2>/dev/null || true)
{ [ -n "$p" ] && [ "$p" != "$victim" ]; } || fail "fs daemon not restarted"
grep -q "is gone: restarting it" "$W/snapshotter.log" || fail "no restart logged"
grep -q "took the mount over" "$W/snapshotter.log" ||
	fail "the restarted daemon did not take the mount over"
out=$(ctr_ task exec --exec-id e-crash sleeper sh -c \
	'cat /hello.txt; busybox md5sum /bin/busybox; ls /etc' </dev/null 2>&1) || true
[ "$out" = "$want" ] ||
	fail "the running container across the fs daemon's crash: $out"
log "daemon crash: the running container still reads its files"
out=$(ctr_ run --rm --snapshotter nydus "$ESGZ" r-crash cat /hello.txt </dev/null 2>&1) || true
[ "$out" = "hello from layer 2" ] || fail "ctr run after a daemon crash: $out"
log "daemon crash: restarted as $p; new run: $out"

# ---- remove: snapshots, mounts, daemons go ----------------------------

kill_containers
# a layer no snapshot uses leaves the cache: its fetched ranges, decoded
# chunks, saved model and zran index; the other images' stay
cache_files() { # layer digests -> the cache files of those layers
	local d h
	for d in "$@"; do
		h=${d#sha256:}
		ls -d "$W/blobcache/blobs/sha256/$h".* "$W/blobcache/decoded/$h".* \
			"$W/blobcache/models/sha256/$h".* \
			"$W/snap/indexes/sha256/$h".* 2>/dev/null || true
	done
}
esgz_layers=$(layers esgz)
other_layers="$(layers zstd) $(layers 1)"
# shellcheck disable=SC2086
[ -n "$(cache_files $esgz_layers)" ] || fail "no cache files of bb:esgz before its rm"
# shellcheck disable=SC2086
n_other=$(cache_files $other_layers | wc -l)
ctr_ images rm --sync "$ESGZ" >/dev/null
for _ in $(seq 50); do
	# shellcheck disable=SC2086
	[ -z "$(cache_files $esgz_layers)" ] && break
	sleep 0.1
done
# shellcheck disable=SC2086
left=$(cache_files $esgz_layers)
[ -z "$left" ] || fail "image rm of bb:esgz left its layers' cache files: $left"
# shellcheck disable=SC2086
[ "$(cache_files $other_layers | wc -l)" = "$n_other" ] ||
	fail "image rm of bb:esgz removed cache files of other images: $n_other before, now $(cache_files $other_layers | wc -l)"
grep -q "no snapshot uses it: [0-9]* cache files removed" "$W/snapshotter.log" ||
	fail "the snapshotter did not log the cache files it removed"
log "image rm bb:esgz: its layers' cache files gone, the $n_other of bb:zstd and bb:1 kept"
for i in $(ctr_ images ls -q); do ctr_ images rm --sync "$i" >/dev/null; done
for _ in $(seq 150); do
	[ -z "$(ls "$W/snap/snapshots")" ] && break
	sleep 0.1
done
# shellcheck disable=SC2086
left=$(cache_files $other_layers)
[ -z "$left" ] || fail "image rm left cache files: $left"
left=$(ls "$W/snap/snapshots")
[ -z "$left" ] || fail "GC left backend snapshots: $left; ls: $(csnap ls)"
[ -z "$(mounts_of)" ] || fail "fuse mounts left after image rm: $(mounts_of)"
[ -z "$(daemon_pids)" ] || fail "daemon pid files left: $(ls "$W/snap/daemons")"
log "image rm: backend empty, no mounts, no daemons"

# ---- --merged-mounts=false: a mount (and daemon) per remote layer ------

# a merged daemon left running by the default mode is not reused by a
# snapshotter that wants a mount per layer (it would serve the wrong tree)
ctr-remote -a "$R/ctrd.sock" -n "$NS" image rpull --plain-http \
	--snapshotter nydus "$ESGZ" >"$W/rpull-perlayer.log" 2>&1 ||
	fail "rpull, a mount per layer: $(tail -3 "$W/rpull-perlayer.log")"
# this image ran before: its daemon left an access trace, and the probes
# of this pull warmed the blob cache with the files it names
for _ in $(seq 50); do
	grep -qE "warmed: .*\([1-9][0-9]* for files of the [1-9][0-9]* in the access trace\)" \
		"$W/snap/daemons/probes.log" 2>/dev/null && break
	sleep 0.1
done
grep -qE "warmed: .*\([1-9][0-9]* for files of the [1-9][0-9]* in the access trace\)" \
	"$W/snap/daemons/probes.log" ||
	fail "second pull: no probe warmed files of the access trace: $(tail -4 "$W/snap/daemons/probes.log" 2>&1)"
n_warm=$(grep -c 'warmed: ' "$W/snap/daemons/probes.log")
n_traced=$(grep -cE '\([1-9][0-9]* for files of the' "$W/snap/daemons/probes.log")
log "second pull: $n_warm probe(s) warmed the cache, $n_traced with files of the access trace"
ctr_ run -d --snapshotter nydus "$ESGZ" sleeper-merged sleep 600 </dev/null >/dev/null
restart_snapshotter KILL --enable-stargz --merged-mounts=false
grep -q "serves merged layers, this snapshotter wants one layer: restarting it" \
	"$W/snapshotter.log" || fail "a merged daemon was reused by the per-layer mode"
kill_containers
out=$(ctr_ run --rm --snapshotter nydus "$ESGZ" r-perlayer sh -c \
	'cat /hello.txt; ls /etc; grep " / " /proc/mounts' </dev/null 2>&1) || true
echo "$out" | grep -q "^hello from layer 2$" ||
	fail "a mount per layer: upper layer file: $out"
echo "$out" | grep -qx "passwd" ||
	fail "a mount per layer: whiteout of /etc/group not applied: $out"
echo "$out" | grep -q "lowerdir=$W/snap/mnt/[0-9]*:$W/snap/mnt/[0-9]*," ||
	fail "a mount per layer: the lowerdir is not two layer mounts: $out"
[ "$(daemon_pids | wc -l)" = 2 ] ||
	fail "a mount per layer: $(daemon_pids | wc -l) fs daemons, want 2"
log "--merged-mounts=false: two layer mounts as lowerdirs, run: $(echo "$out" | head -1)"
kill_containers
for i in $(ctr_ images ls -q); do ctr_ images rm --sync "$i" >/dev/null; done
for _ in $(seq 150); do
	[ -z "$(daemon_pids)" ] && break
	sleep 0.1
done

# ---- stargz off: the eStargz image is an ordinary one ------------------

restart_snapshotter TERM
ctr-remote -a "$R/ctrd.sock" -n "$NS" image rpull --plain-http \
	--snapshotter nydus "$ESGZ" >"$W/rpull-off.log" 2>&1 ||
	fail "rpull with stargz off: $(tail -3 "$W/rpull-off.log")"
out=$(ctr_ run --rm --snapshotter nydus "$ESGZ" r-off cat /hello.txt </dev/null 2>&1) || true
[ "$out" = "hello from layer 2" ] || fail "run with stargz off: $out"
[ -z "$(mounts_of)" ] || fail "stargz off, yet fuse mounts: $(mounts_of)"
log "stargz off: eStargz image unpacked by containerd, run: $out"
kill_containers
for i in $(ctr_ images ls -q); do ctr_ images rm --sync "$i" >/dev/null; done

# ---- clean stop ------------------------------------------------------

stop_pid "$SNAP_PID" TERM
wait "$SNAP_PID" && rc=0 || rc=$?
SNAP_PID=
[ $rc = 0 ] || fail "snapshotter exit status $rc after SIGTERM"
if grep -E "ERROR: (Address|Leak)Sanitizer|runtime error" "$W/snapshotter.log"; then
	fail "sanitizer report in the snapshotter log"
fi

if [ $fails != 0 ]; then
	log "$fails failure(s); logs in $W"
	exit 1
fi
log "all remote-layer checks passed"
