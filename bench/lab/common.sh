#!/bin/bash
# Shared settings and helpers of bench/coldstart; sourced, not run.
#
# Persistent state (registry storage, built images, results) lives under
# BENCH_DIR; sockets, pid files and containerd state under BENCH_RUN.  Every
# containerd we start uses the namespace BENCH_NS: runc keeps its state in
# /run/containerd/runc/<namespace> whatever containerd's config says, so the
# namespace is what keeps us apart from any other containerd on the machine.
# shellcheck disable=SC2034 # the variables are used by the other files
BENCH_DIR=${BENCH_DIR:-/var/lib/lazypull-bench}
BENCH_RUN=${BENCH_RUN:-/run/lazypull-bench}
BENCH_NS=${BENCH_NS:-lazypull-bench}
# the unshaped registry (pushes, conversions), loopback only
REG_ADDR=${REG_ADDR:-127.0.0.1:5310}
# the shaped link: NET_PREFIX.1 is the registry side (in NETNS), .2 the host
NETNS=${NETNS:-lazypull-bench}
VETH_HOST=${VETH_HOST:-lpbench-h}
VETH_NS=${VETH_NS:-lpbench-n}
NET_PREFIX=${NET_PREFIX:-10.211.9}
SHAPED_ADDR=$NET_PREFIX.1:5000
RATE=${RATE:-100mbit}   # tbf, each direction
DELAY_MS=${DELAY_MS:-10} # delay proxy, each direction: RTT = 2 * DELAY_MS
LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LP_SRC=$(cd "$LAB/../.." && pwd)

say() { printf '[coldstart] %s\n' "$*" >&2; }
die() {
	say "ERROR: $*"
	exit 1
}
need_root() { [ "$(id -u)" = 0 ] || die "run as root"; }

