#!/usr/bin/env bash
# Cluster runs through the real `ferry` binary (issue 17): `ferry plan`, the resources phase, N shard
# processes in parallel (as a Kubernetes Indexed Job or a Slurm array would start them), `ferry finalize`
# and `ferry status --plan`, against two `ferry serve` emulators on 127.0.0.1 (port 0).
# Usage: cluster_test.sh <path to ferry> <case>. Each case is bounded (small org, timeouts) and cleans up.
set -u
ferry=$1
case_name=$2
source "$(dirname "$0")/../lib/harness.sh"
unset FERRY_PLAN FERRY_PHASE FERRY_SHARD FERRY_SHARD_COUNT JOB_COMPLETION_INDEX SLURM_ARRAY_TASK_ID SLURM_ARRAY_TASK_COUNT SLURM_ARRAY_TASK_MIN

src_key=cluster-source-key-0123456789
dst_key=cluster-dest-key-9876543210

# setup [log rows per project]: emulators, the seeded demo org in the source, .env. Experiments and
# datasets are grouped 2 per stream so that 4 shards each get several stream units.
setup() {
  start_emulator source "$src_key" cluster-source; src_url=$url
  start_emulator dest "$dst_key" cluster-dest; dst_url=$url
  BT_SOURCE_API_KEY=$src_key "$ferry" seed --url "$src_url" --projects 3 --events "${1:-800}" \
    --experiments 2 --experiment-events 60 --datasets 2 --dataset-events 50 --seed 17 >seed.txt 2>&1 ||
    fail "seed failed: $(cat seed.txt)"
  cat >.env <<EOF
BT_SOURCE_URL=$src_url
BT_SOURCE_API_KEY=$src_key
BT_DEST_URL=$dst_url
BT_DEST_API_KEY=$dst_key
MIGRATION_STATE_DIR=$work/state
MIGRATION_RETRY_DELAY=20ms
MIGRATION_EVENTS_FETCH_GROUP_SIZE=2
EOF
}

# make_plan N: plan.json for N shards
make_plan() {
  out=$(timeout 120 "$ferry" --log-level warn plan --out plan.json --shards "$1" 2>&1) || fail "plan exit $?: $out"
  expect_line "$out" "^plan: plan.json hash=[0-9a-f]{16}"
}

# run_shards N [env-style]: the N shards in parallel, each to shard-I.out; fails unless all exit 0.
run_shards() {
  local n=$1 style=${2:-flag} sp=()
  for i in $(seq 0 $((n - 1))); do
    if [ "$style" = k8s ]; then
      # The Kubernetes Indexed Job contract: the index and count only from the environment.
      JOB_COMPLETION_INDEX=$i FERRY_SHARD_COUNT=$n FERRY_PLAN=plan.json timeout 180 "$ferry" --log-level warn migrate \
        >"shard-$i.out" 2>&1 &
    else
      timeout 180 "$ferry" --log-level warn migrate --plan plan.json --shard "$i/$n" >"shard-$i.out" 2>&1 &
    fi
    sp+=($!)
  done
  local bad=0
  for i in "${!sp[@]}"; do
    wait "${sp[$i]}" || { bad=1; echo "shard $i exited non-zero: $(tail -5 "shard-$i.out")"; }
  done
  [ $bad -eq 0 ] || fail "a shard failed"
}

resources_phase() {
  out=$(timeout 120 "$ferry" --log-level warn migrate --plan plan.json --phase resources 2>&1) ||
    fail "resources phase exit $?: $out"
}

# finalize_equal: finalize exits 0 and its verify found every stream equal.
finalize_equal() {
  out=$(timeout 180 "$ferry" --log-level warn finalize --plan plan.json 2>&1) || fail "finalize exit $?: $out"
  expect_line "$out" '^ok +stream=logs:'
  expect_line "$out" '^ok +stream=experiment_events:'
  expect_line "$out" '^ok +stream=dataset_events:'
  expect_line "$out" '^verify: [0-9]+ stream\(s\), 0 with differences, 0 failure\(s\)'
  if grep -q '^DIFF' <<<"$out"; then fail "finalize's verify found differences: $out"; fi
}

