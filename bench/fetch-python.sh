#!/bin/bash
# Bytes on the wire for one file of an eStargz image, against the compressed
# size of the chunks that file needs, and against the whole layer (issue 5).
# Uses the python image of bench/coldstart (run `bench/coldstart setup`
# first), or any REF/LAYER/FILE given.
# usage: bench/fetch-python.sh [REF [LAYER [PATH]]]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
LP=${LAZYPULL:-$SRC/build/cli/lazypull}
REF=${1:-127.0.0.1:5310/python:esgz}
LAYER=${2:-1}
FILE=${3:-/usr/bin/python3.11}
ROOT=$(mktemp -d /tmp/lazypull-fetchbench.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT

# cold: footer + TOC + the file's chunks
"$LP" cat -v --plain-http --root "$ROOT/cold" --layer "$LAYER" "$REF" "$FILE" \
	2>"$ROOT/cold.err" >/dev/null
total=$(sed -n 's/^fetched: \([0-9]*\) requests, \([0-9]*\) bytes/\1 \2/p' "$ROOT/cold.err")
# TOC already cached: the file's chunks alone
"$LP" ls --plain-http --root "$ROOT/warm" --layer "$LAYER" "$REF" >/dev/null
"$LP" cat -v --plain-http --root "$ROOT/warm" --layer "$LAYER" "$REF" "$FILE" \
	2>"$ROOT/cat.err" >/dev/null
need=$(sed -n 's/.* \([0-9]*\) compressed bytes read of \([0-9]*\) in the blob/\1 \2/p' "$ROOT/cat.err")
got=$(sed -n 's/^fetched: \([0-9]*\) requests, \([0-9]*\) bytes/\1 \2/p' "$ROOT/cat.err")
read -r tot_req tot_bytes <<<"$total"
read -r need_bytes blob_bytes <<<"$need"
read -r req bytes <<<"$got"
echo "image $REF layer $LAYER ($blob_bytes bytes), file $FILE"
echo "  cold cat (footer, TOC, chunks): $tot_req requests, $tot_bytes bytes"
echo "  cat with the TOC cached:        $req requests, $bytes bytes fetched for $need_bytes bytes of needed chunks"
awk -v b="$bytes" -v n="$need_bytes" -v l="$blob_bytes" 'BEGIN {
	printf "  fetched / needed:     %.3fx (target <= 2x)\n", b / n
	printf "  fetched / layer:      %.3fx of the whole blob\n", b / l }'
