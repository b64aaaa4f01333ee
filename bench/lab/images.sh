#!/bin/bash
# The benchmark image; sourced by bench/coldstart after common.sh.
#
# python:org is 4 gzip layers, built with umoci into the OCI layout
# BENCH_DIR/build/oci (the cache: it is built once) and pushed to our
# registry with skopeo:
#   1 debootstrap --variant=minbase bookworm, apt caches and /dev emptied
#   2 apt-get install --no-install-recommends python3
#   3 apt-get install --no-install-recommends python3-pip
#   4 /app/workload.py: imports a spread of the stdlib, prints "hi"
# From it ctr-remote (stargz-snapshotter 0.12) makes :esgz, :esgz-opt
# (`image optimize`: the files the workload reads go first, then a
# .prefetch.landmark) and :zstdchunked, through a throw-away containerd
# ("build"); a conversion is redone only when python:org changed.
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-bookworm}
B=$BENCH_DIR/build
OCI=$B/oci
MT_MANIFEST='application/vnd.oci.image.manifest.v1+json'

# reg_digest TAG: digest of python:TAG in our registry, empty if absent
reg_digest() {
	curl -fsI -H "Accept: $MT_MANIFEST" "http://$REG_ADDR/v2/python/manifests/$1" 2>/dev/null |
		tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }'
}

