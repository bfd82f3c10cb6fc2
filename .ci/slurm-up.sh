#!/usr/bin/env bash
# .ci/slurm-up.sh: start a real one-node SLURM cluster on this machine, for `make test-slurm`.
#
#   sudo .ci/slurm-up.sh        # idempotent: only checks when the cluster is already up (to change
#                               # a setting below, run slurm-down.sh first)
#   sudo .ci/slurm-down.sh      # stops what this script started (by pid)
#
# What it does, without systemd (containers, CI runners):
#   1. installs Debian's slurmctld, slurmd, slurm-client and munge when missing (apt-get);
#   2. writes slurm.conf + gres.conf under $AMTL_SLURM_DIR/etc: select/cons_tres, one node = this host
#      with the CPU topology and memory `slurmd -C` reports, $AMTL_SLURM_GPUS fake GPUs declared as
#      gres (each backed by a harmless character device, no GPU needed), one partition
#      $AMTL_SLURM_PARTITION (default "main", the default partition of profiles/slurm);
#   3. starts munged (unless one already answers), slurmctld and slurmd by hand, their pid files under
#      $AMTL_SLURM_DIR/run; waits until `sinfo` shows the node idle; runs one srun smoke test.
#
# Accounting: NONE (no slurmdbd, no MariaDB). Chosen because it is faster and has fewer moving parts:
# slurmdbd would add mariadb-server + slurmdbd (24 more Debian packages, ~240 MB installed) to every
# fresh CI machine, a database bootstrap and two more daemons (ports 3306, 6819) that can fail or
# collide, and it would not make jobs finish sooner: the plugin polls sacct and squeue on the same
# schedule. Measured here (2 CPUs): 12 s from a machine without the packages (apt-get included),
# under 1 s when they are installed. The cost: snakemake-executor-plugin-slurm (>= 1.x) must be told
# to poll job states with squeue instead of its default sacct:
#     --slurm-status-command squeue --slurm-no-account
# (sacct exists as a binary, so the plugin would pick it, get "accounting storage is disabled" and wait
# forever). squeue only remembers a finished job for MinJobAge seconds, and the plugin ignores the squeue
# setting unless MinJobAge >= 3 x --slurm-init-seconds-before-status-checks; its poll interval never
# exceeds 180 s. MinJobAge=3600 below keeps every job of a test run visible to squeue/scontrol, which
# tests/test_slurm.py also uses to check the GPU request of each job. (--slurm-no-account is a no-op
# in plugin 2.8.0: its "not able to get a SLURM account via sacct" warning is harmless.)
#
# Settings (environment; not SLURM_* names, which srun/sbatch would read themselves):
#   AMTL_SLURM_DIR=/tmp/aesthetic-mtl-slurm   configs, state, spool, logs, pid files (no spaces)
#   AMTL_SLURM_PARTITION=main                 partition name (must match profiles/slurm default-resources)
#   AMTL_SLURM_GPUS=1                         fake GPUs on the node (0..6)
#   AMTL_SLURM_TIMEOUT=60                     seconds to wait for each daemon
#   AMTL_SLURM_SMOKE=1                        0: skip the srun smoke test
#
# Gotcha: snakemake-executor-plugin-slurm-jobstep strips every SLURM_* variable (SLURM_CONF too) before
# the job's inner `srun`, so clients inside jobs only find the config at the compiled-in default path:
# /etc/slurm/slurm.conf is therefore a symlink to our generated file (refused if it is a real file).
set -Eeuo pipefail

T0=$EPOCHREALTIME
DIR=${AMTL_SLURM_DIR:-/tmp/aesthetic-mtl-slurm}
PARTITION=${AMTL_SLURM_PARTITION:-main}
GPUS=${AMTL_SLURM_GPUS:-1}
TIMEOUT=${AMTL_SLURM_TIMEOUT:-60}
SMOKE=${AMTL_SLURM_SMOKE:-1}
ETC=$DIR/etc RUN=$DIR/run LOG=$DIR/log
SYS_ETC=/etc/slurm
STARTED=()   # daemons started by this invocation, stopped again if the bring-up fails

elapsed() { awk -v a="$EPOCHREALTIME" -v b="$T0" 'BEGIN { printf "%.1f", a - b }'; }
say() { printf '[slurm-up %5ss] %s\n' "$(elapsed)" "$*"; }

show_logs() {
  local f
  for f in "$LOG/slurmctld.log" "$LOG/slurmd.log"; do
    [[ -s $f ]] && { echo "---- last lines of $f" >&2; tail -n 15 "$f" >&2; }
  done
  return 0
}
rollback() {
  local name pf pid
  for name in "${STARTED[@]}"; do
    pf=$RUN/$name.pid
    [[ -f $pf ]] && pid=$(<"$pf") && kill "$pid" 2>/dev/null && echo "slurm-up: stopped $name ($pid) again" >&2 || true
  done
  return 0
}
die() {
  trap - ERR
  echo "slurm-up: ERROR: $*" >&2
  show_logs
  rollback
  echo "slurm-up: FAILED after $(elapsed) s (state in $DIR)" >&2
  exit 1
}
trap 'die "command failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

