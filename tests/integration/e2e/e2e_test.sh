#!/usr/bin/env bash
# End-to-end cases through the real `ferry` binary: two `ferry serve` emulators on 127.0.0.1 (port 0),
# a source seeded with `ferry seed`, then `ferry migrate` / `verify` / `status` as a user runs them.
# Usage: e2e_test.sh <path to ferry> <case>. Each case is bounded (small org, timeouts) and cleans up.
set -u
ferry=$1
case_name=$2
source "$(dirname "$0")/../lib/harness.sh"

src_key=e2e-source-key-0123456789
dst_key=e2e-dest-key-9876543210

# setup [events per project]: emulators, seeded source, .env
setup() {
  start_emulator source "$src_key" e2e-source; src_url=$url
  start_emulator dest "$dst_key" e2e-dest; dst_url=$url
  BT_SOURCE_API_KEY=$src_key "$ferry" seed --url "$src_url" --projects 2 --events "${1:-1500}" \
    --experiments 2 --experiment-events 100 --datasets 2 --dataset-events 80 --seed 11 >seed.txt ||
    fail "seed failed: $(cat seed.txt)"
  cat >.env <<EOF
BT_SOURCE_URL=$src_url
BT_SOURCE_API_KEY=$src_key
BT_DEST_URL=$dst_url
BT_DEST_API_KEY=$dst_key
MIGRATION_STATE_DIR=$work/state
MIGRATION_RETRY_DELAY=20ms
EOF
}

# json_number FILE KEY: first numeric value of "KEY": in a JSON file
json_number() { grep -o "\"$2\":[0-9]*" "$1" | head -1 | cut -d: -f2; }

