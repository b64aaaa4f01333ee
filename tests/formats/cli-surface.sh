#!/bin/bash
# cli-surface: the lazypull command line on local inputs (--part help:
# every command's --help and option errors; --part estargz: check
# --toc-digest and cat -v; --part rafs: the nydus RAFS vectors).
# Env: LAZYPULL, SRCDIR, WORKDIR (see fmtlib.py). Exit 77 = skipped.
# Go is optional (--part estargz then uses the checked-in blobs only).
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }
exec python3 "$(dirname "$0")/cli_surface.py" "$@"