# pid_of NAME: the pid in $RUN/NAME.pid when that process is alive and is NAME, else nothing.
pid_of() {
  local pf=$RUN/$1.pid pid
  [[ -f $pf ]] || return 0
  pid=$(<"$pf")
  [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] && echo "$pid"
  return 0
}
# wait_until SECONDS WHAT CMD...: poll CMD every 0.2 s.
wait_until() {
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "timed out after ${secs}s waiting for $what"
}
# wait_daemon NAME SECONDS WHAT CMD...: like wait_until, but fails at once when daemon NAME has died
# (it wrote its pid file, or had 5 s to, and that process is gone: a fatal config error, usually).
wait_daemon() {
  local name=$1 secs=$2 what=$3 i
  shift 3
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    if [[ -z $(pid_of "$name") ]] && { [[ -f $RUN/$name.pid ]] || ((i > 25)); }; then
      die "$name exited during start-up (see $LOG/$name.log)"
    fi
    sleep 0.2
  done
  die "timed out after ${secs}s waiting for $what"
}
node_state() { # idle, mix, alloc, down*, drain, ... or nothing while slurmctld does not answer
  local s
  s=$(sinfo -h -N -n "$HOST" -o %t 2>/dev/null) || s=""
  echo "${s%%$'\n'*}"
}
node_ready() { [[ $(node_state) =~ ^(idle|mix|alloc)$ ]]; }

