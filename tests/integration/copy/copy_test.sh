#!/usr/bin/env bash
# `ferry copy` end to end through the real binary: jsonl and sqlite connectors, and postgresql / redis
# against the real servers pg_server.sh / redis_server.sh started (their state file is the third
# argument); SIGKILL + resume, exact copies, bad input named in one line.
# Usage: copy_test.sh <path to ferry> <case> [<state file of pg_server.sh or redis_server.sh, for the pg_* and redis_* cases>]
set -u
ferry=$1
case_name=$2
server_state=${3:-}
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

# pg_setup: a database of its own for this case on the suite's server; sets $pg (URI without table)
pg_setup() {
  [ -n "$server_state" ] && [ -f "$server_state" ] || fail "no PostgreSQL server (state file '$server_state')"
  . "$server_state"
  db=c_${case_name}
  PGPASSWORD=$PG_PASSWORD psql -q -h 127.0.0.1 -p "$PG_PORT" -U ferry -d postgres -c "DROP DATABASE IF EXISTS $db" \
    -c "CREATE DATABASE $db" >/dev/null 2>&1 || fail "cannot create database $db"
  pg="postgresql://ferry:$PG_PASSWORD@127.0.0.1:$PG_PORT/$db"
}
psql_db() { PGPASSWORD=$PG_PASSWORD psql -q -X -v ON_ERROR_STOP=1 -At -h 127.0.0.1 -p "$PG_PORT" -U ferry -d "$db" "$@"; }

# pg_equals_jsonl TABLE DIR: the table's rows (row_to_json) equal the rows of DIR's *.jsonl files, by id.
pg_equals_jsonl() {
  psql_db -c "SELECT row_to_json(t) FROM \"$1\" t" >pgrows.jsonl || fail "cannot read table $1"
  python3 - pgrows.jsonl "$2" <<'PY' || fail "table $1 differs from $2"
import glob, json, sys
dst = {}
for l in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(l); dst[r["id"]] = r
src = {}
for p in sorted(glob.glob(sys.argv[2] + "/*.jsonl")):
    for l in open(p, encoding="utf-8"):
        r = json.loads(l)
        if r["id"] in src: print("duplicate id", r["id"], "in", sys.argv[2]); sys.exit(1)
        src[r["id"]] = r
if src != dst:
    diff = [k for k in src if src.get(k) != dst.get(k)][:3]
    print(len(src), "vs", len(dst), "rows; differ:", [(src.get(k), dst.get(k)) for k in diff]); sys.exit(1)
print("equal", len(src))
PY
}

# pg_equals_jsonl_nulls TABLE DIR: as pg_equals_jsonl, a field absent from a row equals the column's null.
pg_equals_jsonl_nulls() {
  psql_db -c "SELECT row_to_json(t) FROM \"$1\" t" >pgrows.jsonl || fail "cannot read table $1"
  python3 - pgrows.jsonl "$2" <<'PY' || fail "table $1 differs from $2"
import glob, json, sys
dst = {}
for l in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(l); dst[r["id"]] = {k: v for k, v in r.items() if v is not None}
src = {}
for p in sorted(glob.glob(sys.argv[2] + "/*.jsonl")):
    for l in open(p, encoding="utf-8"):
        r = json.loads(l); src[r["id"]] = {k: v for k, v in r.items() if v is not None}
if src != dst:
    print(src, "vs", dst); sys.exit(1)
PY
}

# kill_then_resume N FROM TO [flags]: killed after the sink acked batch N (before the commit), resumed.
kill_then_resume() {
  local n=$1 from=$2 to=$3; shift 3
  FERRY_FAULT_COPY_KILL_AFTER_WRITE=$n "$ferry" copy --from "$from" --to "$to" -s st "$@" >kill.txt 2>&1
  [ $? -eq 137 ] || fail "expected SIGKILL (137): $(cat kill.txt)"
  out=$("$ferry" copy --from "$from" --to "$to" -s st "$@" 2>&1) || fail "resume failed: $out"
}

