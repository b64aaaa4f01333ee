#!/bin/bash
# Builds and runs the Go pieces of tests/snapshotter/go offline, in GOPATH
# mode, against Debian's containerd and grpc-go sources.  Exit 77 (SKIP)
# when Go or those sources are not installed.
#   run-go.sh test  WORKDIR SNAPSHOTTER-BINARY [go test args…]
#   run-go.sh build WORKDIR OUTPUT [PROGRAM] (snapctl, or go/PROGRAM: refproxy
#                                            for bench/snapshotter-stat.sh)
set -euo pipefail
mode=$1 work=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
gocode=/usr/share/gocode
if ! command -v go >/dev/null ||
	[ ! -d $gocode/src/github.com/containerd/containerd/snapshots/testsuite ] ||
	[ ! -d $gocode/src/google.golang.org/grpc ]; then
	echo "SKIP: needs golang-go, golang-github-containerd-containerd-dev" \
		"and golang-google-grpc-dev"
	exit 77
fi
mkdir -p "$work/gopath/src"
ln -sfn "$here/go" "$work/gopath/src/lazypull"
export GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH="$work/gopath:$gocode"
export GOCACHE=${GOCACHE:-$work/gocache}
cd "$work/gopath/src/lazypull"
case $mode in
build)
	exec go build -o "$1" "lazypull/${2:-snapctl}" ;;
test)
	if [ "$(id -u)" != 0 ]; then
		echo "SKIP: needs root (the conformance suite mounts)"
		exit 77
	fi
	export LAZYPULL_SNAPSHOTTER=$1
	shift
	exec go test -count=1 "$@" ./snaptest ;;
*)
	echo "usage: $0 test|build …" >&2
	exit 2 ;;
esac
