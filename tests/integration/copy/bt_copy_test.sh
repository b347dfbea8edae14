#!/usr/bin/env bash
# `ferry copy` with braintrust:// sources and sinks against real `ferry serve` emulators on loopback
# (and PostgreSQL from pg_server.sh for bt_to_pg): exact copies checked against the emulator's own BTQL
# answers read by Python (not by Ferry), SIGKILL + resume, --verify, metrics, progress, bad input.
# Usage: bt_copy_test.sh <path to ferry> <case> [<state file of pg_server.sh, for bt_to_pg>]
set -u
ferry=$1
case_name=$2
server_state=${3:-}
. "$(dirname "$0")/../lib/harness.sh"

src_key=sk-src-$RANDOM$RANDOM
dst_key=sk-dst-$RANDOM$RANDOM

# The emulator read by Python: object ids by name, every row of an object by BTQL keyset pages.
cat >bt.py <<'PY'
import json, sys, urllib.parse, urllib.request
def call(url, key, path, body=None):
    req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())
def object_id(url, key, project, kind="logs", name=None):
    pid = call(url, key, "/v1/project?" + urllib.parse.urlencode({"project_name": project}))["objects"][0]["id"]
    if kind == "logs": return pid
    return call(url, key, f"/v1/{kind}?" + urllib.parse.urlencode({"project_id": pid, f"{kind}_name": name}))["objects"][0]["id"]
def rows(url, key, kind, oid):
    fn = {"logs": "project_logs", "experiment": "experiment", "dataset": "dataset"}[kind]
    out, last = [], None
    while True:
        q = f"select: *\nfrom: {fn}('{oid}') spans\n" + (f"filter: _pagination_key > '{last}'\n" if last else "") + \
            "sort: _pagination_key asc\nlimit: 200"
        page = call(url, key, "/btql", {"query": q, "fmt": "json"})["data"]
        if not page: return out
        out += page
        last = page[-1]["_pagination_key"]
def parts(d):
    import glob
    return [json.loads(l) for p in sorted(glob.glob(d + "/part-*.jsonl")) for l in open(p, encoding="utf-8")]
PY

# setup_source: an emulator seeded with `ferry seed` (project seed-project-0: logs, seed-experiment-0,
# seed-dataset-0); sets $src_url and $src (braintrust+http://127.0.0.1:PORT).
setup_source() {
  start_emulator source "$src_key" org-src
  src_url=$url
  src=braintrust+http://${url#http://}
  BT_SOURCE_API_KEY=$src_key "$ferry" seed --url "$src_url" --projects 1 --events "${1:-300}" --experiments 1 \
    --experiment-events 60 --datasets 1 --dataset-events 50 --seed 7 >seed.txt || fail "seed failed: $(cat seed.txt)"
}
# setup_dest: an empty emulator with project "target"; sets $dst_url and $dst.
setup_dest() {
  start_emulator dest "$dst_key" org-dst
  dst_url=$url
  dst=braintrust+http://${url#http://}
  curl -s -f -X POST -H "Authorization: Bearer $dst_key" -H 'Content-Type: application/json' "$dst_url/v1/project" \
    -d '{"name":"target"}' >/dev/null || fail "cannot create the destination project"
}
run_copy() {  # run_copy ARGS...: BT keys set, output in $out, fails on a non-zero exit
  out=$(BT_SOURCE_API_KEY=$src_key BT_DEST_API_KEY=$dst_key "$ferry" copy "$@" 2>&1) || fail "copy $* failed: $out"
}
no_secrets() {  # no_secrets FILE_OR_DIR...: neither API key in them
  grep -rqa -e "$src_key" -e "$dst_key" "$@" && fail "an API key was written to $*"
  return 0
}

