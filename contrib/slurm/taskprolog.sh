#!/bin/bash
# SLURM TaskProlog (slurm.conf: TaskProlog=/etc/cachefs/taskprolog.sh):
# runs as the job's user before each task (the batch script included), and
# sets CACHEFS_MOUNTPOINT and the site's CACHEFS_ENV variables to the mount
# that prolog.sh made. SLURM reads "export NAME=VALUE" lines from its
# stdout. Nothing is set when the mount is not there.
set -u
here=$(dirname "$(readlink -f "$0")")
# shellcheck source=common.sh
. "$here/common.sh"
mounted_cachefs "$mnt" || exit 0
echo "export CACHEFS_MOUNTPOINT=$mnt"
for name in $CACHEFS_ENV; do
  case "$name" in
    [A-Za-z_]*) echo "export $name=$mnt" ;;
  esac
done
exit 0
