#!/bin/sh
# Maintainer step: re-vendor containerd's snapshots API protos with the gogo
# options stripped and the imports flattened (meson generator outputs cannot
# live in subdirectories; the wire format and C names are unchanged).
#   apt-get install golang-github-containerd-containerd-dev libprotobuf-dev
#   sh snapshotter/proto/vendor.sh    # then rebuild; protoc-c runs at build
set -eu
C=${CONTAINERD_SRC:-/usr/share/gocode/src/github.com/containerd/containerd}
G=${PROTOBUF_INCLUDE:-/usr/include/google/protobuf}
out=$(dirname "$0")
for f in "$C/api/services/snapshots/v1/snapshots.proto" \
	 "$C/api/types/mount.proto" "$G/empty.proto" "$G/field_mask.proto" \
	 "$G/timestamp.proto"; do
	sed -e '/^import weak "gogoproto\/gogo.proto";/d' \
	    -e '/^[[:space:]]*option (gogoproto\.[A-Za-z_]*)[[:space:]]*=.*;/d' \
	    -e 's/[[:space:]]*\[(gogoproto\.[^]]*\]//g' \
	    -e 's#^import "github.com/containerd/containerd/api/types/\([a-z_]*\.proto\)";#import "\1";#' \
	    -e 's#^import "google/protobuf/\([a-z_]*\.proto\)";#import "\1";#' \
	    "$f" > "$out/$(basename "$f")"
done
if grep -n 'gogoproto\|^import "[^"]*/' "$out"/*.proto; then
	echo "vendor.sh: unstripped gogo options or nested imports left" >&2
	exit 1
fi
echo "vendored: $(cd "$out" && ls ./*.proto | tr '\n' ' ')"
