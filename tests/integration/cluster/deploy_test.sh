#!/usr/bin/env bash
# Ferry as a cluster runs it, through the deployment files in configs/. Usage: deploy_test.sh <ferry> <case>.
# The slurm_* cases run a real single-node Slurm cluster (slurm_local.sh: munged, slurmctld, slurmd as plain
# processes, 127.0.0.1 only) that the test starts and stops itself; they need root: exit 77 (ctest: skipped)
# otherwise. DEPLOY_TEST_KEEP=1 keeps the work directory (job logs, pod logs, state) for a look.
#   slurm_job_runs:    the cluster runs a batch job and an array (the bring-up works on this machine)
#   slurm_exit_codes:  configs/slurm with a stand-in ferry: exit 1 requeues the task and finalize runs after;
#                      exit 2 fails the task without requeue and cancels finalize
#   slurm_ferry_array: configs/slurm/submit runs a plan as resources job, 4-task shard array and finalize on
#                      two emulators; one shard is SIGKILLed mid-copy, requeued by its job and resumed;
#                      finalize verifies the organization exact and the destination has each object once
#   k8s_local_jobs:    configs/kubernetes's three Jobs as local processes (k8s_local_run.py: the manifests'
#                      environment, 4 shard pods at once with JOB_COMPLETION_INDEX) on two emulators;
#                      finalize verifies exact, each shard kept its state in its own sub-path
#   k8s_run_order:     configs/kubernetes/run with a stand-in kubectl: Jobs resumed in order, only after the
#                      previous one completed; a failed Job stops the run
set -u
ferry=$(realpath "$1")  # absolute: the test runs in its own directory
case_name=$2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
# shellcheck source=slurm_local.sh
source "$here/slurm_local.sh"