# need_pkgs PKG...: install the Debian packages that are missing
need_pkgs() {
	local miss=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q 'ok installed' || miss+=("$p")
	done
	((${#miss[@]})) || return 0
	say "apt-get install ${miss[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${miss[@]}" >/dev/null
}

# ---- daemons: one pid file each under BENCH_RUN -------------------------

pidfile() { echo "$BENCH_RUN/$1.pid"; }
# running NAME: the daemon NAME is alive (pid file holds a live pid)
running() {
	local f
	f=$(pidfile "$1")
	[ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}
# start_daemon NAME CMD...: start CMD in its own session, log to
# BENCH_DIR/log/NAME.log (appended), pid to BENCH_RUN/NAME.pid
start_daemon() {
	local name=$1
	shift
	mkdir -p "$BENCH_RUN" "$BENCH_DIR/log"
	echo "=== $(date -u +%FT%TZ) $*" >>"$BENCH_DIR/log/$name.log"
	# 9>&-: not our lock (bench/coldstart holds it on fd 9)
	setsid "$@" >>"$BENCH_DIR/log/$name.log" 2>&1 </dev/null 9>&- &
	echo $! >"$(pidfile "$name")"
}
# stop_daemon NAME [SIGNAL]: signal it (TERM), wait up to 10 s, then KILL
stop_daemon() {
	local f p i
	f=$(pidfile "$1")
	if [ -s "$f" ]; then
		p=$(cat "$f")
		kill -s "${2:-TERM}" "$p" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$p" 2>/dev/null; then
			say "$1 (pid $p) ignored SIG${2:-TERM}; killing it"
			kill -KILL "$p" 2>/dev/null || true
			sleep 0.2
		fi
	fi
	rm -f "$f"
}
# wait_for SECONDS CMD...: retry CMD every 0.1 s
wait_for() {
	local i n=$(($1 * 10))
	shift
	for ((i = 0; i < n; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}
# unmount_under DIR: unmount everything mounted below DIR, deepest first
unmount_under() {
	local d mp
	[ -e "$1" ] || return 0
	d=$(realpath -m "$1")
	awk -v d="$d/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r mp; do
		umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null ||
			fusermount3 -uz "$mp" 2>/dev/null || true
	done
}

# ---- registry ----------------------------------------------------------

# registry_conf FILE ADDR [readonly]: docker-registry 2.8 config; plain
# HTTP, no auth (Debian's default config turns htpasswd on: never use it)
registry_conf() {
	local ro=""
	[ "${3:-}" = readonly ] &&
		ro=$'\n  maintenance:\n    readonly: {enabled: true}\n    uploadpurging: {enabled: false}'
	mkdir -p "$(dirname "$1")" "$BENCH_DIR/registry"
	cat >"$1" <<EOF
version: 0.1
log: {level: warn, fields: {service: lazypull-bench}}
storage:
  filesystem: {rootdirectory: $BENCH_DIR/registry}
  delete: {enabled: true}
  cache: {blobdescriptor: inmemory}$ro
http:
  addr: $2
EOF
}
registry_up() {
	case $REG_ADDR in 127.*) ;; *) die "REG_ADDR must be on loopback" ;; esac
	running registry && return 0
	registry_conf "$BENCH_DIR/etc/registry.yml" "$REG_ADDR"
	start_daemon registry docker-registry serve "$BENCH_DIR/etc/registry.yml"
	wait_for 10 curl -fs "http://$REG_ADDR/v2/" ||
		die "registry does not answer on $REG_ADDR (see $BENCH_DIR/log/registry.log)"
	say "registry http://$REG_ADDR (pid $(cat "$(pidfile registry)"))"
}

# ---- containerd --------------------------------------------------------

# An instance NAME has root BENCH_DIR/containerd-NAME, state
# BENCH_RUN/containerd-NAME and socket BENCH_RUN/containerd-NAME.sock.
ctrd_sock() { echo "$BENCH_RUN/containerd-$1.sock"; }
# ctrd NAME ARGS...: ctr against instance NAME, in our namespace
ctrd() {
	local n=$1
	shift
	ctr -a "$(ctrd_sock "$n")" -n "$BENCH_NS" "$@"
}
# ctrd_up NAME [PROXY_SOCK]: start it (CRI off); with PROXY_SOCK, the
# proxy snapshotter "nydus" points at that socket
ctrd_up() {
	local n=$1 conf=$BENCH_DIR/etc/containerd-$1.toml
	running "containerd-$n" && return 0
	mkdir -p "$BENCH_DIR/etc" "$BENCH_DIR/containerd-$n" "$BENCH_RUN/containerd-$n"
	cat >"$conf" <<EOF
version = 2
root = "$BENCH_DIR/containerd-$n"
state = "$BENCH_RUN/containerd-$n"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$(ctrd_sock "$n")"
[ttrpc]
  address = "$(ctrd_sock "$n").ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "$BENCH_DIR/opt"
EOF
	[ -z "${2:-}" ] || printf '[proxy_plugins.nydus]\n  type = "snapshot"\n  address = "%s"\n' \
		"$2" >>"$conf"
	start_daemon "containerd-$n" containerd --config "$conf"
	wait_for 20 ctr -a "$(ctrd_sock "$n")" version ||
		die "containerd $n did not start (see $BENCH_DIR/log/containerd-$n.log)"
}
# ctrd_down NAME: kill what runs in our namespace, stop containerd, then
# delete its root and state (runc's state dir for our namespace too)
ctrd_down() {
	local n=$1 id
	if running "containerd-$n"; then
		for id in $(ctrd "$n" tasks ls -q 2>/dev/null); do
			ctrd "$n" tasks kill -s KILL "$id" >/dev/null 2>&1 || true
			ctrd "$n" tasks delete -f "$id" >/dev/null 2>&1 || true
		done
		for id in $(ctrd "$n" containers ls -q 2>/dev/null); do
			ctrd "$n" containers delete "$id" >/dev/null 2>&1 || true
		done
	fi
	stop_daemon "containerd-$n"
	unmount_under "$BENCH_RUN/containerd-$n"
	unmount_under "$BENCH_DIR/containerd-$n"
	rm -rf "$BENCH_DIR/containerd-$n" "$BENCH_RUN/containerd-$n" \
		"$(ctrd_sock "$n")" "$(ctrd_sock "$n").ttrpc"
}