# make_jsonl DIR N: dataset-shaped rows (ids 1..N as numbers), an extra field and a null one.
make_jsonl() {
  mkdir -p "$1"
  python3 - "$1" "$2" <<'PY'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
with open(f"{d}/rows.jsonl", "w") as f:
    for i in range(1, n + 1):
        f.write(json.dumps({"id": i, "input": {"q": f"question {i} é", "n": i / 7}, "expected": f"answer\t{i}",
                            "metadata": {"split": "train" if i % 3 else "test"}, "tags": [f"t{i % 4}"],
                            "score": i * 0.5, "note": None}, ensure_ascii=False) + "\n")
PY
}
# jsonl_in_dataset DIR PROJECT NAME: the dataset holds exactly DIR's rows as the sink stores them (id
# as a string, `score` under metadata, the null `note` dropped), read by Python through BTQL.
jsonl_in_dataset() {
  python3 - "$dst_url" "$dst_key" "$@" <<'PY' || fail "dataset $3/$4 differs from $2"
import glob, json, sys
sys.path.insert(0, ".")
import bt
url, key, d, project, name = sys.argv[1:6]
want = {}
for l in open(d + "/rows.jsonl", encoding="utf-8"):
    r = json.loads(l)
    md = dict(r["metadata"]); md["score"] = r["score"]
    want[str(r["id"])] = {"input": r["input"], "expected": r["expected"], "metadata": md, "tags": r["tags"]}
oid = bt.object_id(url, key, project, "dataset", name)
got = {}
for r in bt.rows(url, key, "dataset", oid):
    if r["id"] in got: print("id twice:", r["id"]); sys.exit(1)
    if r["dataset_id"] != oid: print("wrong dataset_id", r); sys.exit(1)
    got[r["id"]] = {k: r.get(k) for k in ("input", "expected", "metadata", "tags")}
if got != want:
    diff = [k for k in want if want.get(k) != got.get(k)][:2]
    print(len(want), "vs", len(got), [(want.get(k), got.get(k)) for k in diff]); sys.exit(1)
print("equal", len(want))
PY
}

case "$case_name" in
  bt_to_jsonl_exact)
    setup_source 300
    # Logs, an experiment and a dataset, each to its own directory: every row as BTQL answers it, in key order.
    run_copy --from "$src/seed-project-0/logs" --to "jsonl://$work/logs" -s st1 --batch-rows 64
    expect_line "$out" "copy: [0-9]+ rows written .* from ${src//+/\\+}/seed-project-0/logs"
    run_copy --from "$src/seed-project-0/experiment/seed-experiment-0" --to "jsonl://$work/exp" -s st2 --batch-rows 25
    run_copy --from "$src/seed-project-0/dataset/seed-dataset-0" --to "jsonl://$work/ds" -s st3 --batch-rows 25
    python3 - "$src_url" "$src_key" <<'PY' || fail "jsonl parts differ from the source's BTQL rows"
import sys
sys.path.insert(0, ".")
import bt
url, key = sys.argv[1:3]
for kind, name, d in (("logs", None, "logs"), ("experiment", "seed-experiment-0", "exp"), ("dataset", "seed-dataset-0", "ds")):
    want = bt.rows(url, key, kind, bt.object_id(url, key, "seed-project-0", kind, name))
    got = bt.parts(d)
    if not want or want != got:
        print(kind, len(want), "vs", len(got), next(((a, b) for a, b in zip(want, got) if a != b), None)); sys.exit(1)
    print(kind, "equal", len(want))
PY
    # --verify: equal (exit 0); a changed and a removed row in the sink: one DIFF line each, exit 1.
    run_copy --from "$src/seed-project-0/logs" --to "jsonl://$work/logs" -s st1 --verify
    expect_line "$out" "copy: 0 rows written"
    expect_line "$out" "verify: [0-9]+ rows expected .*: equal"
    python3 - <<'PY' || fail "cannot tamper with the part files"
import json, glob
p = sorted(glob.glob("logs/part-*.jsonl"))[0]
lines = open(p, encoding="utf-8").read().splitlines()
first = json.loads(lines[0]); first["input"] = "changed"
second = json.loads(lines[1])
open(p, "w", encoding="utf-8").write("\n".join([json.dumps(first)] + lines[2:]) + "\n")
open("ids.txt", "w").write(first["id"] + "\n" + second["id"] + "\n")
PY
    out=$(BT_SOURCE_API_KEY=$src_key "$ferry" copy --from "$src/seed-project-0/logs" --to "jsonl://$work/logs" -s st1 --verify 2>&1)
    rc=$?
    [ $rc -eq 1 ] || fail "verify with differences should exit 1, got $rc: $out"
    expect_line "$out" "^DIFF id=$(sed -n 1p ids.txt): fields differ: input$"
    expect_line "$out" "^DIFF id=$(sed -n 2p ids.txt): missing in the sink$"
    [ "$(grep -c '^DIFF' <<<"$out")" -eq 2 ] || fail "expected exactly 2 DIFF lines: $out"
    no_secrets st1 st2 st3 logs
    ;;
  jsonl_to_bt_dataset)
    setup_dest
    make_jsonl in 230
    # The dataset does not exist: created in the existing project; a re-run copies nothing; a fresh
    # state re-sends every row under the same ids: overwritten, never duplicated.
    run_copy --from "jsonl://$work/in" --to "$dst/target/dataset/imported" -s st --batch-rows 50
    expect_line "$out" "copy created dataset name=imported project=target"
    expect_line "$out" "copy: 230 rows written"
    jsonl_in_dataset in target imported
    run_copy --from "jsonl://$work/in" --to "$dst/target/dataset/imported" -s st --batch-rows 50 --verify
    expect_line "$out" "copy: 0 rows written .* 230 in total"
    expect_line "$out" "verify: 230 rows expected .*230 read back .*: equal"
    run_copy --from "jsonl://$work/in" --to "$dst/target/dataset/imported" -s st-fresh --batch-rows 70
    expect_line "$out" "copy: 230 rows written"
    grep -q "copy created dataset" <<<"$out" && fail "the dataset was created twice: $out"
    jsonl_in_dataset in target imported
    # The project's logs as a sink too (rows get project_id and log_id "g").
    run_copy --from "jsonl://$work/in" --to "$dst/target/logs" -s st-logs
    python3 - "$dst_url" "$dst_key" <<'PY' || fail "project logs differ"
