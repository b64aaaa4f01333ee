#!/bin/bash
# bad-input: lazypull on corrupted, truncated and hostile blobs must fail
# cleanly (exit 1..127, a message, no wrong bytes, within 20 s).
# Env: LAZYPULL, SRCDIR, WORKDIR (see fmtlib.py). Exit 77 = skipped.
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }
command -v go >/dev/null || { echo "SKIP: go missing (golang-go)"; exit 77; }
exec python3 "$(dirname "$0")/bad_input.py" "$@"
