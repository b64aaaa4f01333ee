#!/bin/bash
# Installs every build and test dependency from Debian 12's packages and
# builds lazypull.  Idempotent; run as root.  Sourced or executed by
# tests/demo.sh and tests/all.sh.
set -euo pipefail

LP_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LP_BUILD=${LP_BUILD:-$LP_SRC/build}

PKGS=(
	# build
	build-essential meson ninja-build pkg-config clang libclang-rt-14-dev
	libjansson-dev libzstd-dev zlib1g-dev libdeflate-dev liblz4-dev libssl-dev
	libfuse3-dev libcurl4-openssl-dev libcmocka-dev
	libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler liblmdb-dev
	# tools the tests drive
	fuse3 zstd gzip tar jq python3 b3sum attr apache2-utils busybox-static
	golang-go golang-github-containerd-stargz-snapshotter-dev
	golang-github-containerd-containerd-dev
	containerd runc stargz-snapshotter docker-registry skopeo umoci debootstrap
	# snapshotter tests: grpc-go (containerd's conformance suite) and
	# python3-grpcio (a second client stack) clients, curl, unshare
	golang-google-grpc-dev python3-grpcio python3-protobuf protobuf-compiler
	curl util-linux
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "setup: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -f "$LP_BUILD/build.ninja" ]; then
	meson setup "$LP_BUILD" "$LP_SRC" >"$LP_BUILD.setup.log" 2>&1 || {
		cat "$LP_BUILD.setup.log"
		rm -rf "$LP_BUILD"
		exit 1
	}
fi
ninja -C "$LP_BUILD" >"$LP_BUILD.ninja.log" 2>&1 || {
	grep -E -B2 -A12 'FAILED|error' "$LP_BUILD.ninja.log" | head -80
	exit 1
}
echo "setup: built $LP_BUILD/cli/lazypull"