import sys
sys.path.insert(0, ".")
import bt
url, key = sys.argv[1:3]
pid = bt.object_id(url, key, "target")
rows = bt.rows(url, key, "logs", pid)
assert len(rows) == 230 and len({r["id"] for r in rows}) == 230, len(rows)
assert all(r["project_id"] == pid and r["log_id"] == "g" for r in rows)
r7 = [r for r in rows if r["id"] == "7"][0]
assert r7["expected"] == "answer\t7" and r7["metadata"] == {"split": "train", "score": 3.5}, r7
PY
    # An experiment that does not exist yet: created, rows get its experiment_id.
    run_copy --from "jsonl://$work/in" --to "$dst/target/experiment/exp-a" -s st-exp --verify
    expect_line "$out" "copy created experiment name=exp-a project=target"
    expect_line "$out" "verify: 230 rows expected .*: equal"
    python3 - "$dst_url" "$dst_key" <<'PY' || fail "experiment rows differ"
import sys
sys.path.insert(0, ".")
import bt
url, key = sys.argv[1:3]
eid = bt.object_id(url, key, "target", "experiment", "exp-a")
rows = bt.rows(url, key, "experiment", eid)
assert len(rows) == 230 and all(r["experiment_id"] == eid for r in rows), len(rows)
PY
    no_secrets st st-fresh st-logs st-exp
    ;;
  bt_logs_to_bt_dataset_kill_resume)
    setup_source 400
    setup_dest
    printf 'rules:\n  - rename: {from: output, to: expected}\n  - source_id: {field: source_id}\n' >t.yaml
    # Killed after the sink acknowledged batch 3 and before its cursor commit, then resumed.
    BT_SOURCE_API_KEY=$src_key BT_DEST_API_KEY=$dst_key FERRY_FAULT_COPY_KILL_AFTER_WRITE=3 "$ferry" copy \
      --from "$src/seed-project-0/logs" --to "$dst/target/dataset/from-logs" -s st --batch-rows 40 --transform t.yaml >kill.txt 2>&1
    [ $? -eq 137 ] || fail "expected SIGKILL (137): $(cat kill.txt)"
    run_copy --from "$src/seed-project-0/logs" --to "$dst/target/dataset/from-logs" -s st --batch-rows 40 --transform t.yaml --verify
    expect_line "$out" "40 re-sent after a resume\)"
    expect_line "$out" "verify: [0-9]+ rows expected .*: equal"
    # Python's own check: every live source log row once in the dataset, its output as expected, its id
    # kept (also in metadata.source_id), the other log fields under metadata.
    python3 - "$src_url" "$src_key" "$dst_url" "$dst_key" <<'PY' || fail "dataset differs from the source logs"
import sys
sys.path.insert(0, ".")
import bt
su, sk, du, dk = sys.argv[1:5]
src = bt.rows(su, sk, "logs", bt.object_id(su, sk, "seed-project-0"))
dst = {r["id"]: r for r in bt.rows(du, dk, "dataset", bt.object_id(du, dk, "target", "dataset", "from-logs"))}
assert len(dst) == len(src) > 100, (len(dst), len(src))
for s in src:
    d = dst[s["id"]]
    assert d["input"] == s.get("input") and d["expected"] == s.get("output"), (s, d)
    assert d["metadata"]["source_id"] == s["id"], d
    if s.get("scores") is not None: assert d["metadata"]["scores"] == s["scores"], d
    if s.get("created"): assert d["created"] == s["created"], d