# inventory URL KEY: one line per destination object, "type<TAB>scope<TAB>name", sorted (scope = the
# project's or parent object's name, so that two destinations compare; ACLs by count only).
inventory() {
  python3 - "$1" "$2" <<'PY'
import json, sys, urllib.request
url, key = sys.argv[1], sys.argv[2]
def get(path):
    req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + key})
    return json.load(urllib.request.urlopen(req, timeout=30))
lines, names, parents = [], {}, []
for t in ["project", "experiment", "dataset", "prompt", "function", "role", "group", "project_score",
          "project_tag", "ai_secret", "project_automation", "span_iframe", "mcp_server"]:
    objs = get("/v1/" + t + "?limit=1000").get("objects", [])
    for o in objs:  # experiments and datasets by project/name: names repeat across projects
        names[o["id"]] = (names.get(o.get("project_id"), "") + "/" if t != "project" else "") + str(o.get("name"))
    for o in objs:
        name = o.get("slug") if t in ("prompt", "function") else o.get("name")
        lines.append("%s\t%s\t%s" % (t, names.get(o.get("project_id"), ""), name))
        if t in ("project", "experiment", "dataset"):
            parents.append((t, o["id"]))
for t, pid in parents:  # views are listed per object
    for o in get("/v1/view?object_type=%s&object_id=%s" % (t, pid)).get("objects", []):
        lines.append("view\t%s:%s\t%s" % (t, names.get(pid), o.get("name")))
acls = get("/v1/acl/list_org")
acls = acls.get("objects", acls) if isinstance(acls, dict) else acls
lines.append("acl\tcount\t%d" % len(acls))
print("\n".join(sorted(lines)))
PY
}

# no_duplicates: no two destination objects of a type share a name in one scope.
no_duplicates() {
  inventory "$dst_url" "$dst_key" >dest.inventory || fail "listing the destination failed"
  [ "$(wc -l <dest.inventory)" -gt 50 ] || fail "destination inventory too small: $(cat dest.inventory)"
  dups=$(uniq -d dest.inventory)
  [ -z "$dups" ] || fail "duplicated destination objects: $dups"
}

case "$case_name" in
  plan_deterministic_and_checked)
    # The same source state gives the same plan byte for byte; a plan edited by hand, options that differ
    # from the plan's and a wrong shard count are configuration errors (exit 2), never a run.
    setup 300
    make_plan 4
    n=$(curl -s -H "Authorization: Bearer $dst_key" "$dst_url/v1/project" | grep -o '"id"' | wc -l)
    [ "$n" = 0 ] || fail "ferry plan wrote to the destination: $n project(s) there"
    cp plan.json first.json
    make_plan 4
    cmp -s first.json plan.json || fail "two plans of the same source differ: $(diff <(tr ',' '\n' <first.json) <(tr ',' '\n' <plan.json) | head)"
    python3 - <<'PY' || fail "plan content"
