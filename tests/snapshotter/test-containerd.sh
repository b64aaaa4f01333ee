#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# lazypull-snapshotter driven by a real containerd 1.6 (started here, with
# its own root, state, socket and namespace, CRI disabled) through
# [proxy_plugins.nydus], and a private docker-registry on loopback:
#   - ctr snapshot prepare/view/mounts/commit/ls/info/usage/label/rm, and
#     the error cases, through containerd;
#   - the error matrix through containerd's API from grpc-go (TestViaContainerd);
#   - ctr image pull and ctr images import onto the snapshotter, ctr run;
#   - SIGKILL + restart of the snapshotter keeps every snapshot, label and
#     mount, and a running container keeps running;
#   - containerd's GC removes what it no longer references.
# Every daemon is stopped by PID and everything is unmounted in the trap.
# Exit 77 (SKIP) when root or a tool is missing.
#
# env: SNAPSHOTTER (binary), SRCDIR, WORKDIR
set -euo pipefail

SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
HERE=$SRCDIR/tests/snapshotter
# shellcheck source=lib.sh
. "$HERE/lib.sh"
SNAP=${SNAPSHOTTER:?set SNAPSHOTTER to the lazypull-snapshotter binary}
W=${WORKDIR:-/tmp/lp-snap-containerd}

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root"
for t in containerd ctr runc docker-registry skopeo python3 go curl; do
	command -v $t >/dev/null || skip "$t is not installed"
done
[ -x /bin/busybox ] || skip "busybox-static is not installed"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
	skip "no overlayfs"

rm -rf "$W"
mkdir -p "$W"
R=$(mktemp -d /run/lp-snap.XXXXXX) # short socket paths
NS=lp-snap-$$
SNAP_PID= CTRD_PID= REG_PID=
fails=0

ctr_() { ctr -a "$R/ctrd.sock" -n "$NS" "$@"; }
csnap() { ctr_ snapshot --snapshotter nydus "$@"; }

cleanup() {
	set +e
	if [ -n "$CTRD_PID" ] && kill -0 "$CTRD_PID" 2>/dev/null; then
		for c in $(ctr_ containers ls -q 2>/dev/null); do
			ctr_ task kill -s KILL "$c" >/dev/null 2>&1
			sleep 0.2
			ctr_ task rm -f "$c" >/dev/null 2>&1
			ctr_ containers rm "$c" >/dev/null 2>&1
		done
	fi
	stop_pid "$SNAP_PID"
	stop_pid "$CTRD_PID"
	stop_pid "$REG_PID"
	unmount_ours
	rm -rf "$R"
	if [ "$fails" = 0 ] && [ -z "${KEEP:-}" ]; then
		rm -rf "$W/ctrd" "$W/snap" "$W/registry"
	fi
}
trap cleanup EXIT

start_snapshotter() {
	"$SNAP" --root "$W/snap" --address "$R/snap.sock" --log-level debug \
		--log-to-stdout >>"$W/snapshotter.log" 2>&1 &
	SNAP_PID=$!
	"$SNAPCTL" wait "$R/snap.sock" 20
	log "snapshotter up, pid $SNAP_PID"
}

# ---- parts ------------------------------------------------------------

log "building snapctl (grpc-go client)"
rc=0
"$HERE/run-go.sh" build "$W/go" "$W/snapctl" || rc=$?
[ $rc = 77 ] && skip "Go toolchain or Debian's containerd Go sources"
[ $rc = 0 ] || exit $rc
SNAPCTL=$W/snapctl

start_registry warn
log "registry on $REG, pid $REG_PID"

python3 "$HERE/mkimage.py" /bin/busybox "$W/oci" bb:1 >/dev/null
skopeo copy --quiet --dest-tls-verify=false "oci:$W/oci:bb:1" \
	"docker://$REG/lp/bb:1"
skopeo copy --quiet "oci:$W/oci:bb:1" "oci-archive:$W/bb.tar:lp/bbimport:1"
log "image pushed: $REG/lp/bb:1, archive $W/bb.tar"

start_snapshotter
start_containerd
log "containerd up, pid $CTRD_PID, namespace $NS"

# ---- ctr snapshot ------------------------------------------------------

ctr_ plugins ls | grep -E 'io.containerd.snapshotter.v1 +nydus .* ok' >/dev/null ||
	fail "nydus proxy plugin not ok"

