#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# The containerd-nydus-grpc surface of lazypull-snapshotter: flags,
# config.toml, nydusd JSON, and the nydus documentation command lines,
# which must start and serve as they are (paths adjusted), also with
# --enable-stargz appended.  Those run in a private mount namespace where
# /var/lib and /run are empty directories of this test, so the defaults
# (/var/lib/containerd-nydus, /run/containerd-nydus/…) are really used.
#
# env: SNAPSHOTTER (binary), SRCDIR, WORKDIR.  Exit 77 without Go (the
# grpc-go client checks serving).  The doc command lines need root.
set -euo pipefail

SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
HERE=$SRCDIR/tests/snapshotter
SNAP=${SNAPSHOTTER:?set SNAPSHOTTER to the lazypull-snapshotter binary}
W=${WORKDIR:-/tmp/lp-snap-cli}
rm -rf "$W"
mkdir -p "$W/bin" "$W/etc"
ln -s "$SNAP" "$W/bin/containerd-nydus-grpc"
export PATH=$W/bin:$PATH

fails=0
PIDS=()
log() { printf '%s %s\n' "$(date +%T)" "$*"; }
fail() {
	log "FAIL: $*"
	fails=$((fails + 1))
}
cleanup() {
	set +e
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null
	done
	[ "$fails" = 0 ] && rm -rf "$W/ns"
}
trap cleanup EXIT

rc=0
"$HERE/run-go.sh" build "$W/go" "$W/snapctl" >"$W/go-build.log" 2>&1 || rc=$?
if [ $rc = 77 ]; then
	echo "SKIP: needs Go and Debian's containerd Go sources"
	exit 77
fi
[ $rc = 0 ] || { cat "$W/go-build.log"; exit 1; }
SNAPCTL=$W/snapctl

cat >"$W/roundtrip.json" <<'EOF'
[
 {"method": "Prepare", "key": "a", "labels": {"k": "v"}},
 {"method": "Commit", "key": "a", "name": "b"},
 {"method": "Stat", "key": "b"},
 {"method": "Remove", "key": "b"}
]
EOF

# serves ADDR ROOT: a Prepare/Commit/Stat/Remove round trip over grpc-go
serves() {
	"$SNAPCTL" wait "$1" 20 || return 1
	local out
	out=$("$SNAPCTL" transcript "$1" "$2" "$W/roundtrip.json") || return 1
	[ "$(echo "$out" | grep -c '"code": 0')" = 4 ] || {
		echo "$out"
		return 1
	}
}

# expect_fail WANT-IN-STDERR ARGS…: exits non-zero with that message
expect_fail() {
	local want=$1 rc=0
	shift
	containerd-nydus-grpc "$@" >"$W/out" 2>&1 </dev/null || rc=$?
	if [ $rc = 0 ]; then
		fail "'$*' exited 0"
	elif ! grep -q -- "$want" "$W/out"; then
		fail "'$*': message lacks '$want': $(cat "$W/out")"
	else
		log "rejected as expected: $* -> $(head -1 "$W/out")"
	fi
}

# start NAME ARGS…: runs the snapshotter in the background, logs to NAME.log
start() {
	local name=$1
	shift
	"$@" >"$W/$name.log" 2>&1 </dev/null &
	PIDS+=($!)
	LAST=$!
}
stop_last() { # [signal]
	kill -"${1:-TERM}" "$LAST"
	local rc=0
	wait "$LAST" || rc=$?
	[ $rc = 0 ] || fail "exit status $rc after SIG${1:-TERM}"
}

# ---- flags -------------------------------------------------------------

out=$(containerd-nydus-grpc --version)
case $out in "containerd-nydus-grpc version "*) log "--version: $out" ;;
*) fail "--version: $out" ;; esac
out=$(containerd-nydus-grpc -v)
case $out in *" version "*) ;; *) fail "-v: $out" ;; esac
containerd-nydus-grpc --help | grep -q -- "--enable-stargz" || fail "--help"