# redis_setup DB: the suite's server, database DB emptied; sets $redis (URI without query)
redis_setup() {
  [ -n "$server_state" ] && [ -f "$server_state" ] || fail "no Redis server (state file '$server_state')"
  . "$server_state"
  rdb=$1
  rcli FLUSHDB >/dev/null || fail "cannot reach redis"
  redis="redis://:$REDIS_PASSWORD@127.0.0.1:$REDIS_PORT/$rdb"
}
rcli() { REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -n "$rdb" "$@"; }
# redis_fill N: user:1..N (strings holding JSON objects for odd i, hashes for even i), other:1..50 strings
redis_fill() {
  python3 - "$1" <<'PY' | rcli --pipe >/dev/null || fail "cannot fill redis"
import json, sys
def cmd(*a):
    out = f"*{len(a)}\r\n"
    for x in a:
        b = x.encode()
        out += f"${len(b)}\r\n{x}\r\n"
    return out
n = int(sys.argv[1])
w = sys.stdout.write
for i in range(1, n + 1):
    if i % 2: w(cmd("SET", f"user:{i}", json.dumps({"n": i, "name": f"u{i} é", "score": i / 3})))
    else: w(cmd("HSET", f"user:{i}", "name", f"u{i}", "age", str(i % 90)))
for i in range(1, 51): w(cmd("SET", f"other:{i}", "x"))
PY
}
# redis_equals_jsonl DIR N [json]: DIR's part files hold user:1..N exactly once each, values as stored.
redis_equals_jsonl() {
  python3 - "$@" <<'PY' || fail "jsonl parts differ from redis"
import glob, json, sys
d, n, as_json = sys.argv[1], int(sys.argv[2]), len(sys.argv) > 3
rows = [json.loads(l) for p in sorted(glob.glob(d + "/part-*.jsonl")) for l in open(p, encoding="utf-8")]
ids = [r["id"] for r in rows]
if len(ids) != len(set(ids)): print("a key copied twice"); sys.exit(1)
want = {}
for i in range(1, n + 1):
    if i % 2:
        v = {"n": i, "name": f"u{i} é", "score": i / 3}
        want[f"user:{i}"] = {"id": f"user:{i}", "type": "string", "value": v if as_json else json.dumps(v)}
    else:
        want[f"user:{i}"] = {"id": f"user:{i}", "type": "hash", "value": {"name": f"u{i}", "age": str(i % 90)}}
got = {r["id"]: r for r in rows}
if got != want:
    diff = [k for k in want if want.get(k) != got.get(k)][:2]
    print(len(want), "vs", len(got), [(want.get(k), got.get(k)) for k in diff]); sys.exit(1)
print("equal", len(want))
PY
}

case "$case_name" in
  redis_to_jsonl_kill_resume)
    redis_setup 1
    redis_fill 1500
    # Killed after the sink acked batch 3, resumed from the committed SCAN cursor: every key once.
    kill_then_resume 3 "$redis?match=user:*&json=1" "jsonl://$work/out" --batch-rows 100
    expect_line "$out" "1500 in total"
    redis_equals_jsonl out 1500 json
    ;;
  redis_to_sqlite_strings_and_hashes)
    redis_setup 2
    redis_fill 300
    out=$("$ferry" copy --from "$redis?match=user:*" --to "sqlite://$work/r.db?table=kv" -s st --batch-rows 64 2>&1) ||
      fail "copy failed: $out"
    expect_line "$out" "copy: 300 rows written"
    "$ferry" copy --from "sqlite://$work/r.db?table=kv" --to "jsonl://$work/back" -s st2 >/dev/null 2>&1 || fail "copy back failed"
    python3 - back <<'PY' || fail "values differ"
