#!/usr/bin/env bash
# .ci/slurm-down.sh: stop the one-node SLURM cluster started by .ci/slurm-up.sh.
#
#   sudo .ci/slurm-down.sh           # cancel its jobs, stop slurmd, slurmctld and (if it started it) munged
#   sudo .ci/slurm-down.sh --purge   # ... and delete $AMTL_SLURM_DIR (configs, state, logs)
#
# Only processes whose pid files slurm-up.sh wrote under $AMTL_SLURM_DIR/run are signalled, and only
# when /proc says that pid still is that daemon. Idempotent: nothing running is not an error.
# Removes the /etc/slurm symlinks slurm-up.sh made (only while they still point into the state folder).
set -Euo pipefail

T0=$EPOCHREALTIME
DIR=${AMTL_SLURM_DIR:-/tmp/aesthetic-mtl-slurm}
RUN=$DIR/run
PURGE=0
case ${1:-} in
  --purge) PURGE=1 ;;
  "") ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac
elapsed() { awk -v a="$EPOCHREALTIME" -v b="$T0" 'BEGIN { printf "%.1f", a - b }'; }
say() { printf '[slurm-down %5ss] %s\n' "$(elapsed)" "$*"; }
FAILED=0

pid_of() { # NAME -> pid from $RUN/NAME.pid if that process is alive and is NAME
  local pf=$RUN/$1.pid pid
  [[ -f $pf ]] || return 0
  pid=$(<"$pf")
  [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] && echo "$pid"
  return 0
}

stop() { # NAME: TERM, wait up to 15 s, then KILL
  local name=$1 pid i
  pid=$(pid_of "$name")
  if [[ -z $pid ]]; then
    say "$name: not running"
    rm -f "$RUN/$name.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 75; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name ($pid) ignored TERM for 15 s; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  if kill -0 "$pid" 2>/dev/null; then
    echo "slurm-down: ERROR: could not stop $name (pid $pid)" >&2
    FAILED=1
  else
    say "stopped $name ($pid)"
    rm -f "$RUN/$name.pid"
  fi
}

if [[ ! -d $RUN ]]; then
  say "no state folder $RUN: nothing was started by slurm-up.sh with AMTL_SLURM_DIR=$DIR"
  exit 0
fi
[[ $(id -u) == 0 ]] || { echo "slurm-down: ERROR: must run as root" >&2; exit 1; }

# Jobs first, so that no slurmstepd outlives its slurmd (all jobs of this private test cluster).
if [[ -n $(pid_of slurmctld) ]]; then
  jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
  if [[ -n ${jobs// /} ]]; then
    say "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      [[ -z $(squeue -h -t running,completing -o %i 2>/dev/null) ]] && break
      sleep 0.2
    done
  fi
fi

stop slurmd
stop slurmctld
stop munged   # only present when slurm-up.sh started munged itself

if [[ -f $RUN/links ]]; then
  while read -r link; do
    if [[ -L $link && $(readlink "$link") == "$DIR"/* ]]; then
      rm -f "$link" && say "removed symlink $link"
    fi
  done <"$RUN/links"
  rm -f "$RUN/links"
fi

if ((PURGE)); then
  if ((FAILED)); then
    echo "slurm-down: not purging $DIR: a daemon is still running" >&2
  else
    rm -rf "$DIR" && say "purged $DIR"
  fi
fi

if ((FAILED)); then
  echo "slurm-down: FAILED after $(elapsed) s" >&2
  exit 1
fi
say "cluster down"
