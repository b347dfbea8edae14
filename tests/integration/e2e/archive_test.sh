#!/usr/bin/env bash
# `ferry export` / `ferry import` end to end through the real binary: two `ferry serve` emulators on
# 127.0.0.1 (port 0), a source seeded with `ferry seed` (a share of its log rows referencing attachments),
# an archive written from it (attachment bytes included) and imported into the other, then `ferry verify`
# source vs destination and `ferry verify --archive`. Usage: archive_test.sh <path to ferry> <case>.
set -u
ferry=$1
case_name=$2
source "$(dirname "$0")/../lib/harness.sh"

src_key=archive-source-key-0123456789
setup_extra=()  # serve flags of the source emulator
dst_key=archive-dest-key-9876543210

# setup [events per project] [share of log rows with an attachment]: both emulators, the seeded source,
# .env for every command
setup() {
  start_emulator source "$src_key" archive-source "${setup_extra[@]}"; src_url=$url
  start_emulator dest "$dst_key" archive-dest; dst_url=$url
  BT_SOURCE_API_KEY=$src_key "$ferry" seed --url "$src_url" --projects 2 --events "${1:-600}" \
    --experiments 2 --experiment-events 100 --datasets 2 --dataset-events 80 --seed 11 \
    --attachment-ratio "${2:-0.2}" >seed.txt ||
    fail "seed failed: $(cat seed.txt)"
  cat >.env <<EOF2
BT_SOURCE_URL=$src_url
BT_SOURCE_API_KEY=$src_key
BT_DEST_URL=$dst_url
BT_DEST_API_KEY=$dst_key
MIGRATION_STATE_DIR=$work/state
MIGRATION_RETRY_DELAY=20ms
EOF2
}

# streams_of MANIFEST: the manifest's stream list (kinds, ids, every chunk's sha256 and rows), one line
streams_of() { python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["streams"], sort_keys=True))' "$1"; }

# verify_exact [archive dir]: source vs destination (every referenced attachment resolving there), then
# the archive vs the destination: streams, attachment bytes, resources
verify_exact() {
  local out
  out=$(timeout 120 "$ferry" verify 2>&1) || fail "verify exit $?: $out"
  expect_line "$out" '^ok +stream=logs:'
  expect_line "$out" '^ok +stream=experiment_events:'
  expect_line "$out" '^ok +stream=dataset_events:'
  expect_line "$out" '^ok +attachments referenced=[1-9][0-9]* missing=0'
  if grep -q '^DIFF' <<<"$out"; then fail "verify found differences: $out"; fi
  out=$(timeout 120 "$ferry" verify --archive "${1:-arch}" 2>&1) || fail "verify --archive exit $?: $out"
  expect_line "$out" '^ok +attachments stream=logs:.* compared=[1-9][0-9]* differing=0'
  expect_line "$out" '^ok +resources type=dataset objects=4'
  expect_line "$out" ' 0 with differences, [1-9][0-9]* attachment\(s\) compared, 0 differing, [1-9][0-9]* resource object\(s\), 0 resource difference\(s\), 0 failure'
  if grep -q '^DIFF' <<<"$out"; then fail "verify --archive found differences: $out"; fi
}

# attachments_of MANIFEST: the manifest's attachments (source key -> file, sha256, bytes, name, type), one line
attachments_of() { python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["attachments"], sort_keys=True))' "$1"; }

# check_attachments DIR: every attachment reference of every archived row has its bytes in the archive
# (listed, the file's sha256 as listed), and attachments/ holds nothing the manifest does not list
check_attachments() {
  python3 - "$1" <<'PY' || fail "archive attachments are not complete"
import glob, hashlib, json, os, subprocess, sys
d = sys.argv[1]
m = json.load(open(os.path.join(d, "manifest.json")))
att = m["attachments"]
def refs(v):
    if isinstance(v, dict):
        if v.get("type") == "braintrust_attachment":
            yield v["key"]; return
        for x in v.values(): yield from refs(x)
    elif isinstance(v, list):
        for x in v: yield from refs(x)
keys = set()
for f in glob.glob(os.path.join(d, "streams/*/*/*.jsonl.zst")):
    for line in subprocess.run(["zstdcat", f], capture_output=True, check=True).stdout.splitlines():
        keys |= set(refs(json.loads(line)))
assert keys, "no row references an attachment"
missing = keys - set(att)
assert not missing, "referenced but not archived: %s" % sorted(missing)[:3]
for k, a in att.items():
    b = open(os.path.join(d, a["path"]), "rb").read()
    assert hashlib.sha256(b).hexdigest() == a["sha256"] and len(b) == a["bytes"], a["path"]
listed = {a["path"] for a in att.values()}
present = {"attachments/" + n for n in os.listdir(os.path.join(d, "attachments"))}
assert present == listed, "unlisted files: %s" % sorted(present - listed)[:3]
print("attachments: %d referenced, %d files" % (len(keys), len(listed)))
PY
}

