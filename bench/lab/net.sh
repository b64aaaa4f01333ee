#!/bin/bash
# The shaped link; sourced by bench/coldstart after common.sh.
#
#   host netns                          netns NETNS (ours)
#   containerd --- VETH_HOST ====veth==== VETH_NS  NET_PREFIX.1:5000 delayproxy
#                  NET_PREFIX.2            tbf RATE          | +DELAY_MS each way
#                  tbf RATE                                  v
#                                               127.0.0.1:5000 docker-registry
#                                               (our registry's storage, read-only)
# Bytes on the link are tbf's "Sent" counters: rx = registry to host (the
# netns side's egress), tx = host to registry.

nsx() { ip netns exec "$NETNS" "$@"; }

net_up() {
	local other
	if ! ip link show "$VETH_HOST" >/dev/null 2>&1; then
		# never shadow a subnet somebody else routes
		other=$(ip route show "$NET_PREFIX.0/24")
		[ -z "$other" ] || die "$NET_PREFIX.0/24 is already routed ($other): set NET_PREFIX"
		ip netns list | grep -qw "^$NETNS" || ip netns add "$NETNS"
		ip link add "$VETH_HOST" type veth peer name "$VETH_NS"
		ip link set "$VETH_NS" netns "$NETNS"
	fi
	ip addr replace "$NET_PREFIX.2/24" dev "$VETH_HOST"
	ip link set "$VETH_HOST" up
	nsx ip addr replace "$NET_PREFIX.1/24" dev "$VETH_NS"
	nsx ip link set "$VETH_NS" up
	nsx ip link set lo up
	tc qdisc replace dev "$VETH_HOST" root tbf rate "$RATE" burst 64kb latency 50ms
	nsx tc qdisc replace dev "$VETH_NS" root tbf rate "$RATE" burst 64kb latency 50ms
	if ! running registry-shaped; then
		registry_conf "$BENCH_DIR/etc/registry-shaped.yml" 127.0.0.1:5000 readonly
		start_daemon registry-shaped ip netns exec "$NETNS" \
			docker-registry serve "$BENCH_DIR/etc/registry-shaped.yml"
	fi
	if ! running delayproxy; then
		start_daemon delayproxy ip netns exec "$NETNS" python3 "$LAB/delayproxy.py" \
			--listen "$SHAPED_ADDR" --target 127.0.0.1:5000 --delay-ms "$DELAY_MS"
	fi
	wait_for 10 curl -fs "http://$SHAPED_ADDR/v2/" ||
		die "shaped registry does not answer on $SHAPED_ADDR (see $BENCH_DIR/log/)"
	say "shaped registry http://$SHAPED_ADDR: tbf $RATE, +${DELAY_MS} ms each way"
}

net_down() {
	stop_daemon delayproxy
	stop_daemon registry-shaped
	ip link del "$VETH_HOST" 2>/dev/null || true
	ip netns del "$NETNS" 2>/dev/null || true
}

sent() { awk '/Sent/ { print $2; exit }'; }
rx_bytes() { nsx tc -s qdisc show dev "$VETH_NS" | sent; }
tx_bytes() { tc -s qdisc show dev "$VETH_HOST" | sent; }

# net_test: a small request should take ~2*DELAY_MS, the largest layer of
# python:org should arrive at ~RATE
net_test() {
	local m blob
	echo "GET /v2/ (expect ~$((2 * DELAY_MS)) ms):"
	for _ in 1 2 3; do
		curl -s -o /dev/null -w '  connect %{time_connect} s  first byte %{time_starttransfer} s\n' \
			"http://$SHAPED_ADDR/v2/"
	done
	m=$(curl -fs -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		"http://$SHAPED_ADDR/v2/python/manifests/org") || return 0
	blob=$(jq -r '.layers | max_by(.size) | .digest' <<<"$m")
	echo "largest python:org layer through the link (expect ~$RATE):"
	curl -s -o /dev/null -w '  %{size_download} B in %{time_total} s = %{speed_download} B/s\n' \
		"http://$SHAPED_ADDR/v2/python/blobs/$blob"
	echo "a 51-byte range of it:"
	curl -s -o /dev/null -r -51 -w '  HTTP %{http_code} in %{time_total} s\n' \
		"http://$SHAPED_ADDR/v2/python/blobs/$blob"
}