# ---- 0. preconditions --------------------------------------------------------------------------
[[ $(id -u) == 0 ]] || die "must run as root (starts munged/slurmctld/slurmd, writes $SYS_ETC)"
[[ $DIR == /* && $DIR != *[[:space:]]* ]] || die "AMTL_SLURM_DIR must be an absolute path without spaces: '$DIR'"
[[ $GPUS =~ ^[0-6]$ ]] || die "AMTL_SLURM_GPUS must be 0..6, got '$GPUS'"
[[ $PARTITION =~ ^[A-Za-z0-9_-]+$ ]] || die "bad AMTL_SLURM_PARTITION '$PARTITION'"
HOST=$(hostname -s)

# Already up (started by this script with this state folder)? Then only check and report.
if [[ -n $(pid_of slurmctld) && -n $(pid_of slurmd) ]] && node_ready; then
  say "already up: slurmctld $(pid_of slurmctld), slurmd $(pid_of slurmd), node $HOST $(node_state)"
  sinfo
  say "cluster ready (nothing to do)"
  exit 0
fi

# Another SLURM on this machine (not ours) would fight over the ports and /etc/slurm.
for d in slurmctld slurmd; do
  ours=$(pid_of "$d")
  for p in $(pgrep -x "$d" || true); do
    [[ $p == "$ours" ]] || die "a $d not started by this script is running (pid $p); stop it first"
  done
done

# ---- 1. packages ---------------------------------------------------------------------------------
missing=()
for p in slurmctld slurmd slurm-client munge; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || die "packages missing (${missing[*]}) and no apt-get to install them"
  say "installing ${missing[*]} (apt-get)"
  # DPkg::Lock::Timeout: wait for another apt/dpkg run (unattended upgrades, a parallel job) to end
  apt-get -o DPkg::Lock::Timeout=300 update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" \
    >"/tmp/aesthetic-mtl-slurm-apt.log" 2>&1 || die "apt-get install failed, see /tmp/aesthetic-mtl-slurm-apt.log"
  say "packages installed: $(dpkg-query -W -f='${Version}' slurmctld) (slurm), $(dpkg-query -W -f='${Version}' munge) (munge)"
else
  say "packages present: slurm $(dpkg-query -W -f='${Version}' slurmctld), munge $(dpkg-query -W -f='${Version}' munge)"
fi

# ---- 2. configs ----------------------------------------------------------------------------------
mkdir -p "$ETC" "$RUN" "$LOG" "$DIR/state" "$DIR/spool"
hw=$(slurmd -C | head -n1)   # NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105
topology=$(grep -oE '(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=[0-9]+' <<<"$hw" | tr '\n' ' ')
[[ $topology == *CPUs=* && $topology == *RealMemory=* ]] || die "cannot parse 'slurmd -C': $hw"
gres_node="" gres_types=""
# (AccountingStorageTRES=gres/gpu would need slurmdbd: slurmctld refuses to start with it.)
if ((GPUS > 0)); then gres_node="Gres=gpu:$GPUS" gres_types="GresTypes=gpu"; fi

cat >"$ETC/slurm.conf" <<EOF
# Generated by .ci/slurm-up.sh: a one-node test cluster (no systemd, no cgroups, no accounting).
ClusterName=aesthetic-mtl-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
MpiDefault=none
# No cgroups in containers: track processes by /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
KillWait=5
SchedulerType=sched/backfill
# cons_tres: CPUs, memory and GPUs are all consumable, so jobs share the node like on a real cluster.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1000
# No accounting (see the header of .ci/slurm-up.sh): snakemake polls with squeue, which only sees
# finished jobs for MinJobAge seconds; keep them an hour.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
$gres_types
NodeName=$HOST NodeAddr=127.0.0.1 ${topology}${gres_node} State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

# A GPU without File= is dropped by slurmd ("Removing file-less GPU"), so each fake one points at a
# harmless character device; task/none never restricts device access, jobs get CUDA_VISIBLE_DEVICES.
devs=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty)
{
  echo "# Generated by .ci/slurm-up.sh: $GPUS fake GPU(s), no real device needed"
  echo "AutoDetect=off"
  for ((g = 0; g < GPUS; g++)); do echo "NodeName=$HOST Name=gpu File=${devs[$g]}"; done
} >"$ETC/gres.conf"

mkdir -p "$SYS_ETC"
: >"$RUN/links"
for f in slurm.conf gres.conf; do
  if [[ -e $SYS_ETC/$f && ! -L $SYS_ETC/$f ]]; then
    die "$SYS_ETC/$f is a real file (a site SLURM install?); refusing to replace it"
  fi
  ln -sfn "$ETC/$f" "$SYS_ETC/$f"
  echo "$SYS_ETC/$f" >>"$RUN/links"
done
say "configs in $ETC (linked from $SYS_ETC): node $HOST ${topology}gpus=$GPUS partition=$PARTITION"

# ---- 3. munge ------------------------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
  mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
fi
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "munged already answering; reusing it"
else
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge
  chmod 0755 /run/munge
  rm -f "$RUN/munged.pid"
  # --force: take over a stale socket left by a killed munged
  runuser -u munge -- /usr/sbin/munged --force --pid-file=/run/munge/munged.pid
  STARTED+=(munged)
  wait_until "$TIMEOUT" "munged" bash -c 'munge -n | unmunge'
  cp /run/munge/munged.pid "$RUN/munged.pid"
  say "munged up (pid $(<"$RUN/munged.pid"))"
fi

# ---- 4. slurmctld, slurmd ------------------------------------------------------------------------
if [[ -z $(pid_of slurmctld) ]]; then
  rm -f "$RUN/slurmctld.pid"
  /usr/sbin/slurmctld -i || die "slurmctld did not start"
  STARTED+=(slurmctld)
fi
wait_daemon slurmctld "$TIMEOUT" "slurmctld to answer 'scontrol ping'" bash -c 'scontrol ping | grep -q "is UP"'
[[ -n $(pid_of slurmctld) ]] || die "slurmctld is not running"
say "slurmctld up (pid $(pid_of slurmctld))"

if [[ -z $(pid_of slurmd) ]]; then
  rm -f "$RUN/slurmd.pid"
  /usr/sbin/slurmd || die "slurmd did not start"
  STARTED+=(slurmd)
fi
registered() { [[ -n $(node_state) && $(node_state) != unk* ]]; }
wait_daemon slurmd "$TIMEOUT" "slurmd to register node $HOST" registered
# A node left down/drained by an earlier run's saved state is brought back.
if [[ $(node_state) =~ ^(down|drain|drng|fail) ]]; then
  scontrol update nodename="$HOST" state=resume || true
fi
for ((i = 0; i < TIMEOUT * 5; i++)); do node_ready && break; sleep 0.2; done
node_ready || die "node $HOST is '$(node_state)', not idle: $(scontrol show node "$HOST" | grep -o 'Reason=.*' || true)"
say "slurmd up (pid $(pid_of slurmd)); node $HOST is $(node_state)"

# ---- 5. smoke test: one job with a GPU through the real scheduler -------------------------------
if [[ $SMOKE == 1 ]]; then
  if ((GPUS > 0)); then
    out=$(timeout 60 srun -p "$PARTITION" -N1 -n1 --mem=50 -t 1 --gpus=1 printenv CUDA_VISIBLE_DEVICES) ||
      die "smoke test 'srun --gpus=1' failed"
    say "smoke test: srun --gpus=1 ran with CUDA_VISIBLE_DEVICES=$out"
  else
    timeout 60 srun -p "$PARTITION" -N1 -n1 --mem=50 -t 1 true || die "smoke test 'srun true' failed"
    say "smoke test: srun ok"
  fi
fi

sinfo -o '%P %a %D %t %c %m %G'
say "cluster ready in $(elapsed) s. Snakemake needs: --profile profiles/slurm --slurm-status-command squeue --slurm-no-account"