import glob, json, sys
rows = {json.loads(l)["id"]: json.loads(l) for p in sorted(glob.glob(sys.argv[1] + "/part-*.jsonl")) for l in open(p, encoding="utf-8")}
assert len(rows) == 300, len(rows)
assert json.loads(rows["user:3"]["value"]) == {"n": 3, "name": "u3 é", "score": 1.0}, rows["user:3"]
assert json.loads(rows["user:4"]["value"]) == {"name": "u4", "age": "4"} and rows["user:4"]["type"] == "hash", rows["user:4"]
PY
    ;;
  redis_bad_input_named)
    redis_setup 3
    out=$("$ferry" copy --from "redis://:wrong-pass@127.0.0.1:$REDIS_PORT/3?match=*" --to "jsonl://$work/o" -s st 2>&1) &&
      fail "wrong password accepted"
    expect_line "$out" "redis://:\[REDACTED\]@127.0.0.1:$REDIS_PORT/3\?match=\*: AUTH: WRONGPASS"
    grep -q wrong-pass <<<"$out" && fail "password printed: $out"
    closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    out=$("$ferry" copy --from "redis://127.0.0.1:$closed/0" --to "jsonl://$work/o" -s st 2>&1) && fail "unreachable accepted"
    expect_line "$out" "redis://127.0.0.1:$closed/0: cannot connect: Connection refused"
    rcli SET k:1 '{"a":1}' >/dev/null && rcli SET k:2 'not json' >/dev/null
    out=$("$ferry" copy --from "$redis?match=k:*&json=1" --to "jsonl://$work/o" -s st2 2>&1) && fail "non-JSON value accepted"
    expect_line "$out" "key k:2: value is not JSON \(json=1\): not json"
    rcli FLUSHDB >/dev/null && rcli RPUSH l:1 a >/dev/null
    out=$("$ferry" copy --from "$redis?match=l:*" --to "jsonl://$work/o" -s st3 2>&1) && fail "list accepted"
    expect_line "$out" "key l:1 is a list \(only strings and hashes are copied\)"
    printf 'SET b:1 "\xff\xfe"\n' | rcli >/dev/null
    out=$("$ferry" copy --from "$redis?match=b:*" --to "jsonl://$work/o" -s st4 2>&1) && fail "non-UTF-8 accepted"
    expect_line "$out" "key b:1: value is not UTF-8 text"
    grep -rqa -- "$REDIS_PASSWORD" st2 st3 st4 && fail "password in the state"
    ;;
  pg_jsonl_to_pg_kill_resume)
    pg_setup
    make_jsonl in 900
    kill_then_resume 5 "jsonl://$work/in" "$pg?table=rows" --batch-rows 40
    expect_line "$out" "copy: 740 rows written .*40 re-sent after a resume\), 900 in total"
    pg_equals_jsonl rows in
    [ "$(psql_db -c "SELECT data_type FROM information_schema.columns WHERE table_name='rows' AND column_name='meta'")" = jsonb ] ||
      fail "objects should land in a jsonb column"
    ;;
  pg_to_jsonl_kill_resume)
    pg_setup
    psql_db -c "CREATE TABLE events (id text PRIMARY KEY, n bigint, score double precision, doc jsonb, note text)" \
      -c "INSERT INTO events SELECT 'e' || lpad(i::text, 5, '0'), i, i / 7.0, jsonb_build_object('i', i, 'tags', jsonb_build_array('a', i % 3)), CASE WHEN i % 4 = 0 THEN NULL ELSE E'line\\n' || i END FROM generate_series(1, 650) i" ||
      fail "cannot fill the source table"
    kill_then_resume 4 "$pg?table=events" "jsonl://$work/out" --batch-rows 100
    expect_line "$out" "copy: 350 rows written .*100 re-sent after a resume\), 650 in total"
    psql_db -c "SELECT row_to_json(t) FROM events t ORDER BY id" >expected.jsonl
    python3 - expected.jsonl out <<'PY' || fail "jsonl parts differ from the table"
import glob, json, sys
src = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
dst = [json.loads(l) for p in sorted(glob.glob(sys.argv[2] + "/part-*.jsonl")) for l in open(p, encoding="utf-8")]
if src != dst: print(len(src), "vs", len(dst), next(((a, b) for a, b in zip(src, dst) if a != b), None)); sys.exit(1)
print("equal", len(src))
PY
    ;;
  pg_sqlite_to_pg_kill_resume)
    pg_setup
    make_sqlite src.db 500
    psql_db -c "CREATE TABLE items (id bigint PRIMARY KEY, name text, score double precision, note text, extra text DEFAULT 'kept')" ||
      fail "cannot create the sink table"
    kill_then_resume 2 "sqlite://$work/src.db?table=items" "$pg?table=items" --batch-rows 120
    expect_line "$out" "500 in total"
    "$ferry" copy --from "$pg?table=items" --to "jsonl://$work/back" -s st2 >/dev/null 2>&1 || fail "copy back failed"
    python3 - src.db back <<'PY' || fail "table differs from the sqlite source"