print("equal", len(src))
PY
    no_secrets st
    ;;
  bt_to_pg)
    [ -n "$server_state" ] && [ -f "$server_state" ] || fail "no PostgreSQL server (state file '$server_state')"
    . "$server_state"
    db=c_${case_name}
    PGPASSWORD=$PG_PASSWORD psql -q -h 127.0.0.1 -p "$PG_PORT" -U ferry -d postgres -c "DROP DATABASE IF EXISTS $db" \
      -c "CREATE DATABASE $db" >/dev/null 2>&1 || fail "cannot create database $db"
    pg="postgresql://ferry:$PG_PASSWORD@127.0.0.1:$PG_PORT/$db"
    setup_source 250
    # Braintrust rows differ in their fields (a table built from the first batch would lack some): the
    # tables are created first, every value field jsonb (a field holds a string in one row, an object
    # in another).
    cols="input output expected error scores metadata tags metrics context span_attributes created origin facets span_id
      root_span_id span_parents is_root _xact_id _pagination_key org_id project_id log_id dataset_id experiment_id comments
      audit_data _is_merge _object_delete _merge_paths _parent_id"
    ddl=$(for c in $cols; do printf ', "%s" jsonb' "$c"; done)
    for t in ds logs; do
      PGPASSWORD=$PG_PASSWORD psql -q -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U ferry -d "$db" \
        -c "CREATE TABLE $t (id text PRIMARY KEY $ddl)" >/dev/null || fail "cannot create table $t"
    done
    # Killed after batch 2 and resumed; then every source row is in the table, field for field.
    BT_SOURCE_API_KEY=$src_key FERRY_FAULT_COPY_KILL_AFTER_WRITE=2 "$ferry" copy --from "$src/seed-project-0/dataset/seed-dataset-0" \
      --to "$pg?table=ds" -s st --batch-rows 15 >kill.txt 2>&1
    [ $? -eq 137 ] || fail "expected SIGKILL (137): $(cat kill.txt)"
    run_copy --from "$src/seed-project-0/dataset/seed-dataset-0" --to "$pg?table=ds" -s st --batch-rows 15 --verify
    expect_line "$out" "15 re-sent after a resume\)"
    expect_line "$out" "verify: [0-9]+ rows expected .*: equal"
    run_copy --from "$src/seed-project-0/logs" --to "$pg?table=logs" -s st2 --batch-rows 100
    for t in ds logs; do
      PGPASSWORD=$PG_PASSWORD psql -q -X -At -h 127.0.0.1 -p "$PG_PORT" -U ferry -d "$db" -c "SELECT row_to_json(t) FROM $t t" >$t.jsonl ||
        fail "cannot read table $t"
    done
    python3 - "$src_url" "$src_key" <<'PY' || fail "tables differ from the source's BTQL rows"
import json, sys
sys.path.insert(0, ".")
import bt
url, key = sys.argv[1:3]
for kind, name, t in (("dataset", "seed-dataset-0", "ds"), ("logs", None, "logs")):
    src = {r["id"]: r for r in bt.rows(url, key, kind, bt.object_id(url, key, "seed-project-0", kind, name))}
    dst = {}
    for l in open(t + ".jsonl", encoding="utf-8"):
        r = json.loads(l); dst[r["id"]] = r
    assert set(src) == set(dst) and src, (kind, len(src), len(dst))
    for i, s in src.items():
        d = dst[i]
        for k, v in s.items():
            assert d.get(k) == v, (kind, i, k, v, d.get(k))
        for k, v in d.items():  # the table's other columns: null in this row
            assert k in s or v is None, (kind, i, k, v)
    print(kind, "equal", len(src))
