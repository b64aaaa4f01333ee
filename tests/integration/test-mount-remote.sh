#!/bin/bash
# test-mount-remote: `lazypull mount REF` on images pushed to a real
# docker-registry (eStargz, zstd:chunked, plain gzip, mixed, nydus RAFS):
# trees against tar -x, --layer mounts under overlay, concurrent random
# reads with and without injected faults, landmark / RAFS-table prefetch and
# --prefetch-all.  See mount_remote.py.
# Env: LAZYPULL, SRCDIR, WORKDIR.  Exit 77 = skipped (no root, no /dev/fuse,
# no docker-registry or skopeo).
set -u
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (mount, overlay)"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: /dev/fuse missing"; exit 77; }
grep -qw fuse /proc/filesystems || { echo "SKIP: no fuse in the kernel"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }
command -v tar >/dev/null || { echo "SKIP: tar missing"; exit 77; }
[ -n "${WORKDIR:-}" ] || { echo "WORKDIR is not set"; exit 1; }

# Whatever happens, nothing we mounted or started stays behind: unmount
# every mount under WORKDIR (deepest first), stop the daemons whose pid
# files we wrote and the registry we started.
cleanup() {
	local work mp pid pf
	work=$(realpath -m "$WORKDIR")
	awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r mp; do
		umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null
	done
	for pf in "$work"/logs/*.pid; do
		[ -f "$pf" ] || continue
		pid=$(cat "$pf" 2>/dev/null) || continue
		case "$pid" in '' | *[!0-9]*) continue ;; esac
		if grep -qa lazypull "/proc/$pid/cmdline" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null
		fi
	done
	pf="$work/logs/registry.pidfile"
	if [ -f "$pf" ]; then
		pid=$(cat "$pf" 2>/dev/null)
		case "$pid" in '' | *[!0-9]*) ;; *)
			grep -qa docker-registry "/proc/$pid/cmdline" 2>/dev/null &&
				kill -TERM "$pid" 2>/dev/null ;;
		esac
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 "$(dirname "$0")/mount_remote.py" "$@"