import glob, json, sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.row_factory = sqlite3.Row
src = [dict(r, extra="kept") for r in (dict(x) for x in c.execute("SELECT * FROM items ORDER BY id"))]
dst = [json.loads(l) for p in sorted(glob.glob(sys.argv[2] + "/part-*.jsonl")) for l in open(p, encoding="utf-8")]
if src != dst: print(len(src), "vs", len(dst), next(((a, b) for a, b in zip(src, dst) if a != b), None)); sys.exit(1)
print("equal", len(src))
PY
    ;;
  pg_sqlite_schema_conversion)
    pg_setup
    python3 - v1.db <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.executescript("""
CREATE TABLE checkpoints (id INTEGER PRIMARY KEY, thread TEXT NOT NULL, step INT NOT NULL DEFAULT 0, score REAL,
  ok BOOLEAN DEFAULT 0, created DATETIME, amount DECIMAL(10,2), tag VARCHAR(20) DEFAULT 'none');
CREATE INDEX ck_thread ON checkpoints(thread, step);
CREATE UNIQUE INDEX ck_tag ON checkpoints(tag);
CREATE TABLE loose (id INTEGER PRIMARY KEY, anything, n INTEGER);
""")
c.executemany("INSERT INTO checkpoints VALUES (?,?,?,?,?,?,?,?)",
              [(i, f"t{i % 5}", i, i / 4, i % 2, "2024-01-02 03:04:05", i * 1.5, f"tag{i}") for i in range(1, 301)])
