# shellcheck shell=bash
# A single-node Slurm cluster in one directory, for tests (sourced, not run). Needs root and the Debian
# packages slurm-wlm and munge (scripts/install-deps); no systemd: munged, slurmctld and slurmd run as plain
# processes with everything (key, socket, config, state, spool, logs) under the directory, on free 127.0.0.1
# ports. Usage:
#   source slurm_local.sh
#   slurm_local_up DIR      # starts the cluster; exports SLURM_CONF (sbatch, squeue, scontrol use it)
#   slurm_local_down DIR    # cancels jobs, stops the daemons and every process the cluster started
# Every process started here carries FERRY_SLURM_LOCAL=DIR in its environment (jobs inherit it through
# sbatch's --export=ALL) or runs in a directory under DIR (slurmstepd), so slurm_local_down finds exactly
# those, also job steps that outlive a killed slurmd, and nothing else on the machine.

slurm_local_free_ports() {  # prints N free loopback TCP ports
  python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

slurm_local_write_conf() {  # DIR CTLD_PORT SLURMD_PORT
  local dir=$1 host addr comm=""
  host=$(hostname -s)
  # NoCtldInAddrAny/NoInAddrAny make the daemons listen on the address this machine's name resolves to
  # instead of on every interface: used when that address is a loopback one (127.0.0.1 here, 127.0.1.1 on
  # a stock Debian), which the clients then use too. Else the daemons listen on every interface and the
  # clients still connect over 127.0.0.1.
  addr=$(getent ahostsv4 "$(hostname)" 2>/dev/null | awk 'NR == 1 {print $1}')
  if [ "${addr#127.}" != "$addr" ]; then
    comm="CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
  else
    echo "slurm_local: $(hostname) resolves to '${addr:-nothing}', not loopback: the daemons listen on all interfaces"
    addr=127.0.0.1
  fi
  # - SlurmctldHost/NodeHostname: the daemons check them against this machine's name.
  # - cred_expire=10: a requeued job may start again cred_expire+1 s after its requeue (default 120 s).
  # - proctrack/linuxproc, task/none: no cgroups needed (containers, no systemd).
  # - config_overrides + CPUs=4: four array tasks run at once even on a 2-core machine.
  cat >"$dir/slurm.conf" <<EOF
ClusterName=ferrylocal
SlurmctldHost=$host($addr)
SlurmctldPort=$2
SlurmdPort=$3
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.sock,cred_expire=10
CredType=cred/munge
$comm
StateSaveLocation=$dir/ctld-state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=600
KillWait=5
NodeName=ferrynode NodeAddr=$addr NodeHostname=$host CPUs=4 RealMemory=1000 State=UNKNOWN
PartitionName=ferry Nodes=ferrynode Default=YES MaxTime=INFINITE State=UP
EOF
  # Read only by cgroup plugins, which this configuration does not load; present so that a slurmd that
  # looks for it finds a valid one.
  printf 'CgroupPlugin=autodetect\nCgroupAutomount=no\n' >"$dir/cgroup.conf"
}

# slurm_local_wait SECONDS COMMAND...: runs COMMAND every 0.2 s until it succeeds; 1 after SECONDS.
slurm_local_wait() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

slurm_local_node_idle() { [ "$(sinfo -h -n ferrynode -o %t 2>/dev/null)" = idle ]; }

slurm_local_up() {
  local dir=$1 ports
  if [ "$(id -u)" -ne 0 ]; then echo "slurm_local_up: needs root (slurmd starts jobs as their user)"; return 1; fi
  local b
  export PATH=$PATH:/usr/sbin  # munged, slurmctld, slurmd
  for b in munged munge slurmctld slurmd sbatch scontrol squeue sinfo; do
    command -v "$b" >/dev/null ||
      { echo "slurm_local_up: $b not found (scripts/install-deps installs slurm-wlm and munge)"; return 1; }
  done
  # munged refuses a socket in a directory that others cannot traverse (DIR and every directory above it),
  # and a key others can read.
  mkdir -p "$dir/munge" "$dir/ctld-state" "$dir/spool" "$dir/log"
  chmod 755 "$dir" "$dir/munge"
  local up=$dir
  while up=$(dirname "$up") && [ "$up" != / ]; do
    [ "$(($(stat -c '%#a' "$up") & 1))" = 1 ] ||
      { echo "slurm_local_up: $up is not traversable by others (o+x); munged refuses its socket below it"; return 1; }
  done
  head -c 1024 /dev/urandom >"$dir/munge/munge.key"
  chmod 400 "$dir/munge/munge.key"
  export FERRY_SLURM_LOCAL=$dir
  munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.sock" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" ||
    { echo "slurm_local_up: munged failed: $(tail -3 "$dir/log/munged.log" 2>/dev/null)"; return 1; }
  ports=$(slurm_local_free_ports 2)
  # shellcheck disable=SC2086
  slurm_local_write_conf "$dir" $ports
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -i >"$dir/log/slurmctld.out" 2>&1 ||
    { echo "slurm_local_up: slurmctld failed: $(tail -5 "$dir/log/slurmctld.out" "$dir/log/slurmctld.log")"; return 1; }
  slurm_local_wait 30 scontrol ping ||
    { echo "slurm_local_up: slurmctld does not answer: $(tail -5 "$dir/log/slurmctld.log")"; return 1; }
  slurmd -N ferrynode >"$dir/log/slurmd.out" 2>&1 ||
    { echo "slurm_local_up: slurmd failed: $(tail -5 "$dir/log/slurmd.out" "$dir/log/slurmd.log")"; return 1; }
  slurm_local_wait 60 slurm_local_node_idle ||
    { echo "slurm_local_up: node not idle: $(sinfo -N -l 2>&1; tail -5 "$dir/log/slurmd.log")"; return 1; }
  # A watchdog stops the cluster if the shell that started it dies without slurm_local_down (SIGKILL, e.g.
  # a test timeout): the daemons must not outlive it.
  local owner=$$
  ( trap '' INT TERM
    while kill -0 "$owner" 2>/dev/null; do sleep 1; done
    slurm_local_down "$dir" ) </dev/null >/dev/null 2>&1 &
  echo $! >"$dir/watchdog.pid"
}

# Every process whose environment has FERRY_SLURM_LOCAL=DIR or whose working directory is under DIR
# (slurmstepd clears its environment and runs in the log directory), but this shell.
slurm_local_pids() {
  local dir=$1 p cwd
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = $$ ] && continue
    cwd=$(readlink "/proc/$p/cwd" 2>/dev/null)
    if [ "${cwd#"$dir"/}" != "$cwd" ] ||
      { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qxF "FERRY_SLURM_LOCAL=$dir"; then
      echo "$p"
    fi
  done
}

slurm_local_down() {
  local dir=$1 pids f
  [ -f "$dir/slurm.conf" ] || return 0
  if [ -f "$dir/watchdog.pid" ] && [ "$(cat "$dir/watchdog.pid")" != "${BASHPID:-}" ]; then
    kill "$(cat "$dir/watchdog.pid")" 2>/dev/null
  fi
  SLURM_CONF=$dir/slurm.conf timeout 10 scancel --quiet --partition=ferry 2>/dev/null
  for f in slurmd.pid slurmctld.pid munge/munged.pid; do
    [ -f "$dir/$f" ] && kill "$(cat "$dir/$f")" 2>/dev/null
  done
  # Whatever is left of the cluster's processes (job steps, jobs, a daemon that did not stop): KILL,
  # except the shell running this function and its own subshells (same environment, not ours to kill).
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(slurm_local_pids "$dir" | grep -vxF -e "$$" -e "${BASHPID:-$$}")
    [ -n "$pids" ] || break
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null
    sleep 0.3
  done
}