# refresh_manifest DIR FILE: FILE's sha256 and size rewritten in DIR's manifest (resources or attachments
# entries) and the manifest's own checksum with it: a tampered archive that passes its checksums
refresh_manifest() {
  python3 - "$1" "$2" <<'PY' || fail "manifest not refreshed"
import hashlib, json, os, sys
d, rel = sys.argv[1], sys.argv[2]
p = os.path.join(d, "manifest.json")
m = json.load(open(p))
b = open(os.path.join(d, rel), "rb").read()
n = 0
for e in list(m["resources"].values()) + list(m["attachments"].values()):
    if e["path"] == rel:
        e["sha256"], e["bytes"], n = hashlib.sha256(b).hexdigest(), len(b), n + 1
assert n, rel + " is not in the manifest"
text = json.dumps(m, separators=(",", ":")) + "\n"
open(p, "w").write(text)
open(p + ".sha256", "w").write(hashlib.sha256(text.encode()).hexdigest() + "\n")
PY
}

# uploads REC: the attachment uploads (POST /attachment) a --record dir holds
uploads() { zcat "$1"/exchanges-*.jsonl.gz 2>/dev/null | grep -ac '"target":"/attachment"'; }

case "$case_name" in
  round_trip_reimport)
    # export -> import into a fresh emulator -> verify exact; a second import creates and sends nothing.
    # Attachment bytes travel in the archive: import uploads them (new keys, as migrate --copy-attachments)
    # and verify compares them; a re-import uploads nothing. Export and import print progress lines.
    setup
    out=$(timeout 120 "$ferry" export --to arch --chunk-rows 250 --progress-interval 0.01 2>&1) || fail "export exit $?: $out"
    expect_line "$out" 'stream\(s\), [0-9]+ row\(s\), [1-9][0-9]* attachment\(s\) to arch'
    expect_line "$out" 'progress export rows=[0-9]+ rows_per_s=[0-9]+ streams=[0-9]+/10'
    [ -f arch/manifest.json ] && [ -f arch/manifest.json.sha256 ] || fail "no manifest"
    [ -d arch/.export-state ] && fail "export state left in a complete archive"
    ls arch/streams/project_logs/*/000001.jsonl.zst >/dev/null 2>&1 || fail "logs were not split into chunks"
    [ "$(zstdcat arch/streams/project_logs/*/*.jsonl.zst | wc -l)" -gt 1000 ] || fail "too few log rows in the archive"
    check_attachments arch
    out=$(timeout 120 "$ferry" import --from arch --record rec1 --progress-interval 0.01 2>&1) || fail "import exit $?: $out"
    expect_line "$out" 'streams: [0-9]+ done, 0 failed'
    expect_line "$out" 'progress import rows=[0-9]+ rows_per_s=[0-9]+ streams=[0-9]+/[0-9]+ of_rows=[1-9]'
    [ "$(uploads rec1)" -gt 0 ] || fail "the import uploaded no attachment"
    verify_exact
    out=$(timeout 120 "$ferry" import --from arch --record rec2 2>&1) || fail "re-import exit $?: $out"
    expect_line "$out" '0 re-sent'
    [ "$(uploads rec2)" -eq 0 ] || fail "the re-import uploaded $(uploads rec2) attachment(s)"
    grep -q '"created":0' state/migration_report.json || fail "re-import created objects"
    grep -Eq '"created":[1-9]' state/migration_report.json && fail "re-import created objects"
    verify_exact
    out=$(timeout 60 "$ferry" export --to arch 2>&1) || fail "export of a complete archive exit $?: $out"
    expect_line "$out" 'complete archive already'
    # An archive of another organization into the same state dir: refused by the resume guard.
    BT_SOURCE_URL=$dst_url BT_SOURCE_API_KEY=$dst_key timeout 120 "$ferry" export --to other >other.log 2>&1 ||
      fail "export of the destination failed: $(cat other.log)"
    out=$(timeout 60 "$ferry" import --from other 2>&1)
    rc=$?
    [ $rc -eq 2 ] || fail "import of another source's archive into the same state exit $rc, want 2: $out"
    expect_line "$out" 'source_url'
    ;;
  export_kill_resume)
    # SIGKILL the exporter several times; the resumed archive's chunks are byte-identical to an
    # uninterrupted export's (no row lost or duplicated), and it imports and verifies exact.
    setup 4000
    timeout 120 "$ferry" export --to clean --chunk-rows 200 --events-fetch-limit 50 >clean.log 2>&1 ||
      fail "clean export failed: $(cat clean.log)"
    # Killed once K chunk files, or K attachment files (between an attachment and the chunk that records
    # it), exist (progress, not wall time), K growing: each resume must continue.
    killed=0
    for at in streams:3 attachments:100 streams:10 attachments:700 streams:20; do
      dir=arch/${at%%:*} k=${at##*:}
      "$ferry" export --to arch --chunk-rows 200 --events-fetch-limit 50 >"kill-$k.log" 2>&1 &
      p=$!
      while kill -0 "$p" 2>/dev/null && [ "$(find "$dir" -type f 2>/dev/null | wc -l)" -lt "$k" ]; do
        sleep 0.01
      done
      kill -9 "$p" 2>/dev/null && ! [ -f arch/manifest.json ] && killed=$((killed + 1))
      wait "$p" 2>/dev/null
    done
    [ "$killed" -gt 0 ] || fail "the export finished before any kill: make the org bigger"
    echo "exports killed before their end: $killed"
    out=$(timeout 120 "$ferry" export --to arch --chunk-rows 200 --events-fetch-limit 50 2>&1) ||
      fail "resumed export exit $?: $out"
    [ "$(streams_of arch/manifest.json)" = "$(streams_of clean/manifest.json)" ] ||
      fail "resumed archive's chunks differ from the uninterrupted export's"
    [ "$(attachments_of arch/manifest.json)" = "$(attachments_of clean/manifest.json)" ] ||
      fail "resumed archive's attachments differ from the uninterrupted export's"
    check_attachments arch
    out=$(timeout 120 "$ferry" import --from arch 2>&1) || fail "import exit $?: $out"
    verify_exact
    ;;
  import_kill_resume)
    # SIGKILL the importer several times; the resumed import verifies exact.
    setup 4000
    timeout 120 "$ferry" export --to arch --chunk-rows 500 >export.log 2>&1 || fail "export failed: $(cat export.log)"
    killed=0
    for delay in 0.3 0.6 0.9; do
      "$ferry" import --from arch --logs-insert-batch-size 50 >"kill-$delay.log" 2>&1 &
      p=$!
      sleep "$delay"
      kill -9 "$p" 2>/dev/null
      wait "$p" 2>/dev/null
      grep -q '^streams:' "kill-$delay.log" || killed=$((killed + 1))
    done
    [ "$killed" -gt 0 ] || fail "every import finished before its kill: make the org bigger"
    echo "imports killed before their end: $killed"
    out=$(timeout 180 "$ferry" import --from arch 2>&1) || fail "resumed import exit $?: $out"
    verify_exact
    ;;
  corrupt_refused)
    # A corrupted chunk or a tampered manifest is refused before anything is written, naming the file.
    setup 300
    timeout 120 "$ferry" export --to arch >export.log 2>&1 || fail "export failed: $(cat export.log)"
    cp -r arch good
    chunk=$(ls arch/streams/experiment/*/000000.jsonl.zst | head -1)
    printf 'X' | dd of="$chunk" bs=1 seek=20 conv=notrunc 2>/dev/null
    out=$(timeout 60 "$ferry" import --from arch 2>&1)
    rc=$?
    [ $rc -eq 2 ] || fail "import of a corrupt chunk exit $rc, want 2: $out"
    expect_line "$out" "${chunk#arch/}: sha256 mismatch"
    [ "$(wc -l <<<"$out")" -eq 1 ] || fail "more than one line: $out"
    [ -d state ] && fail "a refused import created its state dir"
    n=$(curl -s -H "Authorization: Bearer $dst_key" "$dst_url/v1/project" | grep -o '"id"' | wc -l)
    [ "$n" -eq 0 ] || fail "a refused import wrote $n project(s) to the destination"
    rm -rf arch && cp -r good arch
    sed -i '0,/"rows":\([0-9]\)/s//"rows":1\1/' arch/manifest.json  # one row count changed
    cmp -s arch/manifest.json good/manifest.json && fail "the manifest was not changed"
    out=$(timeout 60 "$ferry" import --from arch 2>&1)
    rc=$?
    [ $rc -eq 2 ] || fail "import of a tampered manifest exit $rc, want 2: $out"
    expect_line "$out" 'manifest.json: sha256 does not match'
    rm -rf arch && cp -r good arch
    rm "$(ls arch/streams/dataset/*/000000.jsonl.zst | head -1)"
    out=$(timeout 60 "$ferry" import --from arch 2>&1)
    [ $? -eq 2 ] || fail "import with a missing chunk did not exit 2: $out"
    expect_line "$out" 'streams/dataset/.*000000.jsonl.zst: missing'
    ;;
  verify_archive)
    # ferry verify --archive: the archive against the deployment it was imported into (through the
    # import's id maps), and against the one it was exported from (same ids, no state); a row added
    # behind the importer's back is a DIFF naming the stream.
    setup 300
    timeout 120 "$ferry" export --to arch >export.log 2>&1 || fail "export failed: $(cat export.log)"
    timeout 120 "$ferry" import --from arch >import.log 2>&1 || fail "import failed: $(cat import.log)"
    out=$(timeout 120 "$ferry" verify --archive arch 2>&1) || fail "verify --archive exit $?: $out"
    [ "$(grep -Ec '^ok +stream=' <<<"$out")" -eq 10 ] || fail "want 10 ok streams: $out"
    expect_line "$out" '10 stream\(s\), 0 with differences, [1-9][0-9]* attachment\(s\) compared, 0 differing'
    out=$(BT_DEST_URL=$src_url BT_DEST_API_KEY=$src_key MIGRATION_STATE_DIR=$work/none timeout 120 \
      "$ferry" verify --archive arch 2>&1) || fail "verify --archive against the source exit $?: $out"
    pid=$(curl -s -H "Authorization: Bearer $dst_key" "$dst_url/v1/project?project_name=seed-project-0" |
      grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)
    [ -n "$pid" ] || fail "destination project not found"
    curl -s -f -X POST -H "Authorization: Bearer $dst_key" -H 'Content-Type: application/json' \
      "$dst_url/v1/project_logs/$pid/insert" -d '{"events":[{"id":"intruder-row","input":"not from the archive"}]}' \
      >/dev/null || fail "insert into destination failed"
    out=$(timeout 120 "$ferry" verify --archive arch 2>&1)
    rc=$?
    [ $rc -eq 1 ] || fail "verify --archive exit $rc, want 1: $out"
    expect_line "$out" "^DIFF +stream=logs:.*extra=1"
    ;;
  attachment_tamper)
    # An altered attachment file is refused by its checksum, naming the file (import and verify); with
    # the manifest rewritten to match it, verify --archive finds the destination's bytes differ: one DIFF
    # line naming the file and the row, exit 1.
    setup 300 0.3
    timeout 120 "$ferry" export --to arch >export.log 2>&1 || fail "export failed: $(cat export.log)"
    timeout 120 "$ferry" import --from arch >import.log 2>&1 || fail "import failed: $(cat import.log)"
    f=$(python3 -c 'import json; print(sorted(a["path"] for a in json.load(open("arch/manifest.json"))["attachments"].values())[0])')
    printf 'X' | dd of="arch/$f" bs=1 seek=0 conv=notrunc 2>/dev/null
    out=$(timeout 60 "$ferry" verify --archive arch 2>&1)
    rc=$?
    [ $rc -eq 2 ] || fail "verify --archive of an altered attachment exit $rc, want 2: $out"
    expect_line "$out" "$f: sha256 mismatch"
    out=$(timeout 60 "$ferry" import --from arch 2>&1)
    [ $? -eq 2 ] || fail "import of an altered attachment did not exit 2: $out"
    expect_line "$out" "$f: sha256 mismatch"
    refresh_manifest arch "$f"
    out=$(timeout 120 "$ferry" verify --archive arch 2>&1)
    rc=$?
    [ $rc -eq 1 ] || fail "verify --archive with other attachment bytes exit $rc, want 1: $out"
    diffs=$(grep '^DIFF attachment ' <<<"$out")
    [ -n "$diffs" ] || fail "no DIFF line: $out"
    if grep -v "^DIFF attachment $f (source key [^)]*) row [^ ]* at [^ ]*: the destination's attachment [^ ]* holds other bytes" <<<"$diffs"; then
      fail "a DIFF line that does not name $f: $diffs"
    fi
    expect_line "$out" "^DIFF +attachments stream=logs:.*differing=[1-9]"
    ;;
  resources_tamper)
    # verify --archive compares the resources field by field: a field changed in the archive's resource
    # file (checksums rewritten to match) or in the destination is one DIFF line naming the type, the
    # object and the field, exit 1.
    setup 100 0
    timeout 120 "$ferry" export --to arch >export.log 2>&1 || fail "export failed: $(cat export.log)"
    timeout 120 "$ferry" import --from arch >import.log 2>&1 || fail "import failed: $(cat import.log)"
    cp -r arch good
    python3 - <<'PY' || fail "resource file not changed"