c.executemany("INSERT INTO loose VALUES (?,?,?)", [(1, "x", 5), (2, 3, "seven")])
c.commit()
PY
    from="sqlite://$work/v1.db?table=checkpoints"
    out=$("$ferry" copy --from "$from" --to "$pg?table=checkpoints" --dry-run -s st 2>&1) || fail "dry run failed: $out"
    expect_line "$out" '^CREATE TABLE "checkpoints" \("id" bigint, "thread" text NOT NULL, "step" bigint NOT NULL DEFAULT 0, "score" double precision, "ok" boolean DEFAULT false, "created" text, "amount" numeric, "tag" text DEFAULT '"'none'"', PRIMARY KEY \("id"\)\);$'
    expect_line "$out" '^CREATE UNIQUE INDEX "checkpoints_tag_key" ON "checkpoints" \("tag"\);$'
    expect_line "$out" '^CREATE INDEX "checkpoints_thread_step_idx" ON "checkpoints" \("thread", "step"\);$'
    [ ! -e st ] || fail "a dry run created the state dir"
    [ -z "$(psql_db -c "SELECT to_regclass('checkpoints')")" ] || fail "a dry run created the table"
    # The table is created in the first batch's transaction; killed after batch 2, resumed.
    kill_then_resume 2 "$from" "$pg?table=checkpoints" --batch-rows 64
    expect_line "$out" "300 in total"
    [ "$(psql_db -c "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'checkpoints'")" = \
      checkpoints_pkey,checkpoints_tag_key,checkpoints_thread_step_idx ] || fail "indexes not converted"
    psql_db -c "SELECT row_to_json(t) FROM checkpoints t ORDER BY id" >got.jsonl
    python3 - v1.db got.jsonl <<'PY' || fail "converted table differs"
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.row_factory = sqlite3.Row
src = [dict(r, ok=bool(r["ok"])) for r in (dict(x) for x in c.execute("SELECT * FROM checkpoints ORDER BY id"))]
dst = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
if src != dst: print(next(((a, b) for a, b in zip(src, dst) if a != b), (len(src), len(dst)))); sys.exit(1)
PY
    # Lossy conversions are named and refused (nothing created) unless --allow-lossy.
    out=$("$ferry" copy --from "sqlite://$work/v1.db?table=loose" --to "$pg?table=loose" --dry-run -s st2 2>&1) && fail "lossy dry run exit 0"
    expect_line "$out" "lossy: column anything \(no declared type\): values of any type; converted to text"
    expect_line "$out" "lossy: column n \(INTEGER -> bigint\): 1 values of another type; the column becomes text"
    out=$("$ferry" copy --from "sqlite://$work/v1.db?table=loose" --to "$pg?table=loose" -s st2 2>&1) && fail "lossy copy accepted"
    expect_line "$out" "the schema conversion is lossy: column anything .*\(2 in all, listed by --dry-run; --allow-lossy accepts them\)"
    [ -z "$(psql_db -c "SELECT to_regclass('loose')")" ] || fail "a refused conversion created the table"
    out=$("$ferry" copy --from "sqlite://$work/v1.db?table=loose" --to "$pg?table=loose" -s st3 --allow-lossy 2>&1) || fail "allowed copy failed: $out"
    [ "$(psql_db -c "SELECT n FROM loose WHERE id = 2")" = seven ] || fail "lossy column not converted to text"
    # Rollback drops what the copy created (the table, its state dir) ...
    out=$("$ferry" copy --from "$from" --to "$pg?table=checkpoints" -s st --rollback 2>&1) || fail "rollback failed: $out"
    expect_line "$out" "rollback: dropped table checkpoints of postgresql://ferry:\[REDACTED\]@.*, removed state dir st"
    [ -z "$(psql_db -c "SELECT to_regclass('checkpoints')")" ] || fail "rollback left the table"
    [ ! -e st ] || fail "rollback left the state dir"
    # ... and refuses a table that existed before the copy.
    psql_db -c "CREATE TABLE pre (id bigint PRIMARY KEY, thread text, step bigint, score float8, ok boolean, created text, amount numeric, tag text)"
    "$ferry" copy --from "$from" --to "$pg?table=pre" -s st5 >/dev/null 2>&1 || fail "copy into an existing table failed"
    out=$("$ferry" copy --from "$from" --to "$pg?table=pre" -s st5 --rollback 2>&1) && fail "rollback of a pre-existing table accepted"
    expect_line "$out" "the sink table existed before this copy.*nothing dropped"
    [ "$(psql_db -c "SELECT count(*) FROM pre")" = 300 ] || fail "refused rollback touched the table"
    ;;
  pg_bad_input_named)
    pg_setup
    . "$server_state"
    out=$("$ferry" copy --from "postgresql://ferry:not-the-password@127.0.0.1:$PG_PORT/$db?table=t" --to "jsonl://$work/o" -s st 2>&1) &&
      fail "wrong password accepted"
    expect_line "$out" "postgresql://ferry:\[REDACTED\]@127.0.0.1:$PG_PORT/$db\?table=t: cannot connect: .*password authentication failed"
    grep -q not-the-password <<<"$out" && fail "password printed: $out"
    closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    out=$("$ferry" copy --from "postgresql://ferry:x@127.0.0.1:$closed/$db?table=t" --to "jsonl://$work/o" -s st 2>&1) &&
      fail "unreachable server accepted"
    expect_line "$out" "127.0.0.1:$closed/$db\?table=t: cannot connect: .*Connection refused"
    [ "$(wc -l <<<"$out")" -eq 1 ] || fail "expected one line: $out"
    out=$("$ferry" copy --from "$pg?table=missing" --to "jsonl://$work/o" -s st 2>&1) && fail "missing table accepted"
    expect_line "$out" "table missing not found"
    psql_db -c "CREATE TABLE d (id int PRIMARY KEY, grp text)" -c "INSERT INTO d VALUES (1,'a'),(2,'b'),(3,'a')"
    out=$("$ferry" copy --from "$pg?table=d&key=grp" --to "jsonl://$work/o" -s st 2>&1) && fail "duplicate key column accepted"
    expect_line "$out" "key column grp has duplicate values \(grp=a appears 2 times\)"
    printf '{"id":1,"grp":"x"}\n{"id":2,"nope":1}\n' >in.jsonl && mkdir in && mv in.jsonl in/
    out=$("$ferry" copy --from "jsonl://$work/in" --to "$pg?table=d" -s st3 2>&1) && fail "unknown column accepted"
    expect_line "$out" "row 2 of the batch \(key 2\): field 'nope' is not a column of table d"
    [ "$(psql_db -c "SELECT count(*) FROM d")" = 3 ] || fail "a failed batch left rows behind"
    # The password is in no state file (URIs are recorded redacted) and in no output.
    "$ferry" copy --from "$pg?table=d" --to "jsonl://$work/o" -s st4 >ok.txt 2>&1 || fail "copy failed: $(cat ok.txt)"
    grep -rqa -- "$PG_PASSWORD" st3 st4 ok.txt && fail "password found in state or output"
    ;;
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
    # The copy created the table: --rollback drops it and removes the state dir.
    out=$("$ferry" copy --from "jsonl://$work/in" --to "$to" -s st --rollback 2>&1) || fail "rollback failed: $out"
    [ "$(python3 -c "import sqlite3;print(sqlite3.connect('out.db').execute(\"select count(*) from sqlite_master where name='rows'\").fetchone()[0])")" = 0 ] ||
      fail "rollback left the table"
    [ ! -e st ] || fail "rollback left the state dir"
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
    python3 -c "import sqlite3; c=sqlite3.connect('src.db'); c.execute(\"INSERT INTO items VALUES (9, CAST(x'fffe' AS TEXT), 1, NULL)\"); c.commit()"
    out=$("$ferry" copy --from "sqlite://$work/src.db?table=items" --to "jsonl://$work/o" -s st 2>&1) && fail "non-UTF-8 accepted"
    expect_line "$out" "row with key 9: column name is not UTF-8 text"
    out=$("$ferry" copy --from "nosuch://x" --to "jsonl://$work/o" -s st 2>&1) && fail "unknown scheme accepted"
    expect_line "$out" "unknown source scheme 'nosuch'"
    mkdir bad && printf '{"id":1}\n{"id":2,\n' >bad/x.jsonl
    out=$("$ferry" copy --from "jsonl://$work/bad" --to "sqlite://$work/b.db?table=t" -s st2 2>&1) && fail "broken JSON accepted"
    expect_line "$out" "x.jsonl line 2: not JSON"
    [ "$(echo "$out" | grep -c 'error')" -eq 1 ] || fail "expected one error line: $out"
    printf '{"id":1}\n{"id":1}\n' >bad/x.jsonl
    out=$("$ferry" copy --from "jsonl://$work/bad" --to "sqlite://$work/b2.db?table=t" -s st3 2>&1) && fail "duplicate keys accepted"
    expect_line "$out" "key id=1 appears twice in one batch"
    # The table is created from the first batch; a field that only a later batch has is refused.
    printf '{"id":1,"a":1}\n{"id":2,"a":2}\n{"id":3,"zz":3}\n' >bad/x.jsonl
    out=$("$ferry" copy --from "jsonl://$work/bad" --to "sqlite://$work/b3.db?table=t" -s st4 --batch-rows 2 2>&1) && fail "unknown column accepted"
    expect_line "$out" "row 1 of the batch \(key 3\): field 'zz' is not a column of table t"
    # A state dir belongs to one copy: other URIs on it are refused.
    "$ferry" copy --from "jsonl://$work/in" --to "jsonl://$work/o1" -s st5 >/dev/null 2>&1 || fail "first copy failed"
    out=$("$ferry" copy --from "jsonl://$work/in" --to "jsonl://$work/o2" -s st5 2>&1) && fail "other sink on the same state accepted"
    expect_line "$out" "copy_to"
    # A fresh state dir does not mix its batches into another copy's part files.
    out=$("$ferry" copy --from "jsonl://$work/in" --to "jsonl://$work/o1" -s st6 2>&1) && fail "foreign part files accepted"
    expect_line "$out" "jsonl://$work/o1: holds part files of another copy"
    ;;
  transform_end_to_end)
    make_jsonl in 40
    cat >t.yaml <<'YAML'
rules:
  - filter: {field: flag, op: eq, value: true}
  - move_prefix: {from: "sys/", to: "legacy_sys/"}
  - rename: {from: id, to: old_id}
  - source_id: {field: id}
  - cast: {field: old_id, to: string}
  - drop: [meta, score]
  - set: {field: origin, value: v1}
YAML
    out=$("$ferry" copy --from "jsonl://$work/in" --to "jsonl://$work/out" --transform t.yaml -s st --batch-rows 7 2>&1) ||
      fail "copy failed: $out"
    expect_line "$out" "copy: 20 rows written \(20 filtered out"
    python3 - in out <<'PY' || fail "transformed rows differ"
import glob, json, sys
src = [json.loads(l) for p in sorted(glob.glob(sys.argv[1] + "/*.jsonl")) for l in open(p, encoding="utf-8")]
want = [{"name": r["name"], "flag": True, "legacy_sys/tag": r["sys/tag"], "old_id": str(r["id"]), "id": str(r["id"]), "origin": "v1"}
        for r in src if r["flag"]]
got = [json.loads(l) for p in sorted(glob.glob(sys.argv[2] + "/part-*.jsonl")) for l in open(p, encoding="utf-8")]
if want != got: print(want[:1], got[:1]); sys.exit(1)
PY
    # A rule that fails on a row stops the copy with one line naming the rule and the row; the batch
    # holding that row is not committed.
    printf 'rules:\n  - cast: {field: name, to: int}\n' >bad.yaml
    out=$("$ferry" copy --from "jsonl://$work/in" --to "jsonl://$work/out2" --transform bad.yaml -s st2 2>&1) && fail "bad cast accepted"
    expect_line "$out" "transform bad.yaml rule 1 \(cast name to int\): row 1: value \"row\\\\t1 é\" is not an integer"
    [ ! -d out2 ] || [ -z "$(ls out2)" ] || fail "rows written despite the failed transform"
    ;;
  pg_created_table_has_every_field_of_the_batch)
    # A missing sink table is created from the whole first batch: fields that only later rows have are
    # columns too, and a column holding integers and doubles takes doubles (SQLite and PostgreSQL).
    pg_setup
    mkdir in
    printf '%s\n' '{"id":1,"a":1}' '{"id":2,"a":2.5,"b":"x"}' '{"id":3,"c":{"k":[1]},"b":null}' >in/a.jsonl
    out=$("$ferry" copy --from "jsonl://$work/in" --to "sqlite://$work/out.db?table=t" -s st1 2>&1) || fail "sqlite copy failed: $out"
    python3 - <<'PY' || fail "sqlite table t differs from the source"
