#!/bin/bash
# conformance: one layer in every format gives the same model dump.
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }
command -v go >/dev/null || { echo "SKIP: go missing (golang-go)"; exit 77; }
exec python3 "$(dirname "$0")/conformance.py" "$@"
