#!/usr/bin/env bash
# A one-node SLURM cluster on localhost for the integration tests, from
# Debian's packages only.
#
#   slurm.sh install          install munge, slurmctld, slurmd, the clients
#   slurm.sh start DIR [KEY=VALUE...]
#                             write DIR/slurm.conf (KEY=VALUE lines are added
#                             to it: Prolog=..., ProctrackType=...,
#                             JobContainerType=job_container/tmpfs), start
#                             munged, slurmctld and slurmd with everything
#                             under DIR, and wait until the node is idle;
#                             clients then need SLURM_CONF=DIR/slurm.conf
#   slurm.sh stop DIR         stop the three daemons started in DIR
#
# Nothing outside DIR is touched: no system munge key, no /etc/slurm, no
# service manager, so a machine's own SLURM (if any) is left alone.
set -euo pipefail

install() {
  local need=()
  command -v munged >/dev/null 2>&1 || need+=(munge)
  command -v slurmctld >/dev/null 2>&1 || need+=(slurmctld)
  command -v slurmd >/dev/null 2>&1 || need+=(slurmd)
  command -v sbatch >/dev/null 2>&1 || need+=(slurm-wlm)
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "slurm.sh: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
    exit 1
  fi
  echo "slurm.sh: installing ${need[*]}"
  apt-get update -qq
  # Services the packages may start are not used: the tests run their own
  # daemons, with their own configuration, ports and munge socket.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

# freeport prints a TCP port nothing listens on.
freeport() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
  local dir=$1; shift
  mkdir -p "$dir"/{state,spool,log}
  chmod 0755 "$dir"
  # munged insists on a private key and on owning its directories.
  dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
  chmod 0600 "$dir/munge.key"
  munged --force --key-file="$dir/munge.key" --socket="$dir/munge.sock" \
    --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge.seed"

  local host cpus ctl_port d_port
  host=$(hostname -s)
  cpus=$(nproc)
  ctl_port=$(freeport)
  d_port=$(freeport)
  cat >"$dir/slurm.conf" <<EOF
ClusterName=cachefs-ci
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctl_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmdDebug=debug
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
KillWait=5
OverTimeLimit=0
MinJobAge=600
InactiveLimit=0
SlurmdTimeout=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  local kv
  for kv in "$@"; do echo "$kv" >>"$dir/slurm.conf"; done
  grep -q '^ProctrackType=' "$dir/slurm.conf" || echo "ProctrackType=proctrack/linuxproc" >>"$dir/slurm.conf"
  # job_container/tmpfs gives each job a private /tmp made under BasePath;
  # DIR must then lie outside /tmp, or the job cannot see its own spool.
  if grep -q '^JobContainerType=job_container/tmpfs' "$dir/slurm.conf"; then
    mkdir -p -m 0700 "$dir/jc"
    printf 'AutoBasePath=true\nBasePath=%s/jc\n' "$dir" >"$dir/job_container.conf"
  fi
  # cgroup.conf is read only by the cgroup plugins; one beside slurm.conf
  # keeps the machine's own out of the way.
  printf 'CgroupAutomount=yes\nConstrainCores=no\nConstrainRAMSpace=no\n' >"$dir/cgroup.conf"

  export SLURM_CONF=$dir/slurm.conf
  slurmctld -i -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF" -N "$host"
  local i
  for i in $(seq 1 300); do
    if sinfo -h -N -o '%t' 2>/dev/null | grep -qx 'idle'; then
      echo "slurm.sh: one-node cluster up in $dir (node $host, $cpus CPUs)"
      return 0
    fi
    sleep 0.1
  done
  echo "slurm.sh: the node did not become idle; logs in $dir/log" >&2
  sinfo -N >&2 || true
  tail -n 20 "$dir"/log/*.log >&2 || true
  stop "$dir"
  exit 1
}

stop() {
  local dir=$1 f pid i
  for f in slurmd slurmctld munged; do
    [ -s "$dir/$f.pid" ] || continue
    pid=$(cat "$dir/$f.pid")
    kill -TERM "$pid" 2>/dev/null || continue
    for i in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

case "${1:-}" in
  install) install ;;
  start) [ $# -ge 2 ] || { echo "usage: slurm.sh start DIR [KEY=VALUE...]" >&2; exit 2; }; shift; start "$@" ;;
  stop) [ $# -eq 2 ] || { echo "usage: slurm.sh stop DIR" >&2; exit 2; }; stop "$2" ;;
  *) echo "usage: slurm.sh install | start DIR [KEY=VALUE...] | stop DIR" >&2; exit 2 ;;
esac