# ctr 1.6 has no --label on prepare/commit: root them with `label`
keep() { csnap label "$1" containerd.io/gc.root=test >/dev/null; }
out=$(csnap prepare -t "$W/mnt" a1)
keep a1
echo "  prepare a1: $out"
case $out in "mount -t bind $W/snap/snapshots/"*" $W/mnt -o rw,rbind") ;;
*) fail "prepare a1: $out" ;; esac
out=$(csnap mounts "$W/mnt" a1)
echo "  mounts a1: $out"
case $out in "mount -t bind $W/snap/snapshots/"*" $W/mnt -o rw,rbind") ;;
*) fail "mounts a1: $out" ;; esac
mkdir -p "$W/mnt"
mount --bind "$(echo "$out" | awk '{print $4}')" "$W/mnt"
echo "layer one" >"$W/mnt/one.txt"
umount "$W/mnt"
csnap commit c1 a1
keep c1
out=$(csnap prepare -t "$W/mnt" a2 c1)
keep a2
echo "  prepare a2: $out"
case $out in "mount -t overlay overlay $W/mnt -o "*"lowerdir=$W/snap/snapshots/"*) ;;
*) fail "prepare a2 mounts: $out" ;; esac
out=$(csnap prepare --mounts a3 c1)
keep a3
echo "$out" | grep -q '"Type": "overlay"' || fail "prepare --mounts a3: $out"
out=$(csnap view -t "$W/mnt" v1 c1)
keep v1
echo "  view v1: $out"
case $out in "mount -t bind $W/snap/snapshots/"*" $W/mnt -o ro,rbind") ;;
*) fail "view v1 mounts: $out" ;; esac
out=$(csnap ls)
echo "$out" | sed 's/^/  ls: /'
for want in "c1 .*Committed" "a2 +c1 +Active" "v1 +c1 +View"; do
	echo "$out" | grep -Eq "^$want" || fail "ls lacks '$want'"
done
csnap label c1 hello=world >/dev/null
out=$(csnap info c1)
echo "$out" | grep -q '"hello": "world"' || fail "info c1 after label: $out"
echo "$out" | grep -q '"Kind": "Committed"' || fail "info c1 kind: $out"
out=$(csnap usage c1)
echo "$out" | sed 's/^/  usage: /'
echo "$out" | grep -Eq '^c1 +[0-9.]+ [KM]i?B +[0-9]+' || fail "usage c1: $out"
csnap usage >/dev/null || fail "usage of all"

# errors through containerd's metadata layer
csnap prepare x1 nosuchparent >/dev/null 2>"$W/err" &&
	fail "prepare on a missing parent worked"
grep -q "not found" "$W/err" || fail "missing parent: $(cat "$W/err")"
csnap prepare a2 c1 >/dev/null 2>"$W/err" && fail "prepare of an existing key worked"
grep -q "already exists" "$W/err" || fail "existing key: $(cat "$W/err")"
csnap commit c9 v1 2>"$W/err" && fail "commit of a view worked"
grep -q "failed precondition" "$W/err" || fail "commit view: $(cat "$W/err")"
csnap rm c1 2>"$W/err" && fail "rm with children worked"
grep -q "failed precondition" "$W/err" || fail "rm with children: $(cat "$W/err")"

csnap rm a2 a3 v1
csnap rm c1
# containerd's GC removes them from the backend (List, then Remove)
for _ in $(seq 100); do
	[ -z "$(ls "$W/snap/snapshots")" ] && break
	sleep 0.1
done
[ -z "$(ls "$W/snap/snapshots")" ] ||
	fail "backend still has $(ls "$W/snap/snapshots") after rm + GC"
grep -q "remove key=" "$W/snapshotter.log" || fail "no backend Remove logged"
log "ctr snapshot walk-through done"

# ---- the error matrix through containerd's API (grpc-go) --------------

CONTAINERD_ADDRESS=$R/ctrd.sock CONTAINERD_NAMESPACE=$NS SNAPSHOTTER=nydus \
	"$HERE/run-go.sh" test "$W/go" "$SNAP" -run TestViaContainerd -v \
	>"$W/go-viacontainerd.log" 2>&1 || fail "TestViaContainerd: $(tail -20 "$W/go-viacontainerd.log")"
grep -E '^\s+containerd_test.go' "$W/go-viacontainerd.log" | sed 's/^ */  /'

# ---- images --------------------------------------------------------------

ctr_ image pull --plain-http --snapshotter nydus "$REG/lp/bb:1" >"$W/pull.log" 2>&1 ||
	fail "pull: $(tail -5 "$W/pull.log")"
out=$(ctr_ run --snapshotter nydus --rm "$REG/lp/bb:1" run1 echo hi </dev/null 2>&1) || true
[ "$out" = hi ] || fail "ctr run echo hi printed: $out"
log "ctr run --snapshotter nydus … echo hi: $out"
out=$(ctr_ run --snapshotter nydus --rm "$REG/lp/bb:1" run2 cat /hello.txt </dev/null 2>&1) || true
[ "$out" = "hello from layer 2" ] || fail "layer 2 file: $out"
out=$(ctr_ run --snapshotter nydus --rm "$REG/lp/bb:1" run3 ls /etc </dev/null 2>&1) || true
[ "$out" = passwd ] || fail "whiteout of /etc/group not applied: $out"
out=$(ctr_ run --snapshotter nydus --rm "$REG/lp/bb:1" run4 sh -c \
	'echo w > /tmp/x && cat /tmp/x && cat /proc/mounts | grep " / "' </dev/null 2>&1) || true