if [ "${case_name#slurm_}" != "$case_name" ] && [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: the Slurm cluster test runs slurmd, which needs root (run ctest as root, as CI does)"
  exit 77
fi

work=$(mktemp -d)
chmod 755 "$work"  # munged wants its socket's directories traversable by all (slurm_local_up)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  slurm_local_down "$work/slurm"
  if [ -n "${DEPLOY_TEST_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
cd "$work" || exit 1
unset BT_SOURCE_API_KEY BT_DEST_API_KEY BT_SOURCE_URL BT_DEST_URL MIGRATION_STATE_DIR LOG_LEVEL LOG_FORMAT
unset FERRY_PLAN FERRY_PHASE FERRY_SHARD FERRY_SHARD_COUNT JOB_COMPLETION_INDEX SLURM_ARRAY_TASK_ID SLURM_ARRAY_TASK_COUNT SLURM_ARRAY_TASK_MIN

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
job_running() { [ "$(job_state "$1")" = RUNNING ]; }
# id_of NAME "resources=1 shards=2 finalize=3" (configs/slurm/submit's last line): the job id named NAME
id_of() { grep -o "\b$1=[0-9]*" <<<"$2" | cut -d= -f2; }

src_key=slurm-source-key-0123456789
dst_key=slurm-dest-key-9876543210

# start_emulator NAME KEY ORG [serve flags...] -> sets $url (not in $(...): pids must stay in this shell)
start_emulator() {
  local name=$1 key=$2 org=$3; shift 3
  FERRY_SERVE_API_KEYS="$key:$org" "$ferry" --log-level warn serve --port 0 --data "$work/$name-data" "$@" \
    >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    if url=$(grep -o -m1 'http://127\.0\.0\.1:[0-9]*' "$work/$name.log" 2>/dev/null); then return 0; fi
    sleep 0.1
  done
  fail "$name emulator did not start: $(cat "$work/$name.log")"
}

write_env() {  # the .env every job reads (jobs run in the submit directory, $work)
  cat >"$work/.env" <<EOF
BT_SOURCE_URL=$src_url
BT_SOURCE_API_KEY=$src_key
BT_DEST_URL=$dst_url
BT_DEST_API_KEY=$dst_key
MIGRATION_STATE_DIR=$work/state
MIGRATION_RETRY_DELAY=20ms
MIGRATION_EVENTS_FETCH_LIMIT=100
EOF
}

json_field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# The shard with the most estimated rows (`ferry status --plan --json`).
biggest_shard() {
  "$ferry" status --plan "$work/plan.json" --json | python3 -c 'import json, sys
shards = json.load(sys.stdin)["shards"]
best = max(shards, key=lambda s: s["estimated_rows"])
assert best["estimated_rows"] > 0
print(best["shard"])'
}

# shard_copying I: shard I has copied rows and not all of its streams are done
shard_copying() {
  "$ferry" status --plan "$work/plan.json" --json 2>/dev/null | python3 -c 'import json, sys
s = json.load(sys.stdin)["shards"][int(sys.argv[1])]
sys.exit(0 if s["rows"] > 0 and s["done"] < s["streams"] else 1)' "$1"
}

# ferry_pid JOBID: the ferry process of a running job (scontrol listpids: the job's processes on this node)
ferry_pid() {
  local p
  for p in $(scontrol listpids "$1" 2>/dev/null | awk 'NR > 1 {print $1}'); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = ferry ] && { echo "$p"; return 0; }
  done
  return 1
}

# kill_mid_copy ARRAY_TASK: SIGKILL the task's ferry once its shard has copied rows but is not done.
kill_mid_copy() {
  local task=$1 shard=${1##*_} job pid
  slurm_local_wait 120 job_running "$task" ||
    fail "$task never ran: $(job_state "$task"); resources: $(cat "$work/logs/resources.out" 2>&1)"
  job=$(scontrol show job "$task" | grep -o 'JobId=[0-9]*' | head -1 | cut -d= -f2)
  slurm_local_wait 120 shard_copying "$shard" ||
    fail "shard $shard never copied: $("$ferry" status --plan "$work/plan.json" 2>&1)"
  pid=$(ferry_pid "$job") || fail "no ferry process in job $job (shard $shard finished before the kill?)"
  kill -9 "$pid"
  echo "killed ferry (pid $pid) of shard $shard (job $job) mid-copy"
}

# Projects, experiments and datasets: as many in the destination as in the source (none created twice).
count_objects() {
  curl -sf -H "Authorization: Bearer $2" "$1/v1/$3?limit=1000" |
    python3 -c 'import json, sys; print(len(json.load(sys.stdin)["objects"]))'
}
same_object_counts() {
  local kind n_src n_dst
  for kind in project experiment dataset; do
    n_src=$(count_objects "$src_url" "$src_key" "$kind") || fail "listing source ${kind}s failed"
    n_dst=$(count_objects "$dst_url" "$dst_key" "$kind") || fail "listing destination ${kind}s failed"
    [ "$n_src" = "$n_dst" ] && [ "$n_src" -gt 0 ] || fail "${kind}s: source $n_src, destination $n_dst"
  done
}

if [ "${case_name#slurm_}" != "$case_name" ]; then
  slurm_local_up "$work/slurm" || fail "cluster did not start"
fi

case "$case_name" in
  slurm_job_runs)
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
  slurm_ferry_array)
    # The recipe of configs/slurm on two emulators: plan, then submit (resources job; 4-task array of shards
    # after it; finalize after the array). One shard's ferry is SIGKILLed mid-copy: its job requeues itself,
    # Slurm runs it again, it resumes, and finalize (which waits for every task) verifies the org exact.
    # Every source BTQL page takes 200 ms more, so a shard copies for seconds: long enough to be killed
    # mid-copy (the kill waits for the shard's first rows, not for a time).
    printf 'faults:\n  - {path: /btql, kind: latency, latency_ms: 200, rate: 1.0}\n' >"$work/slow-source.yaml"
    start_emulator source "$src_key" slurm-source --faults-file "$work/slow-source.yaml"; src_url=$url
    start_emulator dest "$dst_key" slurm-dest; dst_url=$url
    BT_SOURCE_API_KEY=$src_key timeout 120 "$ferry" seed --url "$src_url" --projects 4 --events 1200 \
      --experiments 2 --experiment-events 60 --datasets 2 --dataset-events 40 --seed 17 >seed.txt 2>&1 ||
      fail "seed failed: $(cat seed.txt)"
    write_env
    timeout 120 "$ferry" plan --out "$work/plan.json" --shards 4 >plan.txt 2>&1 ||
      fail "plan exit $?: $(cat plan.txt)"
    ids=$(FERRY_BIN=$ferry "$repo/configs/slurm/submit" "$work/plan.json" --logs "$work/logs") || fail "submit: $ids"
    echo "$ids"
    shards=$(id_of shards "$ids") && finalize=$(id_of finalize "$ids") || fail "submit printed no job ids: $ids"
    victim=$(biggest_shard) || fail "no shard with rows: $("$ferry" status --plan "$work/plan.json" 2>&1)"
    kill_mid_copy "${shards}_$victim"
    slurm_local_wait 240 job_done "$finalize" ||
      fail "finalize did not end: $(job_state "$finalize"); $(tail -n 5 "$work"/logs/*.out)"
    for i in 0 1 2 3; do
      [ "$(job_state "${shards}_$i")" = COMPLETED ] ||
        fail "shard $i: $(job_state "${shards}_$i"): $(cat "$work/logs/shard-$i.out")"
    done
    [ "$(job_state "$finalize")" = COMPLETED ] ||
      fail "finalize $(job_state "$finalize"): $(cat "$work/logs/finalize.out")"
    restarts=$(scontrol show job "${shards}_$victim" | grep -o 'Restarts=[0-9]*' | cut -d= -f2)
    [ "${restarts:-0}" -ge 1 ] || fail "killed shard $victim was not requeued: $(cat "$work/logs/shard-$victim.out")"
    grep -q 'requeueing' "$work/logs/shard-$victim.out" || fail "no requeue line: $(cat "$work/logs/shard-$victim.out")"
    out=$(cat "$work/logs/finalize.out")
    if grep -q '^DIFF' <<<"$out"; then fail "finalize verify found differences: $out"; fi
    grep -Eq '^ok +stream=logs:' <<<"$out" || fail "finalize did not verify the logs: $out"
    same_object_counts
    # The keys (in .env only) reach no job log, no Slurm record (job environments, scripts) and no state.
    if grep -rlaF -e "$src_key" -e "$dst_key" "$work/logs" "$work/slurm" "$work/state"; then
      fail "an API key was written into the files above"
    fi
    out=$("$ferry" status --plan "$work/plan.json" --json) || fail "status --plan exit $?: $out"
    [ "$(json_field "$out" streams)" = "$(json_field "$out" streams_done)" ] || fail "streams not all done: $out"
    ;;
  slurm_exit_codes)
    # configs/slurm maps ferry's exit codes onto Slurm, with a stand-in ferry that records its calls:
    # run "retry": shard 1 exits 1 (retryable) once: its job requeues itself, runs again, finalize runs after.
    # run "config": shard 1 exits 2 (configuration error): no requeue, the task fails, finalize is cancelled.
    cat >"$work/fake-ferry" <<'EOF'
