#!/bin/bash
# Cold pull + run measurements; sourced by bench/coldstart after common.sh,
# net.sh and images.sh.
#
# One measurement = fresh everything on the client side: containerd
# "bench" (root, state, content store) and the snapshotter (root, cache)
# are stopped and deleted, then started empty.  Then, timed:
#   overlay[:TAG]  ctr image pull --plain-http + ctr run --rm
#   lazy:TAG       ctr-remote image rpull --plain-http --snapshotter nydus
#                  + ctr run --rm --snapshotter nydus
# TAG is python:TAG on the shaped registry (overlay's default: org).  After a
# lazy pull, containerd's content store must hold none of the image's
# layers: if it does, containerd downloaded and unpacked them itself (the
# snapshotter did not take the layers remotely) and the measurement is
# recorded as "not-lazy", never as a result.
SNAPSHOTTER=${SNAPSHOTTER:-build/snapshotter/lazypull-snapshotter --root @ROOT@ --address @SOCK@ --nydusd-config @CONF@ --enable-stargz --enable-zran --log-level info --log-to-stdout}
SNAP_ROOT=${SNAP_ROOT:-$BENCH_DIR/snapshotter}
SNAP_SOCK=${SNAP_SOCK:-$BENCH_RUN/snapshotter.sock}
SNAP_CONF=${SNAP_CONF:-$BENCH_DIR/etc/nydusd-config.json}
RSS_MATCH=${RSS_MATCH:-lazypull}
TIMEOUT=${TIMEOUT:-300}
DROP_CACHES=${DROP_CACHES:-0}
CSV=$BENCH_DIR/results/coldstart.csv
CSV_HEAD=run_id,time,round,workload,variant,image,snapshotter,status,pull_s,fetch_s,unpack_s,run_s,total_s,rx_bytes,tx_bytes,image_bytes,lp_rss_kb,lp_procs,ctrd_rss_kb,load1

now() { date +%s.%N; }
# variant_tag VARIANT: the image tag it pulls (overlay alone: org)
# lazy:TAG+trace: the same image on a node that ran it before: the fs
# daemons' access traces (SNAP_ROOT/traces) of an earlier run are kept,
# the cache and everything else is fresh
variant_tag() {
	local v=${1%+trace}
	if [ "${v#*:}" = "$v" ]; then echo org; else echo "${v#*:}"; fi
}
trace_keep() { echo "$BENCH_DIR/traces/$(variant_tag "$1")-$2"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# workload_args NAME: the command ctr run is given (none = the image's CMD)
workload_args() {
	case $1 in
	cmd) ;;
	hi) printf '%s\n' python3 -c 'print("hi")' ;;
	*) die "unknown workload $1 (cmd, hi)" ;;
	esac
}
workload_desc() {
	case $1 in
	cmd) echo "image CMD: python3 /app/workload.py (imports 16 stdlib modules)" ;;
	hi) echo "python3 -c 'print(\"hi\")'" ;;
	esac
}