import json
p = "arch/resources/dataset.json"
d = json.load(open(p))
o = next(x for x in d["objects"] if x["name"] == "seed-dataset-0")
o["description"] = "changed in the archive"
open(p, "w").write(json.dumps(d, separators=(",", ":")) + "\n")
PY
    refresh_manifest arch resources/dataset.json
    out=$(timeout 120 "$ferry" verify --archive arch 2>&1)
    rc=$?
    [ $rc -eq 1 ] || fail "verify --archive of a changed resource exit $rc, want 1: $out"
    [ "$(grep -c '^DIFF' <<<"$out")" -eq 1 ] || fail "want one DIFF line: $out"
    expect_line "$out" "^DIFF resource dataset 'seed-dataset-0' \([0-9a-f-]+\) field description: differs: source \"changed in the archive\""
    expect_line "$out" ' 1 resource difference\(s\)'
    rm -rf arch && cp -r good arch
    did=$(curl -s -H "Authorization: Bearer $dst_key" "$dst_url/v1/dataset?dataset_name=seed-dataset-1" |
      grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)
    [ -n "$did" ] || fail "destination dataset not found"
    curl -s -f -X PATCH -H "Authorization: Bearer $dst_key" -H 'Content-Type: application/json' \
      "$dst_url/v1/dataset/$did" -d '{"description":"changed in the destination"}' >/dev/null || fail "PATCH failed"
    out=$(timeout 120 "$ferry" verify --archive arch 2>&1)
    rc=$?
    [ $rc -eq 1 ] || fail "verify --archive of a changed destination exit $rc, want 1: $out"
    [ "$(grep -c '^DIFF' <<<"$out")" -eq 1 ] || fail "want one DIFF line: $out"
    expect_line "$out" "^DIFF resource dataset 'seed-dataset-1' \([0-9a-f-]+\) field description: differs: .*destination \"changed in the destination\""
    ;;
  metrics)
    # export and import serve migrate's metrics with --metrics-addr: after the run (--metrics-linger), the
    # rows per stream add up to the archive's rows; SIGTERM ends the linger with the run's exit code.
    setup 300
    rows_metric() {  # rows_metric URL: the sum of ferry_rows_copied_total over the streams
      curl -s "$1" | awk '/^ferry_rows_copied_total\{/ { n += $2 } END { printf "%d\n", n }'
    }
    scrape() {  # scrape NAME COMMAND...: runs it lingering, prints the rows metric once the run is over
      local name=$1 p u; shift
      "$@" --metrics-addr 127.0.0.1:0 --metrics-linger 60s >"$name.log" 2>&1 &
      p=$!
      for _ in $(seq 1 600); do grep -q 'metrics linger' "$name.log" && break; sleep 0.1; done
      u=$(grep -o -m1 'metrics url=http://[0-9.:]*/metrics' "$name.log" | cut -d= -f2)
      [ -n "$u" ] || fail "$name: no metrics url: $(cat "$name.log")"
      grep -q 'metrics linger' "$name.log" || fail "$name: the run did not end: $(tail -3 "$name.log")"
      rows_metric "$u" >"$name.rows"
      kill -TERM "$p"
      wait "$p" || fail "$name: exit $? after SIGTERM during the linger: $(tail -3 "$name.log")"
    }
    scrape export "$ferry" export --to arch
    total=$(python3 -c 'import json; print(sum(s["rows"] for s in json.load(open("arch/manifest.json"))["streams"]))')
    [ "$total" -gt 0 ] || fail "empty archive"
    [ "$(cat export.rows)" = "$total" ] || fail "export metrics count $(cat export.rows) rows, the archive holds $total"
    scrape import "$ferry" import --from arch
    [ "$(cat import.rows)" = "$total" ] || fail "import metrics count $(cat import.rows) rows, the archive holds $total"
    ;;
  spilled_rows)
    # A row above the per-row limit (18 MiB) has its big field spilled to an attachment by the import, as
    # by migrate; verify --archive compares it as the row it holds (read back from the attachment).
    setup_extra=(--logs3-max-bytes 67108864)  # the source takes the big row directly
    setup 50 0
    pid=$(curl -s -H "Authorization: Bearer $src_key" "$src_url/v1/project?project_name=seed-project-0" |
      grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)
    [ -n "$pid" ] || fail "source project not found"
    python3 -c 'import json; print(json.dumps({"events": [{"id": "big-row", "input": "q", "output": "x" * (19 << 20)}]}))' >big.json
    curl -s -f -X POST -H "Authorization: Bearer $src_key" -H 'Content-Type: application/json' \
      "$src_url/v1/project_logs/$pid/insert" --data-binary @big.json >/dev/null || fail "insert of the big row failed"
    timeout 120 "$ferry" export --to arch >export.log 2>&1 || fail "export failed: $(cat export.log)"
    out=$(timeout 120 "$ferry" import --from arch 2>&1) || fail "import exit $?: $out"
    grep -q '"spilled_fields":1' state/migration_report.json || fail "the big row was not spilled: $out"
    out=$(timeout 120 "$ferry" verify --archive arch 2>&1) || fail "verify --archive exit $?: $out"
    expect_line "$out" "^ok +stream=logs:$pid source_rows=[0-9]+ dest_rows=[0-9]+ missing=0 extra=0 mismatched=0 "
    ;;
  attachments_as_migrate)
    # The import uploads the archived attachments exactly as a direct `migrate --copy-attachments` into
    # the same destination does: the same keys (a key is the destination org, name, type and bytes).
    setup 300 0.3
    keys() { zcat "$1"/exchanges-*.jsonl.gz | grep -a '"target":"/attachment"' | grep -ao '\\"key\\":\\"[0-9a-f-]*' | sort -u; }
    timeout 120 "$ferry" export --to arch >export.log 2>&1 || fail "export failed: $(cat export.log)"
    timeout 120 "$ferry" import --from arch --record rec1 >import.log 2>&1 || fail "import failed: $(cat import.log)"
    MIGRATION_STATE_DIR=$work/state2 timeout 120 "$ferry" migrate --copy-attachments --record rec2 >migrate.log 2>&1 ||
      fail "migrate failed: $(tail -5 migrate.log)"
    k1=$(keys rec1); k2=$(keys rec2)
    [ "$(wc -l <<<"$k1")" -gt 10 ] || fail "too few attachments uploaded by the import: $k1"
    [ "$k1" = "$k2" ] || fail "import and migrate uploaded other keys: $(diff <(echo "$k1") <(echo "$k2") | head -5)"
    ;;
  *) fail "unknown case $case_name" ;;
esac
echo "PASS $case_name"