expect_fail 'fs driver "fscache" is not supported' --fs-driver fscache --root "$W/x"
expect_fail 'fs driver "blockdev" is not supported' --fs-driver=blockdev --root "$W/x"
expect_fail 'invalid fs driver "weird"' --fs-driver weird --root "$W/x"
expect_fail 'daemon mode "none" is not supported' --daemon-mode none --root "$W/x"
expect_fail 'invalid daemon mode "sometimes"' --daemon-mode sometimes --root "$W/x"
expect_fail 'flag provided but not defined: --no-such-flag' --no-such-flag
expect_fail 'invalid log level "loud"' --log-level loud
expect_fail 'invalid value "maybe" for flag --enable-stargz' --enable-stargz=maybe
expect_fail 'flag needs an argument' --root
expect_fail 'No such file' --nydusd-config "$W/etc/missing.json" --root "$W/x"
printf '{\n  "device": {\n    "backend": {\n      "type": "registry",,\n' >"$W/etc/bad.json"
expect_fail 'bad.json: line 4' --nydusd-config "$W/etc/bad.json" --root "$W/x"
printf '{"device": {"backend": {"type": "registry", "config": {"timeout": "5"}}}}\n' >"$W/etc/badtype.json"
expect_fail 'device.backend.config.timeout: expected an integer' --nydusd-config "$W/etc/badtype.json" --root "$W/x"

# every accepted mode and driver starts and serves; ignored flags are logged
for args in "--daemon-mode dedicated" "--daemon-mode shared" \
	"--daemon-mode multiple --fs-driver fusedev" \
	"-daemon-mode=shared -fs-driver=fusedev" \
	"--nydusd /usr/bin/nydusd --nydus-image /usr/bin/nydus-image"; do
	d=$W/m$RANDOM
	# shellcheck disable=SC2086
	start mode containerd-nydus-grpc --root "$d" --address "$d/s.sock" \
		--log-to-stdout $args
	serves "$d/s.sock" "$d" || fail "'$args' does not serve"
	stop_last
done
grep -q 'flag --nydus-image /usr/bin/nydus-image is ignored' "$W/mode.log" ||
	fail "ignored flag not logged: $(cat "$W/mode.log")"
log "modes, drivers and ignored flags: ok"