# snap_cmd: the snapshotter's argv, one word per line, placeholders filled
snap_cmd() {
	local w words
	set -f
	read -ra words <<<"$SNAPSHOTTER"
	set +f
	for w in "${words[@]}"; do
		w=${w//@ROOT@/$SNAP_ROOT}
		w=${w//@SOCK@/$SNAP_SOCK}
		w=${w//@CONF@/$SNAP_CONF}
		echo "$w"
	done
}
snap_bin() {
	local b
	b=$(snap_cmd | head -1)
	case $b in /*) ;; */*) b=$LP_SRC/$b ;; *) b=$(command -v "$b" || echo "$b") ;; esac
	echo "$b"
}
# nydusd's JSON, the fusedev layout: the shaped registry speaks plain HTTP
snap_conf() {
	local amp=""
	# AMPLIFY_IO: nydusd's read amplification (the fs daemons' fetch window)
	[ -z "${AMPLIFY_IO:-}" ] || amp=$'\n  "amplify_io": '"$AMPLIFY_IO,"
	mkdir -p "$(dirname "$SNAP_CONF")"
	cat >"$SNAP_CONF" <<EOF
{
  "device": {
    "backend": {"type": "registry",
                "config": {"scheme": "http", "skip_verify": true, "timeout": 30,
                           "connect_timeout": 10, "retry_limit": 2}},
    "cache": {"type": "blobcache", "config": {"work_dir": "$SNAP_ROOT/cache"}}
  },
  "mode": "direct",$amp
  "digest_validate": false,
  "iostats_files": false,
  "enable_xattr": true
}
EOF
}
# snap_check: say why the lazy variants cannot run, if they cannot
snap_check() {
	local b
	b=$(snap_bin)
	[ -x "$b" ] || {
		say "the lazy variants need the snapshotter, and $b is not there:"
		say "  build it (ninja -C build), or set SNAPSHOTTER='/path/to/bin ARGS'"
		say "  (@ROOT@ @SOCK@ @CONF@ are filled in), or measure VARIANTS=overlay only"
		return 1
	}
}
# snap_ready: its socket is there, or it has exited (then no use waiting)
snap_ready() { [ -S "$SNAP_SOCK" ] || ! running snapshotter; }
snap_up() {
	local args=() b
	b=$(snap_bin)
	mapfile -t args < <(snap_cmd | tail -n +2)
	snap_conf
	mkdir -p "$SNAP_ROOT" "$(dirname "$SNAP_SOCK")"
	rm -f "$SNAP_SOCK"
	start_daemon snapshotter "$b" "${args[@]}"
	wait_for 15 snap_ready || true
	[ -S "$SNAP_SOCK" ] || {
		# this start's part of the log
		awk '/^=== / { b = "" } { b = b $0 "\n" } END { printf "%s", b }' \
			"$BENCH_DIR/log/snapshotter.log" | tail -15 >&2
		say "the snapshotter did not create $SNAP_SOCK (log: $BENCH_DIR/log/snapshotter.log)"
		return 1
	}
}
# snap_down: stop it (SIGTERM: it unmounts and exits), then make sure no
# mount and no process of its root is left
snap_down() {
	local p i
	stop_daemon snapshotter TERM
	unmount_under "$SNAP_ROOT"
	# unmounted fs daemons write their access traces and exit
	for i in $(seq 50); do
		pgrep -f -- "$SNAP_ROOT" >/dev/null || break
		sleep 0.1
	done
	if [ -n "${TRACE_SAVE:-}" ] && [ -d "$SNAP_ROOT/traces" ]; then
		mkdir -p "$TRACE_SAVE"
		cp -f "$SNAP_ROOT"/traces/* "$TRACE_SAVE"/ 2>/dev/null || true
	fi
	TRACE_SAVE=
	# the fs daemons' logs of the last measurement, for a look afterwards
	rm -rf "$BENCH_DIR/log/daemons"
	if [ -d "$SNAP_ROOT/daemons" ]; then
		mkdir -p "$BENCH_DIR/log/daemons"
		cp -f "$SNAP_ROOT"/daemons/*.log "$BENCH_DIR/log/daemons"/ 2>/dev/null || true
	fi
	for p in $(pgrep -f -- "$SNAP_ROOT" || true); do
		say "snapshotter left pid $p behind: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"
		kill -KILL "$p" 2>/dev/null || true
	done
	rm -rf "$SNAP_ROOT" "$SNAP_SOCK"
}

# lp_rss: "KB NPROCS" summed over the processes whose program name matches
# RSS_MATCH and that belong to our snapshotter: its session, or a command
# line naming its root
lp_rss() {
	local sid=0
	[ -s "$(pidfile snapshotter)" ] && sid=$(cat "$(pidfile snapshotter)")
	ps -eo pid=,sid=,rss=,args= | awk -v sid="$sid" -v m="$RSS_MATCH" -v root="$SNAP_ROOT" '
		{ a0 = $4; sub(/.*\//, "", a0) }
		a0 ~ m && ($2 == sid || index($0, root)) {
			kb += $3; n++
			printf "%s %s kB %s\n", $1, $3, substr($0, index($0, $4), 160) > "/dev/stderr"
		}
		END { printf "%d %d\n", kb, n }' 2>"$BENCH_DIR/log/last-rss.txt"
	# where it goes: anonymous, file-backed (shared libraries, counted
	# again in every process that maps them) and PSS per process
	local p pids
	rm -f "$BENCH_DIR"/log/last-smaps.*
	pids=$(awk '$2 > 0 { print $1 }' "$BENCH_DIR/log/last-rss.txt")
	for p in $pids; do
		awk -v p="$p" '/^(Rss|Pss|Anonymous|Shared_Clean|Private_Clean):/ { printf " %s %s", $1, $2 }
			END { printf "  (pid %s)\n", p }' "/proc/$p/smaps_rollup" 2>/dev/null || true
		cp "/proc/$p/smaps" "$BENCH_DIR/log/last-smaps.$p" 2>/dev/null || true
	done >>"$BENCH_DIR/log/last-rss.txt"
}

# layers TAG: the image's layer digests; image_bytes TAG: manifest + config
# + layers, as stored in the registry
manifest() { curl -fs -H "Accept: $MT_MANIFEST" "http://$REG_ADDR/v2/python/manifests/$1"; }
layers() { manifest "$1" | jq -r '.layers[].digest'; }
image_bytes() {
	local m
	m=$(manifest "$1") || { echo 0; return; }
	jq -r --arg ml "${#m}" '[.config.size] + [.layers[].size] | add + ($ml | tonumber)' <<<"$m"
}

reset_client() {
	ctrd_down bench
	snap_down
}

# measure RUN_ID ROUND WORKLOAD VARIANT: one cold measurement, one CSV row
measure() {
	local rid=$1 round=$2 wl=$3 var=$4 kind tag ref sn=overlayfs status=ok
	local snap=- args=() out t0 t1 t2 rx0 tx0 rx1 tx1 pout fetch=- unpack=- rss=- procs=- crss d
	kind=${var%%:*}
	tag=$(variant_tag "$var")
	ref=$SHAPED_ADDR/python:$tag
	mapfile -t args < <(workload_args "$wl")
	reset_client
	if [ "$kind" = lazy ]; then
		sn=nydus
		snap=$(basename "$(snap_bin)")
		snap_up || status=snapshotter-failed
		if [ "${var%+trace}" != "$var" ]; then
			# the traces an earlier run left, kept by snap_down
			TRACE_SAVE=$(trace_keep "$var" "$wl")
			if [ -n "$(ls -A "$TRACE_SAVE" 2>/dev/null)" ]; then
				mkdir -p "$SNAP_ROOT/traces"
				cp -f "$TRACE_SAVE"/* "$SNAP_ROOT/traces/"
			elif [ "$round" != 0 ]; then
				say "$var: no access trace recorded yet"
			fi
		fi
		[ $status != ok ] || ctrd_up bench "$SNAP_SOCK"
		[ $status != ok ] || wait_for 10 ctrd bench snapshots --snapshotter nydus ls ||
			status=snapshotter-unreachable
	else
		ctrd_up bench
	fi
	sync
	[ "$DROP_CACHES" != 1 ] || echo 3 >/proc/sys/vm/drop_caches
	rx0=$(rx_bytes)
	tx0=$(tx_bytes)
	t0=$(now)
	t1=$t0
	t2=$t0
	if [ $status = ok ]; then
		if [ "$kind" = lazy ]; then
			timeout --foreground "$TIMEOUT" ctr-remote -a "$(ctrd_sock bench)" -n "$BENCH_NS" image rpull \
				--plain-http --snapshotter nydus "$ref" >"$BENCH_DIR/log/last-pull.log" 2>&1 ||
				status=pull-failed
		else
			timeout --foreground "$TIMEOUT" ctr -a "$(ctrd_sock bench)" -n "$BENCH_NS" image pull \
				--plain-http "$ref" >"$BENCH_DIR/log/last-pull.log" 2>&1 || status=pull-failed
		fi
		t1=$(now)
		t2=$t1
	fi
	if [ $status = ok ]; then
		# no stdin: the container would wait on ours
		out=$(timeout --foreground "$TIMEOUT" ctr -a "$(ctrd_sock bench)" -n "$BENCH_NS" run --rm \
			--snapshotter "$sn" "$ref" "coldstart-$round" "${args[@]}" </dev/null 2>&1) ||
			status=run-failed
		t2=$(now)
		[ $status != ok ] || [ "$out" = hi ] || status=wrong-output
		[ $status = ok ] || say "$var: container printed: $(head -c 300 <<<"$out")"
	fi
	rx1=$(rx_bytes)
	tx1=$(tx_bytes)
	if [ "$kind" = lazy ] && [ $status != snapshotter-failed ]; then
		read -r rss procs < <(lp_rss)
		# a crash shows first as a failed pull or run: name the cause
		running snapshotter || status=snapshotter-died
		# the proof of laziness: containerd fetched no layer itself
		if [ $status = ok ]; then
			local have n=0 l
			have=$(ctrd bench content ls -q 2>/dev/null)
			for l in $(layers "$tag"); do grep -qx "$l" <<<"$have" && n=$((n + 1)); done
			if ((n)); then
				status=not-lazy
				say "$var: containerd downloaded $n of the image's layers itself: the snapshotter" \
					"did not take them remotely, so this was no lazy pull (not a result)"
			fi
		fi
	elif [ "$kind" != lazy ] && [ $status = ok ]; then
		# ctr 1.6 pull: fetch every blob, then unpack; its last "elapsed: X s"
		# before "unpacking" is the fetch
		pout=$(tr '\r' '\n' <"$BENCH_DIR/log/last-pull.log")
		fetch=$(awk '/^unpacking/ { exit } { for (i = 1; i < NF; i++) if ($i == "elapsed:") e = $(i + 1) }
			END { printf "%.2f", e + 0 }' <<<"$pout")
		unpack=$(awk -v p="$(secs "$t0" "$t1")" -v f="$fetch" 'BEGIN { printf "%.2f", p - f }')
	fi
	if [ $status != ok ]; then
		# keep the failed pull's output
		local keep=$BENCH_DIR/log/failed-$rid-r$round-$wl-${var//:/-}.log
		{ cat "$BENCH_DIR/log/last-pull.log" 2>/dev/null; printf '%s\n' "${out:-}"; } >"$keep"
		say "$var: $status (pull and run output: $keep; snapshotter: $BENCH_DIR/log/snapshotter.log)"
	fi
	# a +trace variant's recording run is no measurement
	[ -z "${RECORDING:-}" ] || [ $status != ok ] || status=recording
	crss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$(cat "$(pidfile containerd-bench)" 2>/dev/null || echo 0)/status" 2>/dev/null || echo -)
	d=$(cut -d' ' -f1 /proc/loadavg)
	printf '%-8s r%-2d %-18s %-14s pull %6s s  run %5s s  total %6s s  rx %6.1f MB  tx %5.2f MB  rss %6s kB (%s procs)  load %s\n' \
		"$wl" "$round" "$var" "$status" "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" "$(secs "$t0" "$t2")" \
		"$(awk -v b=$((rx1 - rx0)) 'BEGIN { print b / 1e6 }')" "$(awk -v b=$((tx1 - tx0)) 'BEGIN { print b / 1e6 }')" \
		"$rss" "$procs" "$d"
	echo "$rid,$(date -u +%FT%TZ),$round,$wl,$var,python:$tag,$snap,$status,$(secs "$t0" "$t1"),$fetch,$unpack,$(secs "$t1" "$t2"),$(secs "$t0" "$t2"),$((rx1 - rx0)),$((tx1 - tx0)),$(image_bytes "$tag"),$rss,$procs,${crss:--},$d" >>"$CSV"
	[ $status = ok ]
}
# TRACE_SAVE: where snap_down keeps the fs daemons' traces (+trace variants)
TRACE_SAVE=

versions() {
	echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs, $(containerd --version | awk '{ print $1, $3 }'), runc $(runc --version | awk 'NR == 1 { print $3 }'), ctr-remote $(dpkg-query -W -f='${Version}' stargz-snapshotter)"
	echo "# link $SHAPED_ADDR: tbf $RATE each way, +${DELAY_MS} ms each way (RTT $((2 * DELAY_MS)) ms)"
}

# run_bench: ROUNDS rounds; in each, every workload and every variant once,
# always in the same order (A,B,C,A,B,C...) so machine noise hits them alike
run_bench() {
	local rid r wl v fails=0
	for v in $VARIANTS; do
		case $v in overlay | overlay:* | lazy:*) ;; *) die "unknown variant $v (overlay[:TAG], lazy:TAG)" ;; esac
		[ -n "$(reg_digest "$(variant_tag "$v")")" ] ||
			die "python:$(variant_tag "$v") is not in the registry (bench/coldstart setup)"
	done
	case " $VARIANTS " in *" lazy:"*) snap_check || exit 1 ;; esac
	for wl in $WORKLOADS; do workload_args "$wl" >/dev/null; done
	mkdir -p "$BENCH_DIR/results"
	# a CSV of another layout is kept aside, not appended to
	if [ -s "$CSV" ] && [ "$(head -1 "$CSV")" != "$CSV_HEAD" ]; then
		mv "$CSV" "$CSV.$(date -u +%Y%m%dT%H%M%SZ)"
	fi
	[ -s "$CSV" ] || echo "$CSV_HEAD" >"$CSV"
	rid=$(date -u +%Y%m%dT%H%M%SZ)
	versions
	echo "# run $rid: ROUNDS=$ROUNDS VARIANTS='$VARIANTS' WORKLOADS='$WORKLOADS' DROP_CACHES=$DROP_CACHES"
	case " $VARIANTS " in *" lazy:"*) echo "# snapshotter: $(snap_cmd | tr '\n' ' ')" ;; esac
	# a +trace variant first runs once unmeasured to record its traces
	# (round 0, status "recording"), unless an earlier run left them
	for wl in $WORKLOADS; do
		for v in $VARIANTS; do
			[ "${v%+trace}" != "$v" ] || continue
			[ -z "$(ls -A "$(trace_keep "$v" "$wl")" 2>/dev/null)" ] || continue
			RECORDING=1 measure "$rid" 0 "$wl" "$v" || true
		done
	done
	for ((r = 1; r <= ROUNDS; r++)); do
		for wl in $WORKLOADS; do
			for v in $VARIANTS; do
				measure "$rid" "$r" "$wl" "$v" || fails=$((fails + 1))
			done
		done
	done
	reset_client
	echo
	python3 "$LAB/summary.py" "$CSV" "$rid"
	echo "# rows: $CSV (run_id $rid)"
	((fails == 0)) || { say "$fails measurement(s) failed: see the status column"; return 1; }
}
