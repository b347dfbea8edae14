#!/usr/bin/env bash
# Ferry on a real Slurm cluster: a single-node cluster (slurm_local.sh: munged, slurmctld, slurmd as plain
# processes, 127.0.0.1 only) started and stopped by the test itself. Needs root; exit 77 (ctest: skipped)
# otherwise. Usage: slurm_test.sh <path to ferry> <case>.
#   job_runs: the cluster runs a batch job and an array (the bring-up works on this machine)
set -u
ferry=$1
case_name=$2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
# shellcheck source=slurm_local.sh
source "$here/slurm_local.sh"

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: the Slurm cluster test runs slurmd, which needs root (run ctest as root, as CI does)"
  exit 77
fi

work=$(mktemp -d)
chmod 755 "$work"  # munged wants its socket's directories traversable by all (slurm_local_up)
pids=()
cleanup() {
  slurm_local_down "$work/slurm"
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
unset BT_SOURCE_API_KEY BT_DEST_API_KEY BT_SOURCE_URL BT_DEST_URL MIGRATION_STATE_DIR LOG_LEVEL LOG_FORMAT

fail() {
  echo "FAIL: $*"
  if [ -n "${SLURM_CONF:-}" ]; then
    echo "--- squeue"; squeue 2>&1 | head -20
    echo "--- slurmctld.log (tail)"; tail -15 "$work/slurm/log/slurmctld.log" 2>/dev/null
  fi
  exit 1
}

# job_state JOBID: the state of one job (or array task, JOBID_TASK), e.g. COMPLETED, PENDING
job_state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -1 | cut -d= -f2; }
job_done() { case "$(job_state "$1")" in COMPLETED | FAILED | CANCELLED | TIMEOUT | OUT_OF_MEMORY | NODE_FAIL) return 0 ;; esac; return 1; }

slurm_local_up "$work/slurm" || fail "cluster did not start"

case "$case_name" in
  job_runs)
    # A batch job and a 4-task array with a dependency run to completion with the array variables set.
    j=$(sbatch --parsable -o "$work/one.out" --wrap 'echo "job $SLURM_JOB_ID"') || fail "sbatch failed"
    a=$(sbatch --parsable --array=0-3 --dependency=afterok:"$j" -o "$work/arr-%a.out" \
      --wrap 'echo "task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT"') || fail "sbatch --array failed"
    slurm_local_wait 60 job_done "$j" || fail "job $j did not end: $(job_state "$j")"
    for i in 0 1 2 3; do
      slurm_local_wait 60 job_done "${a}_$i" || fail "array task $i did not end: $(job_state "${a}_$i")"
      [ "$(job_state "${a}_$i")" = COMPLETED ] || fail "array task $i: $(job_state "${a}_$i")"
      grep -qx "task $i of 4" "$work/arr-$i.out" || fail "array task $i output: $(cat "$work/arr-$i.out")"
    done
    grep -qx "job $j" "$work/one.out" || fail "job output: $(cat "$work/one.out")"
    ;;
  *)
    fail "unknown case $case_name"
    ;;
esac
echo "PASS: $case_name"