echo "$out" | sed 's/^/  container: /'
echo "$out" | grep -q "^overlay / overlay .*lowerdir=$W/snap/snapshots/" ||
	fail "container root is not our overlay: $out"

ctr_ images import --snapshotter nydus --base-name lp/bbimport "$W/bb.tar" >"$W/import.log" 2>&1 ||
	fail "import: $(cat "$W/import.log")"
img=$(ctr_ images ls -q | grep bbimport | head -1)
[ -n "$img" ] || fail "imported image not listed: $(ctr_ images ls -q)"
out=$(ctr_ run --snapshotter nydus --rm "$img" run5 cat /hello.txt </dev/null 2>&1) || true
[ "$out" = "hello from layer 2" ] || fail "run of imported image: $out"
log "ctr images import + run: $out"

out=$(csnap ls)
echo "$out" | sed 's/^/  ls: /'
[ "$(echo "$out" | grep -c Committed)" -ge 2 ] || fail "image chain not in ls"
top=$(echo "$out" | awk '$3 == "Committed" && $2 != "" {print $1}' | head -1)
out=$(csnap info "$top")
echo "$out" | grep -q '"Kind": "Committed"' || fail "info $top: $out"
csnap usage "$top" >/dev/null || fail "usage $top"

# ---- SIGKILL + restart ----------------------------------------------

ctr_ run -d --snapshotter nydus "$REG/lp/bb:1" sleeper sleep 600 </dev/null >/dev/null
sleep 0.5
before_ls=$(csnap ls)
before_info=$(for k in $(csnap ls | awk 'NR > 1 {print $1}'); do csnap info "$k"; done)
before_mounts=$(csnap mounts /x sleeper)
kill -KILL "$SNAP_PID"
wait "$SNAP_PID" 2>/dev/null || true
log "snapshotter killed (SIGKILL)"
csnap ls >/dev/null 2>"$W/err" && fail "ls worked with the snapshotter down"
grep -qi "unavailable\|connection refused\|no such file" "$W/err" ||
	log "note: error while down: $(cat "$W/err")"
start_snapshotter
for _ in $(seq 50); do csnap ls >/dev/null 2>&1 && break; sleep 0.2; done
after_ls=$(csnap ls)
after_info=$(for k in $(csnap ls | awk 'NR > 1 {print $1}'); do csnap info "$k"; done)
after_mounts=$(csnap mounts /x sleeper)
[ "$before_ls" = "$after_ls" ] || fail "ls changed across restart:
$before_ls
---
$after_ls"
[ "$before_info" = "$after_info" ] || fail "info changed across restart"
[ "$before_mounts" = "$after_mounts" ] || fail "mounts changed across restart"
ctr_ task ls | grep -E '^sleeper +[0-9]+ +RUNNING' >/dev/null ||
	fail "container stopped across the snapshotter restart"
out=$(ctr_ task exec --exec-id e1 sleeper cat /hello.txt </dev/null 2>&1) || true
[ "$out" = "hello from layer 2" ] || fail "exec in running container: $out"
out=$(ctr_ run --snapshotter nydus --rm "$REG/lp/bb:1" run6 echo hi </dev/null 2>&1) || true
[ "$out" = hi ] || fail "ctr run after restart: $out"
log "restart kept $(echo "$after_ls" | tail -n +2 | wc -l) snapshots; container still running; run after restart: $out"
ctr_ task kill -s KILL sleeper >/dev/null 2>&1 || true
for _ in $(seq 50); do
	ctr_ task ls | grep -q '^sleeper .*RUNNING' || break
	sleep 0.1
done
ctr_ task rm -f sleeper >/dev/null 2>&1 || true
ctr_ containers rm sleeper >/dev/null 2>&1 || true

# ---- GC ------------------------------------------------------------------

for i in $(ctr_ images ls -q); do ctr_ images rm --sync "$i" >/dev/null; done
for _ in $(seq 150); do
	[ -z "$(ls "$W/snap/snapshots")" ] && break
	sleep 0.1
done
left=$(ls "$W/snap/snapshots")
[ -z "$left" ] || fail "GC left backend snapshots: $left; ls: $(csnap ls)"
[ "$(csnap ls | wc -l)" -le 1 ] || fail "containerd still lists snapshots"
log "GC: backend empty after image rm"

# ---- clean stop ------------------------------------------------------

stop_pid "$SNAP_PID" TERM
wait "$SNAP_PID" && rc=0 || rc=$?
SNAP_PID=
[ $rc = 0 ] || fail "snapshotter exit status $rc after SIGTERM"
[ ! -e "$R/snap.sock" ] || fail "socket left after SIGTERM"
if grep -E "ERROR: (Address|Leak)Sanitizer|runtime error" "$W/snapshotter.log"; then
	fail "sanitizer report in the snapshotter log"
fi

if [ $fails != 0 ]; then
	log "$fails failure(s); logs in $W"
	exit 1
fi
log "all containerd checks passed"