# chroot_apt ROOTFS PACKAGES: apt-get install in a chroot, with /proc and
# /dev mounted only while it runs
chroot_apt() {
	local r=$1 rc=0
	mount -t proc proc "$r/proc"
	mount --bind /dev "$r/dev"
	cp /etc/resolv.conf "$r/etc/resolv.conf"
	chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 sh -c \
		"apt-get update -qq && apt-get install -y -qq --no-install-recommends $2 >/dev/null &&
		 apt-get clean && rm -rf /var/lib/apt/lists/*" >>"$B/apt.log" 2>&1 || rc=$?
	umount "$r/dev"
	umount "$r/proc"
	: >"$r/etc/resolv.conf"
	[ $rc = 0 ] || say "apt-get install $2 failed (see $B/apt.log)"
	return $rc
}

# layer TAG CREATED_BY CMD...: add one layer to TAG: unpack, run CMD with
# the rootfs as $1, repack.  umoci's diff leaves out unchanged parent
# directories (a layer with usr/lib/x but no usr/), on which
# `ctr-remote image optimize` 0.12 fails ("failed to sort tar entries"), so
# every parent of every changed path is touched first: umoci then writes
# them, as docker and buildkit do.
layer() {
	local tag=$1 by=$2 bundle=$B/bundle
	shift 2
	rm -rf "$bundle"
	umoci unpack --image "$OCI:$tag" "$bundle" >/dev/null
	touch "$B/.stamp"
	sleep 1
	"$@" "$bundle/rootfs"
	(cd "$bundle/rootfs" && find . -xdev -newer "$B/.stamp" |
		awk '{ p = $0; while (sub(/\/[^\/]*$/, "", p) && p != ".") print p }' |
		sort -u | xargs -r -d '\n' touch -h -c --)
	umoci repack --image "$OCI:$tag" --history.created_by "$by" "$bundle"
	rm -rf "$bundle"
}

add_base() {
	[ -e "$B/base/.done" ] || {
		rm -rf "$B/base"
		say "debootstrap --variant=minbase $SUITE (about a minute)"
		debootstrap --variant=minbase "$SUITE" "$B/base" "$MIRROR" >"$B/debootstrap.log" 2>&1 ||
			die "debootstrap failed (see $B/debootstrap.log)"
		touch "$B/base/.done"
	}
	cp -a "$B/base/." "$1/"
	(cd "$1" && rm -rf .done dev/* var/cache/apt/*.bin var/cache/apt/archives/*.deb \
		var/lib/apt/lists/* var/log/* && : >etc/resolv.conf &&
		echo "deb $MIRROR $SUITE main" >etc/apt/sources.list)
}
add_python3() { chroot_apt "$1" python3; }
add_pip() { chroot_apt "$1" python3-pip; }
# NB: not `umoci insert`: 0.4.7 writes a truncated tar for one file
add_workload() {
	mkdir -p "$1/app"
	cat >"$1/app/workload.py" <<'EOF'
# cold-start workload: a realistic spread of the stdlib, the part of the
# image a lazy puller must fetch before the container can say hi
import json, email.parser, http.client, sqlite3, decimal, xml.etree.ElementTree
import asyncio, logging, argparse, urllib.request, csv, hashlib, zipfile
import tarfile, unittest, pydoc_data
print("hi")
EOF
}

build_python() {
	mkdir -p "$B"
	[ -d "$OCI" ] || umoci init --layout "$OCI"
	if ! umoci ls --layout "$OCI" | grep -qx python-org; then
		local t0=$SECONDS
		say "building python:org (debootstrap + 2 apt layers + workload)"
		umoci new --image "$OCI:python-org"
		layer python-org "debootstrap --variant=minbase $SUITE" add_base
		layer python-org "apt-get install python3" add_python3
		layer python-org "apt-get install python3-pip" add_pip
		layer python-org "COPY workload.py /app/" add_workload
		umoci config --image "$OCI:python-org" --architecture amd64 --os linux \
			--config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			--config.env LANG=C.UTF-8 --config.workingdir /app \
			--config.cmd python3 --config.cmd /app/workload.py
		umoci gc --layout "$OCI"
		say "built python:org in $((SECONDS - t0)) s"
	fi
	local want
	want=sha256:$(jq -r '.manifests[] |
		select(.annotations["org.opencontainers.image.ref.name"] == "python-org") |
		.digest' "$OCI/index.json" | cut -d: -f2)
	if [ "$(reg_digest org)" != "$want" ]; then
		skopeo copy -q --format oci --dest-tls-verify=false \
			"oci:$OCI:python-org" "docker://$REG_ADDR/python:org"
		say "pushed $REG_ADDR/python:org"
	fi
}

# convert TAG CTR-REMOTE-ARGS...: python:org -> python:TAG, unless done
# from the current python:org already
convert() {
	local tag=$1 src stamp=$B/converted-$1 t0=$SECONDS
	shift
	src=$(reg_digest org)
	if [ "$(cat "$stamp" 2>/dev/null)" = "$src" ] && [ -n "$(reg_digest "$tag")" ]; then
		return 0
	fi
	ctrd_up build
	ctrd build image pull --plain-http "$REG_ADDR/python:org" >/dev/null
	ctrd build image rm "$REG_ADDR/python:$tag" >/dev/null 2>&1 || true
	ctr-remote -a "$(ctrd_sock build)" -n "$BENCH_NS" image "$@" \
		"$REG_ADDR/python:org" "$REG_ADDR/python:$tag" >"$B/convert-$tag.log" 2>&1 || {
		tail -20 "$B/convert-$tag.log" >&2
		die "ctr-remote image $* failed (see $B/convert-$tag.log)"
	}
	ctrd build image push --plain-http "$REG_ADDR/python:$tag" >/dev/null
	echo "$src" >"$stamp"
	say "python:$tag <- ctr-remote image $* ($((SECONDS - t0)) s)"
}

images() {
	build_python
	convert esgz convert --estargz --oci
	convert zstdchunked convert --zstdchunked --oci
	# optimize runs the image's CMD (workload.py) and records what it reads
	convert esgz-opt optimize --oci --period 10 --record-out "$B/esgz-opt.record.json"
	ctrd_down build
}

# images_report: per tag, the layers (media type, bytes) and the total
images_report() {
	local tag m
	for tag in org esgz esgz-opt zstdchunked; do
		m=$(curl -fs -H "Accept: $MT_MANIFEST" "http://$REG_ADDR/v2/python/manifests/$tag") || continue
		jq -r --arg t "$tag" '"python:\($t)  \([.layers[].size] | add) B in \(.layers | length) layers: " +
			([.layers[] | "\(.mediaType | sub(".*layer.v1.tar\\+?"; "")) \(.size)"] | join(", "))' <<<"$m"
	done
}
