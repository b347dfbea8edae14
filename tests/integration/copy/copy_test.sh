#!/usr/bin/env bash
# `ferry copy` end to end through the real binary: jsonl and sqlite connectors (and postgresql when
# COPY_PG_ENV names the server started by pg_server.sh), SIGKILL + resume, exact copies, bad input.
# Usage: copy_test.sh <path to ferry> <case>
set -u
ferry=$1
case_name=$2
work=$(mktemp -d)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
unset MIGRATION_STATE_DIR LOG_LEVEL LOG_FORMAT

fail() { echo "FAIL: $*"; exit 1; }
expect_line() {  # expect_line <output> <regex>
  grep -Eq -- "$2" <<<"$1" || fail "expected /$2/ in: $1"
}

# make_jsonl DIR N: N rows over two files (ids 1..N), nested values, tabs, unicode and a sys/ field.
make_jsonl() {
  mkdir -p "$1"
  python3 - "$1" "$2" <<'PY'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
for name, ids in (("a.jsonl", range(1, n // 2 + 1)), ("b.jsonl", range(n // 2 + 1, n + 1))):
    with open(f"{d}/{name}", "w") as f:
        for i in ids:
            f.write(json.dumps({"id": i, "name": f"row\t{i} é", "score": i / 7, "meta": {"k": [i, "x"]},
                                "sys/tag": f"t{i % 5}", "flag": i % 2 == 0}, ensure_ascii=False) + "\n")
PY
}

# make_sqlite DB N: table items(id INTEGER PRIMARY KEY, name TEXT, score REAL, note TEXT NULL)
make_sqlite() {
  python3 - "$1" "$2" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, score REAL, note TEXT)")
c.executemany("INSERT INTO items VALUES (?,?,?,?)",
              [(i, f"item {i} ü", i * 0.25, None if i % 3 else f"n{i}") for i in range(1, int(sys.argv[2]) + 1)])
c.commit()
PY
}

# jsonl_equals_sqlite DIR DB TABLE: every row of DIR is in TABLE, field for field (objects as JSON text,
# booleans as 0/1), and TABLE holds nothing else.
jsonl_equals_sqlite() {
  python3 - "$@" <<'PY' || fail "sqlite table differs from the jsonl source"
import glob, json, sqlite3, sys
d, db, table = sys.argv[1:4]
src = {}
for p in sorted(glob.glob(d + "/*.jsonl")):
    for line in open(p, encoding="utf-8"):
        r = json.loads(line)
        src[r["id"]] = {k: (json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else int(v) if isinstance(v, bool) else v) for k, v in r.items()}
c = sqlite3.connect(db)
c.row_factory = sqlite3.Row
dst = {r["id"]: {k: r[k] for k in r.keys()} for r in c.execute(f'SELECT * FROM "{table}"')}
if src != dst:
    missing = set(src) - set(dst); extra = set(dst) - set(src)
    diff = [k for k in src if k in dst and src[k] != dst[k]][:3]
    print("missing", sorted(missing)[:5], "extra", sorted(extra)[:5], "differ", [(src[k], dst[k]) for k in diff])
    sys.exit(1)
print("equal", len(src))
PY
}

# sqlite_equals_jsonl DB TABLE DIR: the part files hold exactly the table's rows, in key order, once.
sqlite_equals_jsonl() {
  python3 - "$@" <<'PY' || fail "jsonl parts differ from the sqlite source"
import glob, json, sqlite3, sys
db, table, d = sys.argv[1:4]
c = sqlite3.connect(db)
c.row_factory = sqlite3.Row
src = [{k: r[k] for k in r.keys()} for r in c.execute(f'SELECT * FROM "{table}" ORDER BY id')]
dst = [json.loads(l) for p in sorted(glob.glob(d + "/part-*.jsonl")) for l in open(p, encoding="utf-8")]
if src != dst:
    print("rows", len(src), "vs", len(dst), "first difference:", next(((a, b) for a, b in zip(src, dst) if a != b), None))
    sys.exit(1)
if glob.glob(d + "/*.tmp"): print("temporary files left"); sys.exit(1)
print("equal", len(src))
PY
}

case "$case_name" in
  jsonl_to_sqlite_kill_resume)
    make_jsonl in 1000
    to="sqlite://$work/out.db?table=rows"
    # Killed right after the sink acknowledged batch 7, before its cursor commit: 350 rows are in the
    # table, the state says 300. The resume re-sends batch 7 (replaced by key) and goes on.
    FERRY_FAULT_COPY_KILL_AFTER_WRITE=7 "$ferry" copy --from "jsonl://$work/in" --to "$to" -s st --batch-rows 50 >out1.txt 2>&1
    rc=$?
    [ "$rc" -eq 137 ] || fail "expected SIGKILL (137), got $rc: $(cat out1.txt)"
    n=$(python3 -c "import sqlite3;print(sqlite3.connect('out.db').execute('select count(*) from rows').fetchone()[0])")
    [ "$n" -eq 350 ] || fail "expected 350 rows written before the kill, found $n"
    out=$("$ferry" copy --from "jsonl://$work/in" --to "$to" -s st --batch-rows 50 2>&1) || fail "resume failed: $out"
    expect_line "$out" "copy: 700 rows written .*50 re-sent after a resume\), 1000 in total"
    jsonl_equals_sqlite in out.db rows
    # An outside SIGKILL at whatever point the copy has reached, then a resume: the same exact table.
    rm -rf st out.db
    "$ferry" copy --from "jsonl://$work/in" --to "$to" -s st --batch-rows 5 >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 200); do
      [ -f out.db ] && [ "$(python3 -c "import sqlite3;print(sqlite3.connect('out.db',timeout=5).execute('select count(*) from rows').fetchone()[0])" 2>/dev/null || echo 0)" -gt 0 ] && break
      sleep 0.02
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    out=$("$ferry" copy --from "jsonl://$work/in" --to "$to" -s st --batch-rows 5 2>&1) || fail "resume failed: $out"
    expect_line "$out" "1000 in total"
    jsonl_equals_sqlite in out.db rows
    ;;
  sqlite_to_jsonl_kill_resume)
    make_sqlite src.db 777
    from="sqlite://$work/src.db?table=items"
    FERRY_FAULT_COPY_KILL_AFTER_WRITE=3 "$ferry" copy --from "$from" --to "jsonl://$work/out" -s st --batch-rows 100 >out1.txt 2>&1
    [ $? -eq 137 ] || fail "expected SIGKILL: $(cat out1.txt)"
    [ "$(ls out | wc -l)" -eq 3 ] || fail "expected 3 part files before the kill: $(ls out)"
    # The resume uses another batch size: batch 3 is written again from the committed cursor, whole.
    out=$("$ferry" copy --from "$from" --to "jsonl://$work/out" -s st --batch-rows 60 2>&1) || fail "resume failed: $out"
    expect_line "$out" "copy: 577 rows written .*777 in total"
    sqlite_equals_jsonl src.db items out
    # A second run copies nothing more (the cursor is at the end) and leaves the files as they are.
    out=$("$ferry" copy --from "$from" --to "jsonl://$work/out" -s st 2>&1) || fail "re-run failed: $out"
    expect_line "$out" "copy: 0 rows written"
    sqlite_equals_jsonl src.db items out
    ;;
  bad_input_named)
    make_jsonl in 10
    out=$("$ferry" copy --from "jsonl://$work/missing" --to "jsonl://$work/o" -s st 2>&1) && fail "missing dir accepted"
    expect_line "$out" "jsonl://$work/missing: directory .* not found"
    out=$("$ferry" copy --from "sqlite://$work/none.db?table=t" --to "jsonl://$work/o" -s st 2>&1) && fail "missing db accepted"
    expect_line "$out" "cannot open database file"
    make_sqlite src.db 5
    out=$("$ferry" copy --from "sqlite://$work/src.db?table=nope" --to "jsonl://$work/o" -s st 2>&1) && fail "missing table accepted"
    expect_line "$out" "table nope not found"
    out=$("$ferry" copy --from "sqlite://$work/src.db?table=items&key=note" --to "jsonl://$work/o" -s st 2>&1) &&
      fail "duplicate key column accepted"
    expect_line "$out" "key column note has duplicate values \(note=NULL appears 4 times\)"
    out=$("$ferry" copy --from "nosuch://x" --to "jsonl://$work/o" -s st 2>&1) && fail "unknown scheme accepted"
    expect_line "$out" "unknown source scheme 'nosuch'"
    mkdir bad && printf '{"id":1}\n{"id":2,\n' >bad/x.jsonl
    out=$("$ferry" copy --from "jsonl://$work/bad" --to "sqlite://$work/b.db?table=t" -s st2 2>&1) && fail "broken JSON accepted"
    expect_line "$out" "x.jsonl line 2: not JSON"
    [ "$(echo "$out" | grep -c 'error')" -eq 1 ] || fail "expected one error line: $out"
    printf '{"id":1}\n{"id":1}\n' >bad/x.jsonl
    out=$("$ferry" copy --from "jsonl://$work/bad" --to "sqlite://$work/b2.db?table=t" -s st3 2>&1) && fail "duplicate keys accepted"
    expect_line "$out" "key id=1 appears twice in one batch"
    printf '{"id":1,"a":1}\n{"id":2,"zz":3}\n' >bad/x.jsonl
    out=$("$ferry" copy --from "jsonl://$work/bad" --to "sqlite://$work/b3.db?table=t" -s st4 2>&1) && fail "unknown column accepted"
    expect_line "$out" "row 2 of the batch \(key 2\): field 'zz' is not a column of table t"
    # A state dir belongs to one copy: other URIs on it are refused.
    "$ferry" copy --from "jsonl://$work/in" --to "jsonl://$work/o1" -s st5 >/dev/null 2>&1 || fail "first copy failed"
    out=$("$ferry" copy --from "jsonl://$work/in" --to "jsonl://$work/o2" -s st5 2>&1) && fail "other sink on the same state accepted"
    expect_line "$out" "copy_to"
    ;;
  *) fail "unknown case $case_name" ;;
esac
echo "PASS $case_name"
