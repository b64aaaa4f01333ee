# shellcheck shell=bash
# Shared by the scripts that run a real docker-registry, containerd and
# lazypull-snapshotter (tests/snapshotter/test-*.sh, tests/demo-e2e.sh,
# bench/snapshotter-stat.sh).
# The caller sets W (work dir) and R (short dir under /run for sockets)
# and keeps REG_PID / CTRD_PID for its cleanup.

log() { printf '%s %s\n' "$(date +%T)" "$*"; }
fail() {
	log "FAIL: $*"
	fails=$((fails + 1))
}

stop_pid() { # pid [signal]: then SIGKILL after 10 s
	local p=$1 sig=${2:-TERM}
	[ -n "$p" ] || return 0
	kill -"$sig" "$p" 2>/dev/null || return 0
	for _ in $(seq 100); do
		kill -0 "$p" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null || true
}

unmount_ours() { # whatever is mounted under W or R, deepest first
	awk -v w="$W" -v r="$R" '$5 ~ "^" w || $5 ~ "^" r { print $5 }' \
		/proc/self/mountinfo | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null
	done
}

# start_registry LOG_LEVEL [accesslog]: a docker-registry on a free
# loopback port, storage W/registry; sets REG and REG_PID
start_registry() {
	local port access=""
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	REG=127.0.0.1:$port
	[ "${2:-}" != accesslog ] || access=$'\n  accesslog:\n    disabled: false'
	cat >"$W/registry.yml" <<EOF
version: 0.1
log:
  level: $1$access
storage:
  filesystem:
    rootdirectory: $W/registry
  delete:
    enabled: true
http:
  addr: $REG
EOF
	docker-registry serve "$W/registry.yml" >"$W/registry.log" 2>&1 &
	REG_PID=$!
	for _ in $(seq 100); do
		curl -fs "http://$REG/v2/" >/dev/null && break
		sleep 0.1
	done
	curl -fs "http://$REG/v2/" >/dev/null || { cat "$W/registry.log"; exit 1; }
}

# start_containerd: containerd 1.6 with its own root (W/ctrd), state and
# socket (R/ctrd.sock), CRI off, and the snapshotter at R/snap.sock as
# proxy plugin "nydus", then CTRD_EXTRA_CONFIG (more TOML, e.g. another
# proxy plugin) if set; sets CTRD_PID once it answers
start_containerd() {
	mkdir -p "$W/ctrd/root" "$W/ctrd/opt" "$R/state"
	cat >"$W/containerd.toml" <<EOF
version = 2
root = "$W/ctrd/root"
state = "$R/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$R/ctrd.sock"
[ttrpc]
  address = "$R/ctrd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "$W/ctrd/opt"

[proxy_plugins.nydus]
  type = "snapshot"
  address = "$R/snap.sock"
${CTRD_EXTRA_CONFIG:-}
EOF
	containerd --config "$W/containerd.toml" >"$W/containerd.log" 2>&1 &
	CTRD_PID=$!
	for _ in $(seq 100); do
		ctr -a "$R/ctrd.sock" version >/dev/null 2>&1 && break
		sleep 0.2
	done
	ctr -a "$R/ctrd.sock" version >/dev/null || { tail "$W/containerd.log"; exit 1; }
}