import json, sqlite3
c = sqlite3.connect("out.db"); c.row_factory = sqlite3.Row
got = {r["id"]: {k: r[k] for k in r.keys() if r[k] is not None} for r in c.execute("SELECT * FROM t")}
want = {1: {"id": 1, "a": 1}, 2: {"id": 2, "a": 2.5, "b": "x"}, 3: {"id": 3, "c": '{"k":[1]}'}}
if got != want: print(got, "!=", want); raise SystemExit(1)
PY
    [ "$(sqlite3 out.db "SELECT type FROM pragma_table_info('t') WHERE name = 'a'")" = REAL ] || fail "sqlite column a is not REAL"
    out=$("$ferry" copy --from "jsonl://$work/in" --to "$pg?table=t" -s st2 2>&1) || fail "pg copy failed: $out"
    pg_equals_jsonl_nulls t in
    [ "$(psql_db -c "SELECT data_type FROM information_schema.columns WHERE table_name = 't' AND column_name = 'a'")" = "double precision" ] ||
      fail "pg column a is not double precision"
    ;;
  pg_sink_column_types_and_merge)
    # The sink writes each value the way the column takes it (COPY text format): arrays as array
    # literals, json/jsonb as JSON, objects into text as the row's own JSON text (key order kept: a
    # jsonb round trip would sort the keys and add spaces), timestamps and numerics parsed by the
    # server; a batch whose keys are partly in the table already is merged by key (other rows kept).
    pg_setup
    psql_db -c "CREATE TABLE m (id bigint PRIMARY KEY, tags text[], nums int[], doc jsonb, raw json, amount numeric, at timestamptz, ok boolean, note text, obj text, code text UNIQUE)" \
      -c "INSERT INTO m (id, note) VALUES (2, 'old'), (50, 'untouched')" || fail "cannot create the sink table"
    mkdir in
    cat >in/a.jsonl <<'EOF2'
{"id":1,"tags":["a","b c","q\"uote","back\\slash",null],"nums":[1,2,3],"doc":{"z":1,"a":[true,null]},"raw":"just a string","amount":1234.5678,"at":"2026-12-04T21:00:00+00:00","ok":true,"note":"tab\there\nnewline","obj":{"b":1,"a":2}}
{"id":2,"tags":[],"nums":null,"doc":"s","raw":{"k":"v"},"amount":0.1,"at":null,"ok":false,"note":"new","obj":[1,"x"]}
{"id":3,"note":"only some fields"}
EOF2
    out=$("$ferry" copy --from "jsonl://$work/in" --to "$pg?table=m" -s st 2>&1) || fail "copy failed: $out"
    expect_line "$out" "copy: 3 rows written"
    got=$(psql_db -F'|' -c "SELECT id, tags, nums, doc, raw, amount, at AT TIME ZONE 'UTC', ok, note, obj FROM m ORDER BY id")
    want=$(printf '%s\n' \
      '1|{a,"b c","q\"uote","back\\slash",NULL}|{1,2,3}|{"a": [true, null], "z": 1}|"just a string"|1234.5678|2026-12-04 21:00:00|t|tab	here' \
      'newline|{"b":1,"a":2}' \
      '2|{}||"s"|{"k":"v"}|0.1||f|new|[1,"x"]' \
      '3||||||||only some fields|' \
      '50||||||||untouched|')
    [ "$got" = "$want" ] || fail "sink values differ:
got:  $got
want: $want"
    # A batch colliding with a row on another unique column: one line, nothing of the batch written.
    printf '{"id":7,"code":"x"}\n{"id":8,"code":"y"}\n' >in2.jsonl && mkdir in2 && mv in2.jsonl in2/
    psql_db -c "UPDATE m SET code = 'y' WHERE id = 50"
    out=$("$ferry" copy --from "jsonl://$work/in2" --to "$pg?table=m" -s st2 2>&1) && fail "a unique violation was accepted"
    expect_line "$out" "duplicate key value violates unique constraint \"m_code_key\""
    [ "$(psql_db -c "SELECT count(*) FROM m WHERE id IN (7, 8)")" = 0 ] || fail "a failed batch left rows behind"
    # Into a table that was empty when the sink opened, a later batch repeating an earlier batch's key
    # (the direct COPY collides, the savepoint falls back to the upsert): the later row wins.
    printf '{"id":1,"v":"a"}\n{"id":2,"v":"b"}\n{"id":1,"v":"c"}\n{"id":3,"v":"d"}\n' >in3.jsonl && mkdir in3 && mv in3.jsonl in3/
    psql_db -c "CREATE TABLE e (id int PRIMARY KEY, v text)"
    out=$("$ferry" copy --from "jsonl://$work/in3" --to "$pg?table=e" -s st3 --batch-rows 2 2>&1) || fail "copy failed: $out"
    [ "$(psql_db -c "SELECT string_agg(id || v, ',' ORDER BY id) FROM e")" = "1c,2b,3d" ] || fail "the repeated key was not replaced"
    ;;
  pages_cut_at_bytes)
    # A page (one sink batch) holds at most --batch-rows rows and about 4 MB of row text: 60 rows of
    # ~200 KB with the default batch size are several batches of at most ~4 MB each, every row once.
    mkdir in
    python3 -c 'import json
