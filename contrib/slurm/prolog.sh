#!/bin/bash
# SLURM Prolog (slurm.conf: Prolog=/etc/cachefs/prolog.sh): runs as root on
# each node of a job before it starts, and mounts CACHEFS_SOURCE for the
# job's user at CACHEFS_JOB_BASE/JOBID/mnt, with the snapshot index if one
# exists. The daemon runs as the user, not root, and survives the prologue
# (it runs in its own session); epilog.sh unmounts it.
#
# A failed mount does not fail the node unless CACHEFS_STRICT=1: the job
# runs without it, and taskprolog.sh then sets nothing.
set -u
here=$(dirname "$(readlink -f "$0")")
# shellcheck source=common.sh
. "$here/common.sh"
[ -n "$CACHEFS_SOURCE" ] || exit 0

fail() {
  say "$*"
  [ "$CACHEFS_STRICT" = 1 ] && exit 1
  exit 0
}

case "${SLURM_JOB_UID:-}" in
  '' | *[!0-9]*) fail "no usable SLURM_JOB_UID" ;;
esac

# The base holds every job's directory: root's alone, not a link, so that
# no user can plant a job's directory or redirect it.
if [ ! -e "$CACHEFS_JOB_BASE" ]; then
  mkdir -p -m 0755 "$CACHEFS_JOB_BASE" || fail "cannot create $CACHEFS_JOB_BASE"
fi
if [ -L "$CACHEFS_JOB_BASE" ] || [ ! -d "$CACHEFS_JOB_BASE" ] ||
  [ "$(stat -c %u "$CACHEFS_JOB_BASE")" != 0 ] ||
  [ $((0$(stat -c %a "$CACHEFS_JOB_BASE") & 022)) -ne 0 ]; then
  fail "$CACHEFS_JOB_BASE must be a directory owned by root and writable by root only"
fi

# A directory left by an earlier job with this id (a node that crashed
# before its epilogue) goes first; epilog.sh knows how.
if [ -e "$jobdir" ] || [ -L "$jobdir" ]; then
  CACHEFS_QUIET=1 "$here/epilog.sh"
fi
gid=${SLURM_JOB_GID:-$(id -g "$SLURM_JOB_UID")}
mkdir -m 0700 "$jobdir" && chown "$SLURM_JOB_UID:$gid" "$jobdir" || fail "cannot create $jobdir"

args=(mount "$CACHEFS_SOURCE" "$mnt")
if [ -n "$CACHEFS_INDEX" ] && [ -f "$CACHEFS_INDEX" ]; then
  args+=(--index "$CACHEFS_INDEX")
fi
# shellcheck disable=SC2206 # the site's flags are meant to be word-split
args+=($CACHEFS_MOUNT_FLAGS)
# cachefs mount returns once the mount serves, the daemon in the background.
if ! out=$(as_user "$CACHEFS" "${args[@]}" 2>&1); then
  fail "mount failed: $out"
fi
say "$out"
exit 0
