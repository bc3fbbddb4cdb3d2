#!/bin/bash
# SLURM Epilog (slurm.conf: Epilog=/etc/cachefs/epilog.sh): runs as root on
# each node after a job ends, whether it completed, failed, was cancelled or
# hit its time limit. Unmounts the job's mount (waiting for the daemon, so
# its figures land in slurmd's log), lazily if files are still open, cleans
# a dead mount, stops a daemon that outlived all that, and removes the
# job's directory.
#
# It always exits 0: a non-zero epilogue drains the node, and no state of
# one job's mount is worth taking a node from the next job.
set -u
here=$(dirname "$(readlink -f "$0")")
# shellcheck source=common.sh
. "$here/common.sh"
# Not ours to judge: a job directory that is not a directory (a link) is
# removed as a name, never followed.
if [ -L "$jobdir" ] || { [ -e "$jobdir" ] && [ ! -d "$jobdir" ]; }; then
  rm -f "$jobdir"
  exit 0
fi
[ -d "$jobdir" ] || exit 0

daemon_pid() {
  local f
  for f in "$jobdir"/run/*.json; do
    [ -f "$f" ] && sed -n 's/^ *"pid": *\([0-9][0-9]*\),*$/\1/p' "$f"
  done
}
pids=$(daemon_pid)

if mounted_cachefs "$mnt"; then
  # The daemon and its records are the user's: unmount as the user, who
  # owns the job directory (maybe an earlier job's, when prolog.sh cleans).
  SLURM_JOB_UID=$(stat -c %u "$jobdir")
  SLURM_JOB_GID=$(stat -c %g "$jobdir")
  out=$(as_user timeout 45 "$CACHEFS" unmount --timeout 30s "$mnt" 2>&1)
  case $? in
    8 | 10 | 124) out=$(as_user timeout 15 "$CACHEFS" unmount --lazy "$mnt" 2>&1) ;;
  esac
  [ "${CACHEFS_QUIET:-0}" = 1 ] || say "$out"
fi
# Whatever is still mounted there (a dead mount cachefs could not reach,
# a mount of something else) is detached by root.
if mounted "$mnt"; then
  umount -l "$mnt" 2>/dev/null || say "cannot detach $mnt"
fi
# A daemon still running once its mount is gone is stopped; the cache is
# consistent at any instant, so SIGKILL after a short wait is safe.
# The records are the user's to write: a pid there is trusted only for a
# cachefs process of that same user.
owner=$(stat -c %u "$jobdir")
for pid in $pids; do
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
  case "$exe" in *cachefs*) ;; *) continue ;; esac
  [ "$(stat -c %u "/proc/$pid" 2>/dev/null)" = "$owner" ] || continue
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
done
# --one-file-system: never descend into a mount that is somehow still there.
rm -rf --one-file-system "$jobdir" 2>/dev/null || say "cannot remove $jobdir"
exit 0