import json
p = json.load(open("plan.json"))
assert p["format"] == "ferry-plan/1" and p["shards"] == 4, p.keys()
kinds = [u["kind"] for u in p["units"]]
assert kinds[0] == "org_resources" and kinds[-1] == "final_resources", kinds
assert kinds.count("project_resources") == 3, kinds
streams = [u for u in p["units"] if u["kind"] == "stream"]
assert sum(1 for u in streams if u["stream_kind"] == "logs") == 3
assert all(u["rows"] > 0 and u["bytes"] > 0 and 0 <= u["shard"] < 4 for u in streams), streams
assert {u["shard"] for u in streams} == {0, 1, 2, 3}, "every shard gets work"
assert p["totals"]["rows"] == sum(u["rows"] for u in streams)
PY
    sed 's/"rows":\([0-9]\)/"rows":9\1/' first.json >edited.json
    out=$(timeout 30 "$ferry" migrate --plan edited.json --shard 0/4 2>&1); rc=$?
    [ $rc -eq 2 ] || fail "edited plan: exit $rc, want 2: $out"
    expect_line "$out" "plan file edited.json: its hash does not match its content"
    out=$(timeout 30 "$ferry" migrate --plan plan.json --shard 0/4 --projects seed-project-0 2>&1); rc=$?
    [ $rc -eq 2 ] || fail "other options: exit $rc, want 2: $out"
    expect_line "$out" "made with other options: projects \(plan: \[\], now: \[\"seed-project-0\"\]\)"
    out=$(timeout 30 "$ferry" migrate --plan plan.json --shard 1/3 2>&1); rc=$?
    [ $rc -eq 2 ] || fail "wrong shard count: exit $rc, want 2: $out"
    out=$(timeout 30 "$ferry" migrate --plan plan.json 2>&1); rc=$?
    [ $rc -eq 2 ] || fail "no shard: exit $rc, want 2: $out"
    expect_line "$out" "needs --shard I/N"
    [ ! -e state ] || fail "a refused run created state: $(ls -R state)"
    ;;
  four_shards_equal_source)
    # The seeded demo org: resources phase, 4 shard processes in parallel, finalize: verify exact, and no
    # object created twice (shards create nothing; finalize creates only ACLs and automations).
    setup
    make_plan 4
    resources_phase
    run_shards 4
    for i in 0 1 2 3; do
      r=state/*/shard-$i/migration_report.json
      grep -q '"created":0,' $r || fail "shard $i created objects: $(grep -o '"created":[0-9]*' $r | head -1)"
      grep -q '"failed":0,' $r || fail "shard $i had failures"
    done
    out=$(timeout 30 "$ferry" status --plan plan.json 2>&1) || fail "status exit $?: $out"
    expect_line "$out" '^resources: done'
    for i in 0 1 2 3; do expect_line "$out" "^shard $i/4: done, ([0-9]+)/\\1 stream\\(s\\) done, 0 failed"; done
    expect_line "$out" '^finalize: not started'
    finalize_equal
    no_duplicates
    # The same org copied by one process into a third emulator ends with the same objects.
    start_emulator single "$dst_key" cluster-single
    BT_DEST_URL=$url MIGRATION_STATE_DIR=$work/single-state timeout 180 "$ferry" --log-level warn migrate \
      >single.out 2>&1 || fail "single-process migrate: $(tail -5 single.out)"
    inventory "$url" "$dst_key" >single.inventory || fail "listing the single-process destination failed"
    diff single.inventory dest.inventory >inventory.diff || fail "4 shards vs one process: $(head -20 inventory.diff)"
    out=$(timeout 30 "$ferry" status --plan plan.json --json 2>&1) || fail "status --json exit $?"
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["finalize"]=="done" and d["streams_done"]==d["streams"] and d["rows"]==d["estimated_rows"], d' "$out" ||
      fail "status --json: $out"
    ;;
  shard_killed_and_rerun)
    # SIGKILL one shard mid-copy; finalize refuses while it is unfinished (exit 1, retryable); the
    # re-run of that shard resumes and the finalize verify is exact: nothing lost, nothing doubled.
    setup 4000
    make_plan 4
    resources_phase
    victim=$(python3 -c 'import json; p=json.load(open("plan.json")); print(max((u for u in p["units"] if u["kind"]=="stream"), key=lambda u: u["rows"])["shard"])')
    # The victim is slowed down (small batches, a request rate cap: neither is a plan option) so that the
    # SIGKILL lands after its first commits and long before its end.
    "$ferry" --log-level warn migrate --plan plan.json --shard "$victim/4" --max-requests-per-second 10 \
      --logs-insert-batch-size 100 >victim.out 2>&1 &
    vp=$!
    pids+=($vp)
    for _ in $(seq 1 300); do  # until the victim committed some rows, but not all
      st=$("$ferry" status --plan plan.json --json 2>/dev/null)
      rows=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['shards'][$victim]['rows'])" "$st" 2>/dev/null)
      [ "${rows:-0}" -gt 0 ] && break
      sleep 0.05
    done
    # status names the running shard and its pid (the lock's holder), read-only beside it.
    expect_line "$st" "\"shard\":$victim,\"state\":\"running \\(pid $vp\\)\""

    kill -9 $vp 2>/dev/null
    wait $vp 2>/dev/null
    for i in 0 1 2 3; do
      [ "$i" = "$victim" ] && continue
      timeout 180 "$ferry" --log-level warn migrate --plan plan.json --shard "$i/4" >"shard-$i.out" 2>&1 ||
        fail "shard $i: $(tail -3 shard-$i.out)"
    done
    out=$("$ferry" status --plan plan.json --json)
    python3 -c 'import json,sys; d=json.loads(sys.argv[1])["shards"][int(sys.argv[2])]; sys.exit(0 if 0<d["rows"]<d["estimated_rows"] else 1)' "$out" "$victim" ||
      fail "the SIGKILL did not land mid-copy: $out"
    out=$(timeout 60 "$ferry" --log-level warn finalize --plan plan.json 2>&1); rc=$?
    [ $rc -eq 1 ] || fail "finalize before the killed shard finished: exit $rc, want 1: $out"
    expect_line "$out" "^ferry finalize: shard $victim/4 has not finished"
    out=$(timeout 180 "$ferry" --log-level warn migrate --plan plan.json --shard "$victim/4" 2>&1) ||
      fail "re-run of shard $victim exit $?: $out"
    finalize_equal
    no_duplicates
    ;;
  kubernetes_contract)
    # N local processes given only JOB_COMPLETION_INDEX / FERRY_SHARD_COUNT (and FERRY_PLAN), as an
    # Indexed Job's pods are: each runs its own shard and state dir, the finalize verify is exact.
    setup
    make_plan 3
    FERRY_PLAN=plan.json FERRY_PHASE=resources timeout 120 "$ferry" --log-level warn migrate >res.out 2>&1 ||
      fail "resources phase from env: $(tail -3 res.out)"
    run_shards 3 k8s
    for i in 0 1 2; do [ -d state/*/shard-$i ] || fail "no state dir for shard $i"; done
    [ ! -e state/*/shard-3 ] || fail "a fourth shard dir appeared"
    # A count without an index, or an index outside the count, is a configuration error.
    out=$(JOB_COMPLETION_INDEX=3 FERRY_SHARD_COUNT=3 FERRY_PLAN=plan.json timeout 30 "$ferry" migrate 2>&1); rc=$?
    [ $rc -eq 2 ] || fail "index 3 of 3: exit $rc, want 2: $out"
    out=$(JOB_COMPLETION_INDEX=1 FERRY_SHARD_COUNT=4 FERRY_PLAN=plan.json timeout 30 "$ferry" migrate 2>&1); rc=$?
    [ $rc -eq 2 ] || fail "count 4 for a 3-shard plan: exit $rc, want 2: $out"
    # Slurm's variables name the same shard (array 1-3: SLURM_ARRAY_TASK_MIN is subtracted).
    out=$(SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_COUNT=3 FERRY_PLAN=plan.json timeout 60 \
      "$ferry" migrate 2>&1) || fail "slurm shard exit $?: $out"
    expect_line "$out" "state/[0-9a-f]{16}/shard-1/migration_report.json"
    finalize_equal
    no_duplicates
    ;;
  shard_refused_twice_and_before_resources)
    # A shard whose lock another process holds is refused with one line and exit 75 (retry later); a
    # shard started before the resources phase creates nothing and fails retryably (exit 1).
    setup 300
    make_plan 2
    out=$(timeout 60 "$ferry" --log-level warn migrate --plan plan.json --shard 0/2 2>&1); rc=$?
    [ $rc -eq 1 ] || fail "shard before the resources phase: exit $rc, want 1: $out"
    expect_line "$out" "a shard creates nothing: the resources phase .* must finish first"
    n=$(curl -s -H "Authorization: Bearer $dst_key" "$dst_url/v1/project" | grep -o '"id"' | wc -l)
    [ "$n" = 0 ] || fail "a shard created $n project(s) in the destination"
    exec 9>"$(ls -d state/*/)shard-1.lock"  # this shell holds shard 1's lock, as a running shard would
    flock -n 9 || fail "cannot take the lock"
    out=$(timeout 30 "$ferry" migrate --plan plan.json --shard 1/2 2>&1); rc=$?
    exec 9>&-
    [ $rc -eq 75 ] || fail "second process on shard 1: exit $rc, want 75: $out"
    [ "$(wc -l <<<"$out")" = 1 ] || fail "more than one line: $out"
    expect_line "$out" "^ferry migrate: shard 1/2 of plan [0-9a-f]{16} is already running in another process"
    ;;
  exit_codes_in_help)
    # The exit codes a scheduler acts on are in --help (podFailurePolicy, Slurm requeue).
    for cmd in plan finalize migrate; do
      out=$("$ferry" $cmd --help 2>&1) || fail "$cmd --help exit $?"
      expect_line "$out" "2 configuration error"
      expect_line "$out" "75 this shard"
    done
    ;;
  *)
    fail "unknown case $case_name"
    ;;
esac
echo "PASS $case_name"
