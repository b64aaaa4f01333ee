#!/bin/bash
# Builds the reference blob generator (tests/refgen, Go, using Debian's
# estargz library) offline in GOPATH mode.  Usage: build.sh OUTDIR
# Produces OUTDIR/refgen.
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
GOCODE=${GOPATH_EXTRA:-/usr/share/gocode}
mkdir -p "$OUT/gopath/src"
ln -sfn "$SRC" "$OUT/gopath/src/lazypull-refgen"
cd "$OUT/gopath/src/lazypull-refgen"
GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH="$OUT/gopath:$GOCODE" \
	GOCACHE="$OUT/gocache" go build -o "$OUT/refgen" .
echo "$OUT/refgen"