# the socket is private to root; no log on stdout without --log-to-stdout
d=$W/perm
start perm containerd-nydus-grpc --root "$d" --address "$d/run/s.sock"
serves "$d/run/s.sock" "$d" || fail "default logging: does not serve"
mode=$(stat -c %a "$d/run/s.sock")
[ $((8#$mode & 8#077)) = 0 ] || fail "socket mode $mode is open to others"
dmode=$(stat -c %a "$d/run")
[ $((8#$dmode & 8#077)) = 0 ] || fail "socket dir mode $dmode"
stop_last INT
[ ! -e "$d/run/s.sock" ] || fail "socket left after SIGINT"
[ ! -s "$W/perm.log" ] || fail "logged to stdout without --log-to-stdout: $(cat "$W/perm.log")"
grep -q "serving containerd.services.snapshots.v1.Snapshots" \
	"$d/logs/lazypull-snapshotter.log" || fail "no log file under <root>/logs"
log "socket mode $mode (dir $dmode), log file in <root>/logs: ok"

# ---- config.toml -----------------------------------------------------------

d=$W/toml
cat >"$W/etc/nydusd-config.json" <<'EOF'
{
  "device": {
    "backend": {
      "type": "registry",
      "config": {
        "scheme": "http",
        "skip_verify": true,
        "timeout": 5,
        "connect_timeout": 5,
        "retry_limit": 2,
        "auth": "dXNlcjpzZWNyZXQtcGFzc3dvcmQ="
      }
    },
    "cache": {
      "type": "blobcache",
      "config": { "work_dir": "/var/lib/nydus/cache" }
    }
  },
  "mode": "direct",
  "digest_validate": false,
  "iostats_files": false,
  "enable_xattr": true,
  "amplify_io": 1048576,
  "fs_prefetch": {
    "enable": true,
    "threads_count": 8,
    "merging_size": 1048576,
    "prefetch_all": true
  }
}
EOF
cp "$W/etc/nydusd-config.json" "$W/etc/nydusd-config.fusedev.json"
cat >"$W/etc/config.toml" <<EOF
version = 1
root = "$d/from-toml"
address = "$d/toml.sock"
daemon_mode = "dedicated"
cleanup_on_close = false

[system]
enable = true
address = "/run/containerd-nydus/system.sock"

[daemon]
nydusd_config = "$W/etc/nydusd-config.json"
nydusd_path = "/usr/local/bin/nydusd"
nydusimage_path = "/usr/local/bin/nydus-image"
fs_driver = "fusedev"
recover_policy = "restart"
threads_number = 4

[log]
log_to_stdout = true
level = "debug"

[remote.mirrors_config]
dir = "/etc/nydus/certs.d"

[experimental]
enable_stargz = true
enable_referrer_detect = false
EOF
start toml containerd-nydus-grpc --config "$W/etc/config.toml"
serves "$d/toml.sock" "$d/from-toml" || fail "config.toml root/address not used"
stop_last
grep -q 'stargz=on' "$W/toml.log" || fail "[experimental] enable_stargz not applied"
grep -q 'level=debug' "$W/toml.log" || fail "[log] level not applied"
grep -q 'backend registry' "$W/toml.log" || fail "[daemon] nydusd_config not read"
grep -q 'daemon.nydusd_path = "/usr/local/bin/nydusd" is ignored' "$W/toml.log" ||
	fail "ignored config key not logged"
grep -q 'c2VjcmV0\|secret-password\|dXNlcjpz' "$W/toml.log" "$d"/from-toml/logs/* 2>/dev/null &&
	fail "registry auth written to a log"
[ -d "$d/from-toml/snapshots" ] || fail "root from config.toml not created"
log "config.toml: root, address, log, stargz, nydusd config: ok"

# flags win over the file
start toml2 containerd-nydus-grpc --config "$W/etc/config.toml" \
	--address "$d/flag.sock" --enable-stargz=false --log-level info
serves "$d/flag.sock" "$d/from-toml" || fail "--address did not override the config"
stop_last
grep -q 'stargz=off' "$W/toml2.log" || fail "--enable-stargz=false did not override"
grep -q 'level=debug' "$W/toml2.log" && fail "--log-level did not override"
log "flags override config.toml: ok"

printf 'version = 1\n[daemon]\nfs_driver = "fscache"\n' >"$W/etc/fscache.toml"
expect_fail 'fs driver "fscache" is not supported' --config "$W/etc/fscache.toml" --root "$W/x"
printf 'version = 1\n[log]\nlevel = 3\n' >"$W/etc/type.toml"
expect_fail "line 3: key 'log.level': expected a string, got an integer" --config "$W/etc/type.toml"
printf 'version = 1\nroot = "/x"\n[daemon\n' >"$W/etc/syntax.toml"
expect_fail 'syntax.toml: line 3, column 8' --config "$W/etc/syntax.toml"
printf 'version = 2\n' >"$W/etc/v2.toml"
expect_fail 'unsupported config version 2' --config "$W/etc/v2.toml"

# ---- the nydus documentation command lines -----------------------------

if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null; then
	log "SKIP part: the doc command lines need root and unshare"
	[ $fails = 0 ] || exit 1
	exit 0
fi
# in a private mount namespace, /var/lib and /run are this test's own
# directories: the defaults are used for real, and nothing of the host's
innerns() { # dir command…
	local t=$1
	shift
	mkdir -p "$t/varlib" "$t/run"
	exec unshare -m --propagation private sh -c \
		'mount --bind "$1/varlib" /var/lib && mount --bind "$1/run" /run &&
		 shift && exec "$@"' sh "$t" "$@"
}
n=0
for stargz in "" "--enable-stargz"; do
	# shellcheck disable=SC2086
	for line in \
		"containerd-nydus-grpc --config-path $W/etc/nydusd-config.json --address /run/containerd-nydus/containerd-nydus-grpc.sock --nydusd-path /usr/local/bin/nydusd --nydusimg-path /usr/local/bin/nydus-image --log-to-stdout $stargz" \
		"containerd-nydus-grpc --nydusd-config $W/etc/nydusd-config.fusedev.json --log-to-stdout $stargz"; do
		n=$((n + 1))
		t=$W/ns/$n
		# shellcheck disable=SC2086
		start doc$n innerns "$t" $line
		if serves "$t/run/containerd-nydus/containerd-nydus-grpc.sock" \
			/var/lib/containerd-nydus; then
			log "serves: $line"
		else
			fail "does not serve: $line ($(tail -3 "$W/doc$n.log"))"
		fi
		[ -d "$t/varlib/containerd-nydus/snapshots" ] ||
			fail "default root /var/lib/containerd-nydus not used"
		want=off
		[ -n "$stargz" ] && want=on
		grep -q "stargz=$want" "$W/doc$n.log" || fail "stargz not $want: $line"
		grep -q "is ignored" "$W/doc$n.log" || [ $((n % 2)) = 0 ] ||
			fail "ignored nydusd flags not logged"
		stop_last
		[ ! -e "$t/run/containerd-nydus/containerd-nydus-grpc.sock" ] ||
			fail "socket left after SIGTERM"
	done
done
[ $fails = 0 ] || { log "$fails failure(s); logs in $W"; exit 1; }
log "all CLI checks passed"
