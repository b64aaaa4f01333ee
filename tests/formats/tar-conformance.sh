#!/bin/bash
# tar-conformance: lazypull ls/cat/check/inspect on reference eStargz,
# legacy stargz and zstd:chunked blobs (written by the upstream Go library via
# tests/refgen) must match a real `tar -xp` of the same layers.
# Env: LAZYPULL, SRCDIR, WORKDIR (see fmtlib.py). Exit 77 = skipped.
# Extra args go to tar_conformance.py (--self-test, --only SUBSTRING).
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }
command -v go >/dev/null || { echo "SKIP: go missing (golang-go)"; exit 77; }
exec python3 "$(dirname "$0")/tar_conformance.py" "$@"
