# Shared by prolog.sh, taskprolog.sh and epilog.sh: the site settings and
# the per-job paths. Sourced, not run.

conf=${CACHEFS_SLURM_CONF:-/etc/cachefs/slurm.conf}
CACHEFS=cachefs
CACHEFS_SOURCE=
CACHEFS_INDEX=
CACHEFS_JOB_BASE=/var/tmp/cachefs-slurm
CACHEFS_ENV=
CACHEFS_MOUNT_FLAGS=
CACHEFS_STRICT=0
# shellcheck source=/dev/null
[ -r "$conf" ] && . "$conf"

say() { echo "cachefs-slurm[${SLURM_JOB_ID:-?}]: $*" >&2; }

# The job id names a directory: it must be a number.
case "${SLURM_JOB_ID:-}" in
  '' | *[!0-9]*) say "no usable SLURM_JOB_ID"; exit 0 ;;
esac
jobdir=$CACHEFS_JOB_BASE/$SLURM_JOB_ID
mnt=$jobdir/mnt

# mounted_cachefs PATH: whether PATH is a cachefs mount, from the mount
# table alone: a stat of a dead FUSE mount fails (ENOTCONN) or hangs.
mounted_cachefs() {
  awk -v p="$1" '$5 == p && $0 ~ / - fuse\.cachefs / { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# mounted PATH: whether anything is mounted at PATH.
mounted() {
  awk -v p="$1" '$5 == p { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# as_user CMD...: run CMD as the job's user with the job's cachefs
# environment (records and default cache under the per-job directory).
as_user() {
  local gid=${SLURM_JOB_GID:-}
  [ -n "$gid" ] || gid=$(id -g "$SLURM_JOB_UID")
  setpriv --reuid="$SLURM_JOB_UID" --regid="$gid" --init-groups --reset-env \
    env TMPDIR="$jobdir" CACHEFS_RUNTIME_DIR="$jobdir/run" XDG_RUNTIME_DIR= \
    PATH=/usr/local/bin:/usr/bin:/bin "$@"
}
