#!/bin/bash
# Builds and runs the Go tests in tests/snapshotter/go offline, in GOPATH
# mode, against Debian's containerd and grpc-go sources.  Exit 77 (SKIP)
# when Go or those sources are not installed.
#   usage: run-go.sh WORKDIR SNAPSHOTTER-BINARY [go test args…]
set -euo pipefail
work=$1 bin=$2
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
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root (mounts)"
	exit 77
fi
mkdir -p "$work/gopath/src"
ln -sfn "$here/go" "$work/gopath/src/lazypull"
export GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH="$work/gopath:$gocode"
export GOCACHE=${GOCACHE:-$work/gocache}
export LAZYPULL_SNAPSHOTTER=$bin
cd "$work/gopath/src/lazypull"
exec go test -count=1 "$@"