#!/usr/bin/env bash
# args: migrate --plan P [--phase resources] | finalize --plan P
echo "$FAKE_RUN $* task=${SLURM_ARRAY_TASK_ID:--}/${SLURM_ARRAY_TASK_COUNT:--} restart=${SLURM_RESTART_COUNT:-0}" >>"$FAKE_CALLS"
if [ "${SLURM_ARRAY_TASK_ID:-}" = 1 ]; then
  [ "$FAKE_RUN" = config ] && exit 2
  [ "${SLURM_RESTART_COUNT:-0}" = 0 ] && exit 1
fi
exit 0
EOF
    chmod +x "$work/fake-ferry"
    echo '{"format":"ferry-plan/1","shards": 2}' >"$work/plan.json"
    submit_fake() {
      FAKE_RUN=$1 FAKE_CALLS=$work/calls.log FERRY_BIN=$work/fake-ferry \
        "$repo/configs/slurm/submit" "$work/plan.json" --logs "$work/logs-$1"
    }
    ids=$(submit_fake retry) || fail "submit: $ids"
    retry_shards=$(id_of shards "$ids") && retry_finalize=$(id_of finalize "$ids") || fail "no job ids: $ids"
    ids=$(submit_fake config) || fail "submit: $ids"
    config_shards=$(id_of shards "$ids") && config_finalize=$(id_of finalize "$ids") || fail "no job ids: $ids"
    slurm_local_wait 120 job_done "$retry_finalize" || fail "finalize of run retry did not end: $(job_state "$retry_finalize")"
    slurm_local_wait 60 job_done "$config_finalize" || fail "finalize of run config did not end: $(job_state "$config_finalize")"
    calls=$(cat "$work/calls.log")
    [ "$(job_state "$retry_finalize")" = COMPLETED ] || fail "run retry: finalize $(job_state "$retry_finalize"): $calls"
    [ "$(job_state "${retry_shards}_1")" = COMPLETED ] || fail "run retry: shard 1 $(job_state "${retry_shards}_1")"
    grep -qx "retry migrate --plan $work/plan.json task=1/2 restart=1" <<<"$calls" ||
      fail "run retry: shard 1 not run again after exit 1: $calls"
    grep -qx "retry migrate --plan $work/plan.json --phase resources task=-/- restart=0" <<<"$calls" ||
      fail "run retry: no resources call: $calls"
    grep -qx "retry finalize --plan $work/plan.json task=-/- restart=0" <<<"$calls" || fail "run retry: no finalize: $calls"
    [ "$(job_state "${config_shards}_1")" = FAILED ] || fail "run config: shard 1 $(job_state "${config_shards}_1")"
    [ "$(job_state "$config_finalize")" = CANCELLED ] || fail "run config: finalize $(job_state "$config_finalize")"
    [ "$(grep -c '^config migrate .*task=1/2' <<<"$calls")" = 1 ] || fail "run config: shard 1 retried: $calls"
    if grep -q '^config finalize' <<<"$calls"; then fail "run config: finalize ran: $calls"; fi
    ;;
  k8s_local_jobs)
    start_emulator source "$src_key" k8s-source; src_url=$url
    start_emulator dest "$dst_key" k8s-dest; dst_url=$url
    BT_SOURCE_API_KEY=$src_key timeout 120 "$ferry" seed --url "$src_url" --projects 4 --events 300 \
      --experiments 2 --experiment-events 40 --datasets 2 --dataset-events 30 --seed 23 >seed.txt 2>&1 ||
      fail "seed failed: $(cat seed.txt)"
    # The keys as the Secret would hold them; the URLs replace the ConfigMap's.
    BT_SOURCE_API_KEY=$src_key BT_DEST_API_KEY=$dst_key timeout 240 python3 "$here/k8s_local_run.py" "$ferry" \
      "$repo/configs/kubernetes" --data "$work/data" --set "BT_SOURCE_URL=$src_url" --set "BT_DEST_URL=$dst_url" \
      >run.txt 2>&1 || fail "local run exit $?: $(cat run.txt; tail -n 5 "$work"/data/pods/*.log)"
    for i in 0 1 2 3; do
      grep -q "ferry-shards index $i attempt 0 exit 0" run.txt || fail "shard pod $i: $(cat run.txt)"
      ls -d "$work"/data/state/*/shard-$i >/dev/null 2>&1 || fail "no state sub-path for shard $i: $(ls -R "$work/data/state" | head)"
    done
    out=$(cat "$work"/data/pods/ferry-finalize-0-*.log)
    if grep -q '^DIFF' <<<"$out"; then fail "finalize verify found differences: $out"; fi
    grep -Eq '^ok +stream=logs:' <<<"$out" || fail "finalize did not verify the logs: $out"
    same_object_counts
    if grep -rlaF -e "$src_key" -e "$dst_key" "$work/data"; then fail "an API key was written into the files above"; fi
    ;;
  k8s_run_order)
    # configs/kubernetes/run against a stand-in kubectl that records its calls and reports each Job's
    # condition from $FAKE_STATES: Jobs are resumed strictly in order, each only after the previous one is
    # Complete, and a Failed Job stops the run (exit 1) before the next is resumed.
    mkdir -p "$work/bin"
    cat >"$work/bin/kubectl" <<'EOF'
#!/usr/bin/env bash
echo "$*" >>"$FAKE_CALLS"
for a in "$@"; do
  case "$a" in ferry-resources | ferry-shards | ferry-finalize) job=$a ;; esac
done
if [ "$1 $2" = "-n ns" ]; then shift 2; fi
[ "$1" = get ] && grep -o "$job=[A-Za-z]*" <<<"$FAKE_STATES" | cut -d= -f2
exit 0
EOF
    chmod +x "$work/bin/kubectl"
    run_k8s() { PATH=$work/bin:$PATH FAKE_CALLS=$work/calls-$1 FAKE_STATES=$2 "$repo/configs/kubernetes/run" -n ns; }
    run_k8s ok "ferry-resources=Complete ferry-shards=Complete ferry-finalize=Complete" >run-ok.txt 2>&1 ||
      fail "run exit $?: $(cat run-ok.txt)"
    expected="-n ns apply -k $repo/configs/kubernetes
-n ns get job ferry-resources -o jsonpath={range .status.conditions[?(@.status==\"True\")]}{.type} {end}
-n ns patch job ferry-shards --type=merge -p {\"spec\":{\"suspend\":false}}
-n ns get job ferry-shards -o jsonpath={range .status.conditions[?(@.status==\"True\")]}{.type} {end}
-n ns patch job ferry-finalize --type=merge -p {\"spec\":{\"suspend\":false}}
-n ns get job ferry-finalize -o jsonpath={range .status.conditions[?(@.status==\"True\")]}{.type} {end}"
    [ "$(cat "$work/calls-ok")" = "$expected" ] || fail "kubectl calls: $(cat "$work/calls-ok")"
    if run_k8s failed "ferry-resources=Complete ferry-shards=Failed" >run-failed.txt 2>&1; then
      fail "run exited 0 with ferry-shards Failed"
    fi
    grep -q 'job/ferry-shards failed' run-failed.txt || fail "failure not named: $(cat run-failed.txt)"
    if grep -q 'patch job ferry-finalize' "$work/calls-failed"; then fail "finalize resumed after a failed shards Job"; fi
    ;;
  *)
    fail "unknown case $case_name"
    ;;
esac
echo "PASS: $case_name"