PY
    grep -rqa -- "$PG_PASSWORD" st st2 && fail "password in the state"
    no_secrets st st2
    ;;
  bt_metrics_progress)
    setup_dest
    make_jsonl in 120
    # Served while the copy runs and for --metrics-linger after it; SIGTERM ends the linger (exit 0).
    BT_DEST_API_KEY=$dst_key "$ferry" copy --from "jsonl://$work/in" --to "$dst/target/dataset/m" -s st --batch-rows 25 \
      --metrics-addr 127.0.0.1:0 --metrics-linger 120 --progress-interval 0 >copy.txt 2>&1 &
    cp=$!
    pids+=($cp)
    for _ in $(seq 1 300); do grep -q 'metrics linger' copy.txt && break; sleep 0.1; done
    murl=$(grep -o -m1 'metrics url=http://127\.0\.0\.1:[0-9]*/metrics' copy.txt | cut -d= -f2)
    [ -n "$murl" ] && grep -q 'metrics linger' copy.txt || fail "no metrics url or linger line: $(cat copy.txt)"
    m=$(curl -s -f "$murl") || fail "scrape failed"
    expect_line "$m" '^ferry_copy_rows_total\{from="jsonl",to="braintrust"\} 120$'
    expect_line "$m" '^ferry_copy_requests_total\{from="jsonl",to="braintrust",op="write"\} 5$'
    expect_line "$m" '^ferry_copy_bytes_total\{from="jsonl",to="braintrust"\} [1-9][0-9]*$'
    expect_line "$m" '^ferry_http_requests_total\{side="destination",method="POST",endpoint="/logs3",status="200"\} 5$'
    expect_line "$m" '^process_resident_memory_bytes [1-9]'
    grep -q -- "$dst_key" <<<"$m" && fail "the key is in the metrics"
    kill -TERM $cp
    wait $cp
    rc=$?
    [ $rc -eq 0 ] || fail "copy after the linger: exit $rc: $(cat copy.txt)"
    # Progress lines after every batch with --progress-interval 0: rows copied and rows/s.
    [ "$(grep -c 'copy progress rows=[0-9]* rows_per_s=[0-9]* batches=' copy.txt)" -eq 5 ] || fail "progress lines: $(cat copy.txt)"
    expect_line "$(cat copy.txt)" "copy progress rows=120 rows_per_s=[0-9]+ batches=5 "
    ;;
  bt_bad_input_named)
    setup_source 50
    setup_dest
    host=${src#braintrust+http://}
    out=$("$ferry" copy --from "braintrust+http://me:$src_key@$host/seed-project-0/logs" --to "jsonl://$work/o" -s s1 2>&1) &&
      fail "a key in the URI was accepted"
    expect_line "$out" "an API key or user in the URI is refused: set BT_SOURCE_API_KEY"
    grep -q -- "$src_key" <<<"$out" && fail "key printed: $out"
    out=$("$ferry" copy --from "$src/seed-project-0/logs" --to "jsonl://$work/o" -s s2 2>&1) && fail "no key accepted"
    expect_line "$out" "${src//+/\\+}/seed-project-0/logs: no API key: set BT_SOURCE_API_KEY"
    out=$(BT_SOURCE_API_KEY=wrong-key "$ferry" copy --from "$src/seed-project-0/logs" --to "jsonl://$work/o" -s s3 2>&1) &&
      fail "a wrong key was accepted"
    expect_line "$out" "GET /v1/project failed: .*401.* \(the API key was rejected: check BT_SOURCE_API_KEY\)"
    out=$(BT_SOURCE_API_KEY=$src_key "$ferry" copy --from "$src/no-such-project/logs" --to "jsonl://$work/o" -s s4 2>&1) &&
      fail "a missing project was accepted"
    expect_line "$out" "project 'no-such-project' not found on http://"
    out=$(BT_SOURCE_API_KEY=$src_key "$ferry" copy --from "$src/seed-project-0/dataset/nope" --to "jsonl://$work/o" -s s5 2>&1) &&
      fail "a missing dataset was accepted"
    expect_line "$out" "dataset 'nope' not found in project 'seed-project-0'"
    make_jsonl in 5
    out=$(BT_DEST_API_KEY=$dst_key "$ferry" copy --from "jsonl://$work/in" --to "$dst/nowhere/dataset/d" -s s6 2>&1) &&
      fail "a sink in a missing project was accepted"
    expect_line "$out" "project 'nowhere' not found on http://.*a sink creates a dataset or experiment only in an existing project"
    printf '{"input": 1}\n' >in/norow.jsonl
    out=$(BT_DEST_API_KEY=$dst_key "$ferry" copy --from "jsonl://$work/in" --to "$dst/target/dataset/d" -s s7 2>&1) &&
      fail "a row without id was accepted"
    expect_line "$out" "has no usable key field 'id'"
    out=$(BT_DEST_API_KEY=$dst_key "$ferry" copy --from "jsonl://$work/in" --to "$dst/target/dataset/d" -s s7 --rollback 2>&1) &&
      fail "a rollback of a Braintrust sink was accepted"
    expect_line "$out" "Braintrust sinks are not rolled back"
    out=$(BT_SOURCE_API_KEY=$src_key "$ferry" copy --from "$src/seed-project-0/tables/x" --to "jsonl://$work/o" -s s8 2>&1) &&
      fail "a bad path was accepted"
    expect_line "$out" "not a Braintrust object path"
    no_secrets s1 s2 s3 s4 s5 s6 s7 s8
    ;;
  *) fail "unknown case $case_name" ;;
esac
echo "ok $case_name"