case "$case_name" in
  migrate_verify_rerun)
    # Full org migrated, verified equal, a second run creates nothing and re-sends nothing.
    setup
    out=$(timeout 120 "$ferry" migrate 2>&1) || fail "migrate exit $?: $out"
    expect_line "$out" 'streams: [0-9]+ done, 0 failed'
    [ -f state/migration_report.json ] || fail "no migration_report.json"
    [ "$(json_number state/migration_report.json failed)" = 0 ] || fail "report has failures"
    [ "$(json_number state/migration_report.json created)" -gt 20 ] || fail "report: too few created"
    out=$(timeout 120 "$ferry" verify 2>&1) || fail "verify exit $?: $out"
    expect_line "$out" '^ok +stream=logs:'
    expect_line "$out" '^ok +stream=experiment_events:'
    expect_line "$out" '^ok +stream=dataset_events:'
    if grep -q '^DIFF' <<<"$out"; then fail "verify found differences: $out"; fi
    out=$(timeout 120 "$ferry" migrate 2>&1) || fail "second migrate exit $?: $out"
    [ "$(json_number state/migration_report.json created)" = 0 ] || fail "second run created objects"
    expect_line "$out" '0 re-sent'
    out=$("$ferry" status --json) || fail "status exit $?"
    expect_line "$out" '"done":true'
    if grep -q '"done":false' <<<"$out"; then fail "a stream is not done: $out"; fi
    ;;
  verify_detects_difference)
    # A row added behind the migrator's back in the destination makes verify fail, naming the stream.
    setup 300
    timeout 120 "$ferry" migrate >/dev/null 2>&1 || fail "migrate failed"
    pid=$(curl -s -H "Authorization: Bearer $dst_key" "$dst_url/v1/project?project_name=seed-project-0" |
      grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)
    [ -n "$pid" ] || fail "destination project not found"
    curl -s -f -X POST -H "Authorization: Bearer $dst_key" -H 'Content-Type: application/json' \
      "$dst_url/v1/project_logs/$pid/insert" -d '{"events":[{"id":"intruder-row","input":"not from the source"}]}' \
      >/dev/null || fail "insert into destination failed"
    out=$(timeout 120 "$ferry" verify 2>&1)
    rc=$?
    [ $rc -eq 1 ] || fail "verify exit $rc, want 1: $out"
    expect_line "$out" "^DIFF +stream=logs:.*extra=1"
    ;;
  wrong_dest_key)
    # A wrong destination key: one clear line naming the destination, exit non-zero, the key not printed.
    setup 100
    out=$(BT_DEST_API_KEY=wrong-key-abcdef timeout 60 "$ferry" migrate 2>&1)
    rc=$?
    [ $rc -ne 0 ] || fail "migrate with a wrong key exited 0"
    expect_line "$out" '(dest|destination).*(401|auth|key)'
    if grep -q 'wrong-key-abcdef' <<<"$out"; then fail "the key was printed: $out"; fi
    ;;
  resume_other_source_refused)
    # A state dir from another run (other source URL) is refused with exit 2 and a line naming the key.
    setup 100
    timeout 120 "$ferry" migrate >/dev/null 2>&1 || fail "first migrate failed"
    start_emulator other "$src_key" e2e-other; other=$url
    out=$(BT_SOURCE_URL=$other timeout 60 "$ferry" migrate 2>&1)
    rc=$?
    [ $rc -eq 2 ] || fail "exit $rc, want 2: $out"
    expect_line "$out" 'source_url'
    ;;
  kill_and_resume)
    # SIGKILL the migrator mid-stream several times; every resume continues; the end state verifies equal.
    setup 6000
    for delay in 0.4 0.7 1.0; do
      "$ferry" migrate >"kill-$delay.log" 2>&1 &
      p=$!
      sleep "$delay"
      kill -9 "$p" 2>/dev/null
      wait "$p" 2>/dev/null
    done
    out=$(timeout 180 "$ferry" migrate 2>&1) || fail "final migrate exit $?: $out"
    out=$(timeout 120 "$ferry" verify 2>&1) || fail "verify after kills exit $?: $out"
    if grep -q '^DIFF' <<<"$out"; then fail "differences after kills: $out"; fi
    ;;
  state_disk_full)
    # The state dir's disk is "full" (free space below MIGRATION_STATE_MIN_FREE_BYTES): migrate stops
    # with one line naming the state dir and what to do; once space is back a resume completes and
    # verifies equal.
    setup 3000
    out=$(MIGRATION_STATE_MIN_FREE_BYTES=1000000000000000 timeout 120 "$ferry" migrate 2>&1)
    rc=$?
    [ $rc -ne 0 ] || fail "migrate with a full state disk exited 0"
    expect_line "$out" "state dir .*disk full: .*free some space and run again"
    out=$(timeout 180 "$ferry" migrate 2>&1) || fail "resume after disk full exit $?: $out"
    out=$(timeout 120 "$ferry" verify 2>&1) || fail "verify after disk full exit $?: $out"
    ;;
  record_then_replay)
    # migrate --record captures both sides (redacted); `ferry replay` serves the source side, and a
    # migration from the replay into a fresh destination produces the same destination as the original.
    setup 800
    timeout 120 "$ferry" migrate --record "$work/rec" >/dev/null 2>&1 || fail "recorded migrate failed"
    ls "$work"/rec/exchanges-*.jsonl.gz >/dev/null 2>&1 || fail "no recording files in $work/rec"
    for secret in "$src_key" "$dst_key"; do
      if zcat "$work"/rec/exchanges-*.jsonl.gz | grep -aq -- "$secret"; then fail "$secret in the recording"; fi
    done
    "$ferry" replay "$work/rec" --port 0 >"$work/replay.log" 2>&1 &
    pids+=($!)
    rep_url=
    for _ in $(seq 1 100); do
      rep_url=$(grep -o -m1 'http://127\.0\.0\.1:[0-9]*' "$work/replay.log" 2>/dev/null) && break
      sleep 0.1
    done
    [ -n "$rep_url" ] || fail "replay did not start: $(cat "$work/replay.log")"
    start_emulator dest2 "$dst_key" e2e-dest2; dst2_url=$url
    out=$(BT_SOURCE_URL=$rep_url BT_DEST_URL=$dst2_url MIGRATION_STATE_DIR=$work/state2 timeout 120 "$ferry" migrate 2>&1) ||
      fail "migrate from the replay exit $?: $out"
    # The two destinations compared stream by stream (verify discovers objects by name).
    out=$(BT_SOURCE_URL=$dst_url BT_SOURCE_API_KEY=$dst_key BT_DEST_URL=$dst2_url MIGRATION_STATE_DIR=$work/state3 \
      timeout 120 "$ferry" verify 2>&1) || fail "destinations differ (exit $?): $out"
    expect_line "$out" '^ok +stream=logs:'
    if grep -q '^DIFF' <<<"$out"; then fail "destinations differ: $out"; fi
    ;;
  secrets_stay_out_of_state_and_reports)
    # Neither API key nor the seeded AI secret values appear in the state dir, reports or logs.
    setup 200
    timeout 120 "$ferry" --log-level debug migrate >migrate.log 2>&1 || fail "migrate failed"
    timeout 120 "$ferry" verify >>migrate.log 2>&1 || fail "verify failed"
    for f in migrate.log $(find state -type f); do
      for secret in "$src_key" "$dst_key"; do
        if grep -aq -- "$secret" "$f"; then fail "$secret found in $f"; fi
      done
    done
    mode=$(stat -c %a state)
    [ "$mode" = 700 ] || fail "state dir mode $mode, want 700"
    ;;
  secrets_audit)
    # Every file Ferry writes (logs at trace, state dir incl. RocksDB files, reports, recordings) is
    # searched for every secret it saw: both API keys, a proxy URL's password, AI secret and env var
    # values of the org (seeded and added here), and attachment URL signatures. Any hit fails.
    setup 400
    ai_value=audit-ai-secret-value-5a5a5a
    env_value=audit-env-var-value-6b6b6b
    proxy_pass=audit-proxy-pass-7c7c7c
    pid=$(curl -s -H "Authorization: Bearer $src_key" "$src_url/v1/project?project_name=seed-project-0" |
      grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)
    [ -n "$pid" ] || fail "source project not found"
    curl -s -f -X POST -H "Authorization: Bearer $src_key" -H 'Content-Type: application/json' "$src_url/v1/ai_secret" \
      -d "{\"name\":\"AUDIT_KEY\",\"type\":\"openai\",\"secret\":\"$ai_value\"}" >/dev/null || fail "ai_secret create"
    curl -s -f -X POST -H "Authorization: Bearer $src_key" -H 'Content-Type: application/json' "$src_url/v1/env_var" \
      -d "{\"object_type\":\"project\",\"object_id\":\"$pid\",\"name\":\"AUDIT_ENV\",\"value\":\"$env_value\"}" \
      >/dev/null || fail "env_var create"
    # A password-bearing proxy (loopback bypasses it through NO_PROXY, so it is read, parsed, never used).
    export HTTP_PROXY="http://audit-user:$proxy_pass@127.0.0.1:9" HTTPS_PROXY="http://audit-user:$proxy_pass@127.0.0.1:9"
    export NO_PROXY=127.0.0.1,localhost
    out=$(timeout 180 "$ferry" --log-level trace migrate --copy-attachments --record "$work/rec" \
      --report "$work/out/report.json" 2>"$work/migrate.err") || fail "migrate exit $?: $(tail -5 "$work/migrate.err")"
    echo "$out" >"$work/migrate.out"
    timeout 120 "$ferry" --log-level trace verify >"$work/verify.out" 2>&1 || fail "verify failed: $(tail -5 "$work/verify.out")"
    "$ferry" status >"$work/status.out" 2>&1 || fail "status failed"
    timeout 60 "$ferry" --show-config migrate >"$work/show.out" 2>&1 || fail "show-config failed"
    unset HTTP_PROXY HTTPS_PROXY NO_PROXY
    grep -q 'AUDIT_KEY' "$work/migrate.err" "$work/out/report.json" || fail "the audit AI secret was not migrated"
    ls "$work"/rec/exchanges-*.jsonl.gz >/dev/null 2>&1 || fail "no recording"
    # The seeded AI secrets' values, read from the source emulator's own data (not a file Ferry wrote).
    seeded=$(grep -aoh 'sk-seed-[0-9a-f]\{16\}' -r "$work/source-data" | sort -u)
    [ -n "$seeded" ] || fail "the seeded AI secret values were not found in the source emulator's data"
    files=$(find "$work/state" "$work/out" "$work/rec" -type f; ls "$work"/*.out "$work"/*.err)
    for f in $files; do
      case "$f" in *.gz) text=$(zcat "$f" | tr -d '\0') ;; *) text=$(tr -d '\0' <"$f") ;; esac
      for secret in "$src_key" "$dst_key" "$ai_value" "$env_value" "$proxy_pass" $seeded; do
        if grep -aqF -- "$secret" <<<"$text"; then fail "secret $secret found in $f"; fi
      done
      if grep -aqE 'sig=[0-9a-fA-F]{8}' <<<"$text"; then
        fail "a signed URL's signature in $f: $(grep -aoE '.{60}sig=[0-9a-fA-F]{8}' <<<"$text" | head -2)"
      fi
    done
    ;;
  resume_same_deployment_other_spelling)
    # Resuming with the same deployments spelled differently (localhost, trailing slash, explicit
    # default port) is not refused; a real change of port still is.
    setup 100
    timeout 120 "$ferry" migrate >/dev/null 2>&1 || fail "first migrate failed"
    port=${src_url##*:}
    out=$(BT_SOURCE_URL="http://localhost:$port/" BT_DEST_URL="$dst_url//" timeout 120 "$ferry" migrate 2>&1) ||
      fail "resume with another spelling exit $?: $out"
    start_emulator other "$src_key" e2e-other; other=$url
    out=$(BT_SOURCE_URL="http://localhost:${other##*:}/" timeout 60 "$ferry" migrate 2>&1)
    rc=$?
    [ $rc -eq 2 ] || fail "real change: exit $rc, want 2: $out"
    expect_line "$out" "was created for source_url=http://localhost:$port; this run uses source_url=http://localhost:${other##*:}"
    ;;
  status_while_migrating)
    # status reads the state while a migration holds it (read-only open: no lock), and writes nothing.
    setup 3000
    "$ferry" migrate --max-requests-per-second 4 >migrate-bg.log 2>&1 &
    mig=$!
    for _ in $(seq 1 100); do [ -f state/CURRENT ] && break; sleep 0.1; done
    [ -f state/CURRENT ] || fail "the migration did not create its state: $(cat migrate-bg.log)"
    # The state is being created: status may say so for a moment, never "in use".
    ok=
    for _ in $(seq 1 50); do
      kill -0 "$mig" 2>/dev/null || fail "the migration ended before status could run: $(tail -3 migrate-bg.log)"
      if out=$("$ferry" status 2>&1); then ok=1; break; fi
      if grep -q 'in use' <<<"$out"; then fail "status refused beside a running migration: $out"; fi
      sleep 0.1
    done
    [ -n "$ok" ] || fail "status never read the state of the running migration: $out"
    out=$("$ferry" status --json 2>&1) || fail "status --json beside a running migration exit $?: $out"
    kill -0 "$mig" 2>/dev/null || fail "the migration ended while status ran: inconclusive"
    kill -INT "$mig"
    wait "$mig"
    ;;
  transport_failures_named)
    # A redirect and a TLS failure are reported as such, not as a bad URL or key to check.
    start_emulator redir "$src_key" e2e-redir --fault 'path=/v1/project,kind=status,status=302'; r_url=$url
    start_emulator plain "$dst_key" e2e-plain; p_url=$url
    out=$(BT_SOURCE_URL=$r_url BT_SOURCE_API_KEY=$src_key BT_DEST_URL="https://${p_url#http://}" \
      BT_DEST_API_KEY=$dst_key MIGRATION_RETRY_ATTEMPTS=0 MIGRATION_STATE_DIR=$work/st timeout 60 "$ferry" migrate 2>&1)
    [ $? -eq 1 ] || fail "want exit 1: $out"
    expect_line "$out" "source .*302.*the API answers with a redirect: set BT_SOURCE_URL to the URL it redirects to"
    expect_line "$out" "destination .*tls handshake failed.*TLS failed: check the server's certificate"
    ;;
  interrupt_prints_one_line)
    # SIGINT: one line saying the state is saved and the command to resume, not FAILED and a cancelled
    # line per DAG node; the resume then completes and verifies equal.
    setup 3000
    "$ferry" migrate --max-requests-per-second 5 >int.out 2>int.err &
    mig=$!
    for _ in $(seq 1 100); do [ -f state/CURRENT ] && break; sleep 0.1; done
    sleep 0.5
    kill -0 "$mig" 2>/dev/null || fail "the migration ended before the interrupt: $(tail -3 int.err)"
    kill -INT "$mig"
    wait "$mig"
    rc=$?
    [ $rc -eq 130 ] || fail "interrupted migrate exit $rc, want 130: $(tail -5 int.err)"
    lines=$(grep -v '^20[0-9-]*T' int.err)  # what is not a log record
    [ "$(grep -c . <<<"$lines")" -eq 1 ] || fail "want one line, got: $lines"
    expect_line "$lines" "^ferry migrate: interrupted, state saved, resume with: .*ferry migrate --max-requests-per-second 5$"
    if grep -Eq 'FAILED|cancelled' int.out; then fail "stdout after an interrupt: $(cat int.out)"; fi
    out=$(timeout 180 "$ferry" migrate 2>&1) || fail "resume exit $?: $out"
    out=$(timeout 120 "$ferry" verify 2>&1) || fail "verify after the interrupt exit $?: $out"
    ;;
  attachment_copies_idempotent)
    # Rows re-sent with --copy-attachments (as after a SIGKILL between upload and commit; here: a second
    # run from a fresh state into the same destination) upload each attachment under the same key, so
    # the earlier upload is overwritten, never orphaned.
    setup 1500
    keys() { zcat "$1"/exchanges-*.jsonl.gz | grep -a '"target":"/attachment"' | grep -ao '\\"key\\":\\"[0-9a-f-]*' | sort -u; }
    timeout 120 "$ferry" migrate --copy-attachments --record "$work/rec1" >/dev/null 2>&1 || fail "first migrate failed"
    MIGRATION_STATE_DIR=$work/state2 timeout 120 "$ferry" migrate --copy-attachments --record "$work/rec2" \
      >/dev/null 2>&1 || fail "second migrate failed"
    k1=$(keys "$work/rec1"); k2=$(keys "$work/rec2")
    [ -n "$k1" ] || fail "no attachment uploaded in the first run"
    [ "$k1" = "$k2" ] || fail "re-sent attachments got new keys: $(diff <(echo "$k1") <(echo "$k2") | head -5)"
    ;;
  project_name_with_comma_selected)
    # --project takes a name exactly (a comma and outer spaces included) and selects only that project.
    setup 100
    curl -s -f -X POST -H "Authorization: Bearer $src_key" -H 'Content-Type: application/json' "$src_url/v1/project" \
      -d '{"name":"team, alpha "}' >/dev/null || fail "project create"
    out=$(timeout 120 "$ferry" migrate --project 'team, alpha ' 2>&1) || fail "migrate exit $?: $out"
    names=$(curl -s -H "Authorization: Bearer $dst_key" "$dst_url/v1/project" | grep -o '"name":"[^"]*"')
    grep -qF '"name":"team, alpha "' <<<"$names" || fail "the selected project was not migrated: $names"
    if grep -q 'seed-project' <<<"$names"; then fail "other projects were migrated: $names"; fi
    ;;
  source_data_error_once_and_short)
    # A batch the destination rejects (400, as for a row it cannot take) fails its stream: the error is
    # printed once, in one line of at most ~200 characters naming the stream's object and the cause.
    start_emulator source "$src_key" e2e-source; src_url=$url
    start_emulator dest "$dst_key" e2e-dest --fault 'method=POST,path=/logs3,kind=status,status=400,rate=1'; dst_url=$url
    BT_SOURCE_API_KEY=$src_key "$ferry" seed --url "$src_url" --projects 1 --events 50 --experiments 0 --datasets 0 \
      >seed.txt || fail "seed failed"
    out=$(BT_SOURCE_URL=$src_url BT_SOURCE_API_KEY=$src_key BT_DEST_URL=$dst_url BT_DEST_API_KEY=$dst_key \
      MIGRATION_STATE_DIR=$work/state MIGRATION_RETRY_DELAY=10ms timeout 60 "$ferry" migrate --resources logs 2>&1)
    [ $? -eq 1 ] || fail "want exit 1: $out"
    [ "$(grep -c 'injected fault' <<<"$out")" -eq 1 ] || fail "the cause is not printed exactly once: $out"
    line=$(grep 'injected fault' <<<"$out")
    expect_line "$line" '^ferry migrate: stream logs project=[0-9a-f-]+: .*400 Bad Request: injected fault'
    [ ${#line} -le 220 ] || fail "line of ${#line} characters: $line"
    grep -q 'injected fault' state/migration_report.json || fail "the full error is not in the report"
    ;;
  numbers_exact)
    # Numbers with 16-17 significant digits survive the emulator and a migration bit for bit, in rows
    # (dataset, project logs) and in resources (dataset and experiment metadata). Boost.JSON 1.81 rounds
    # about one such double in ten one ulp off; the oracle here is Python's json (exact), not Ferry's.
    start_emulator source "$src_key" e2e-source; src_url=$url
    start_emulator dest "$dst_key" e2e-dest; dst_url=$url
    nums='[0.09090909090909091, 0.47058823529411764, 0.38095238095238093, 9094275.714285715, 1.3927926388013963e-143, 2.1829489720880483e+41]'
    post() {  # post URL KEY PATH BODY -> body of the answer
      curl -s -f -X POST -H "Authorization: Bearer $2" -H 'Content-Type: application/json' "$1$3" -d "$4" ||
        fail "POST $3 failed"
    }
    id_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
    pid=$(post "$src_url" "$src_key" /v1/project '{"name":"numbers"}' | id_of)
    did=$(post "$src_url" "$src_key" /v1/dataset "{\"project_id\":\"$pid\",\"name\":\"d\",\"metadata\":{\"n\":$nums}}" | id_of)
    post "$src_url" "$src_key" /v1/experiment "{\"project_id\":\"$pid\",\"name\":\"e\",\"metadata\":{\"n\":$nums}}" >/dev/null
    post "$src_url" "$src_key" "/v1/dataset/$did/insert" \
      "{\"events\":[{\"id\":\"r1\",\"input\":\"q\",\"expected\":{\"n\":$nums},\"metadata\":{\"n\":$nums}}]}" >/dev/null
    post "$src_url" "$src_key" "/v1/project_logs/$pid/insert" \
      "{\"events\":[{\"id\":\"l1\",\"input\":\"q\",\"output\":{\"n\":$nums},\"metadata\":{\"n\":$nums}}]}" >/dev/null
    # check URL KEY WHAT: every list of numbers found under "n" in the answers equals $nums exactly
    check() {
      local u=$1 k=$2 what=$3 p d
      p=$(curl -s -f -H "Authorization: Bearer $k" "$u/v1/project?project_name=numbers" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["objects"][0]["id"])') || fail "$what: no project"
      {
        curl -s -f -H "Authorization: Bearer $k" "$u/v1/dataset?project_id=$p"
        echo
        curl -s -f -H "Authorization: Bearer $k" "$u/v1/experiment?project_id=$p"
        echo
        d=$(curl -s -f -H "Authorization: Bearer $k" "$u/v1/dataset?project_id=$p" |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["objects"][0]["id"])')
        post "$u" "$k" "/v1/dataset/$d/fetch" '{}'
        echo
        post "$u" "$k" "/v1/project_logs/$p/fetch" '{}'
        echo
      } >"$what.json"
      NUMS="$nums" python3 - "$what.json" "$what" <<'PY' || fail "$what: numbers changed"
import json, os, sys
want = json.loads(os.environ["NUMS"])
found = 0
def walk(v):
    global found
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "n" and isinstance(x, list):
                found += 1
                if x != want or [repr(a) for a in x] != [repr(b) for b in want]:
                    print(f"{sys.argv[2]}: {x} != {want}"); sys.exit(1)
            else:
                walk(x)
    elif isinstance(v, list):
        for x in v: walk(x)
for line in open(sys.argv[1]):
    if line.strip(): walk(json.loads(line))
if found < 6:
    print(f"{sys.argv[2]}: only {found} lists of numbers found"); sys.exit(1)
PY
    }
    check "$src_url" "$src_key" source
    out=$(BT_SOURCE_URL=$src_url BT_SOURCE_API_KEY=$src_key BT_DEST_URL=$dst_url BT_DEST_API_KEY=$dst_key \
      MIGRATION_STATE_DIR=$work/state timeout 120 "$ferry" migrate 2>&1) || fail "migrate exit $?: $out"
    check "$dst_url" "$dst_key" destination
    ;;
  *) fail "unknown case $case_name" ;;
esac
echo "ok: $case_name"