with open("in/big.jsonl", "w") as f:
    for i in range(1, 61): f.write(json.dumps({"id": i, "blob": chr(97 + i % 26) * 200000}) + "\n")'
    out=$("$ferry" copy --from "jsonl://$work/in" --to "jsonl://$work/out" -s st 2>&1) || fail "copy failed: $out"
    expect_line "$out" "copy: 60 rows written"
    n=$(ls out/part-*.jsonl | wc -l)
    [ "$n" -ge 3 ] || fail "expected the 12 MB of rows in several batches, got $n part file(s)"
    for f in out/part-*.jsonl; do [ "$(stat -c %s "$f")" -le $((4 * 1024 * 1024 + 400000)) ] || fail "$f is larger than ~4 MB"; done
    python3 - in out <<'PY' || fail "rows differ"
import glob, json, sys
a = [json.loads(l) for l in open(sys.argv[1] + "/big.jsonl")]
b = [json.loads(l) for p in sorted(glob.glob(sys.argv[2] + "/part-*.jsonl")) for l in open(p)]
sys.exit(a != b)
PY
    # ... and reading SQLite (the rows of the JSONL copied back into a table first).
    "$ferry" copy --from "jsonl://$work/in" --to "sqlite://$work/big.db?table=big" -s st2 >/dev/null 2>&1 || fail "copy to sqlite failed"
    out=$("$ferry" copy --from "sqlite://$work/big.db?table=big" --to "jsonl://$work/out2" -s st3 2>&1) || fail "copy failed: $out"
    expect_line "$out" "copy: 60 rows written"
    [ "$(ls out2/part-*.jsonl | wc -l)" -ge 3 ] || fail "expected several batches reading SQLite"
    python3 - in out2 <<'PY' || fail "rows read from SQLite differ"
import glob, json, sys
a = [json.loads(l) for l in open(sys.argv[1] + "/big.jsonl")]
b = [json.loads(l) for p in sorted(glob.glob(sys.argv[2] + "/part-*.jsonl")) for l in open(p)]
sys.exit(a != b)
PY
    ;;
  pg_pages_cut_at_bytes)
    # The same bound reading PostgreSQL: the page size follows the last page's bytes per row.
    pg_setup
    psql_db -c "CREATE TABLE big (id int PRIMARY KEY, blob text)" \
      -c "INSERT INTO big SELECT i, repeat(chr(97 + i % 26), 200000) FROM generate_series(1, 60) i" || fail "cannot fill the table"
    out=$("$ferry" copy --from "$pg?table=big" --to "jsonl://$work/out" -s st 2>&1) || fail "copy failed: $out"
    expect_line "$out" "copy: 60 rows written"
    n=$(ls out/part-*.jsonl | wc -l)
    [ "$n" -ge 3 ] || fail "expected the 12 MB of rows in several batches, got $n part file(s)"
    for f in out/part-*.jsonl; do [ "$(stat -c %s "$f")" -le $((4 * 1024 * 1024 + 400000)) ] || fail "$f is larger than ~4 MB"; done
    [ "$(cat out/part-*.jsonl | python3 -c 'import json,sys; print(sum(1 for l in sys.stdin if len(json.loads(l)["blob"]) == 200000))')" = 60 ] ||
      fail "rows differ"
    ;;
  *) fail "unknown case $case_name" ;;
esac
echo "PASS $case_name"
