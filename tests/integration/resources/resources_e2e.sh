#!/usr/bin/env bash
# End-to-end cases of the resource phase through the real `ferry` binary, two `ferry serve` emulators on
# 127.0.0.1 (port 0) and a source filled by `ferry seed`. Usage: resources_e2e.sh <path to ferry> <case>.
#   kill_resume_<policy>: SIGKILL `ferry migrate --on-name-conflict <policy>` at random moments of its
#     resource phase, resume. The destination slows every object create (a latency fault on POST /v1/...):
#     the server still creates the object after its client was killed, so kills land between a create
#     reaching the destination and Ferry recording its id. Passes when the last (uninterrupted) run exits
#     0, `ferry verify` finds no difference and no destination type holds a name twice. Delays printed.
#   local_state_error_first: a bad state dir is named before the same-organization check asks the network.
#   drops_in_state: what the migration dropped (here an experiment's dataset_version pin) is read by
#     verify from the state dir, not from migration_report.json (deleted here).
set -u
ferry=$1
case_name=$2
source "$(dirname "$0")/../lib/harness.sh"

src_key=kill-source-key-0123456789
dst_key=kill-dest-key-9876543210

# setup [dest serve flags...]: emulators, seeded source, .env
setup() {
  start_emulator source "$src_key" kill-source; src_url=$url
  start_emulator dest "$dst_key" kill-dest "$@"; dst_url=$url
  BT_SOURCE_API_KEY=$src_key "$ferry" seed --url "$src_url" --projects 2 --events 40 --experiments 2 \
    --experiment-events 10 --datasets 2 --dataset-events 10 --seed 5 >seed.txt 2>&1 || fail "seed failed: $(cat seed.txt)"
  cat >.env <<ENV
BT_SOURCE_URL=$src_url
BT_SOURCE_API_KEY=$src_key
BT_DEST_URL=$dst_url
BT_DEST_API_KEY=$dst_key
MIGRATION_STATE_DIR=$work/state
MIGRATION_RETRY_DELAY=20ms
ENV
}

get() { curl -s -f -H "Authorization: Bearer $dst_key" "$dst_url$1" || fail "GET $1"; }
sget() { curl -s -f -H "Authorization: Bearer $src_key" "$src_url$1" || fail "source GET $1"; }
spatch() {
  curl -s -f -X PATCH -H "Authorization: Bearer $src_key" -H 'Content-Type: application/json' "$src_url$1" -d "$2" \
    >/dev/null || fail "source PATCH $1"
}

# no_duplicate_names: no destination type holds a name twice (per project; views and env vars per project).
no_duplicate_names() {
  local dups="" t d pid
  for t in project ai_secret role group dataset experiment function prompt project_tag span_iframe mcp_server \
           project_score project_automation; do
    d=$(get "/v1/$t?limit=1000" | jq -r '.objects[] | [.project_id // "", .name // .slug // .id] | @tsv' | sort | uniq -d)
    [ -z "$d" ] || dups+="$t: $d"$'\n'
  done
  for pid in $(get "/v1/project?limit=1000" | jq -r '.objects[].id'); do
    for t in view env_var; do
      d=$(get "/v1/$t?object_type=project&object_id=$pid" | jq -r '.objects[] | .name' | sort | uniq -d)
      [ -z "$d" ] || dups+="$t of project $pid: $d"$'\n'
    done
  done
  [ -z "$dups" ] || fail "names created twice in the destination: $dups"
}

case "$case_name" in
  kill_resume_*)
    policy=${case_name#kill_resume_}
    setup --fault 'method=POST,path=/v1/,kind=latency,latency_ms=80'
    RANDOM=${KILL_TEST_SEED:-$$}
    for base_ms in 150 600 1200 2000 3000 4200; do
      delay_ms=$((base_ms + RANDOM % 400))
      echo "round: SIGKILL after ${delay_ms} ms"
      "$ferry" migrate --on-name-conflict "$policy" >"kill-$delay_ms.log" 2>&1 &
      p=$!
      sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
      kill -9 "$p" 2>/dev/null
      wait "$p" 2>/dev/null
    done
    out=$(timeout 240 "$ferry" migrate --on-name-conflict "$policy" 2>&1) || fail "final migrate exit $?: $(tail -40 <<<"$out")"
    out=$(timeout 120 "$ferry" verify 2>&1) || fail "verify exit $?: $out"
    if grep -q '^DIFF' <<<"$out"; then fail "differences after kills: $out"; fi
    no_duplicate_names
    ;;
  drops_in_state)
    setup
    # A dataset version pin: no destination version can be established, so it is dropped with the reason.
    exp=$(sget "/v1/experiment?limit=1000" | jq -r '[.objects[] | select(.dataset_id)][0].id')
    spatch "/v1/experiment/$exp" '{"dataset_version":"1000000000000000001"}'
    out=$(timeout 120 "$ferry" migrate 2>&1) || fail "migrate exit $?: $out"
    n=$(jq '[.resources[].objects[] | .dropped_fields // [] | length] | add' state/migration_report.json)
    [ "$n" -gt 0 ] || fail "the seeded org gave no dropped field to check"
    rm state/migration_report.json
    out=$(timeout 120 "$ferry" verify 2>&1) || fail "verify without migration_report.json exit $?: $out"
    if grep -q '^DIFF' <<<"$out"; then fail "differences: $out"; fi
    grep -Eq "resource fields: .* [1-9][0-9]* dropped (or skipped )?by the migration as reported" <<<"$out" ||
      fail "verify did not read the dropped fields from the state: $out"
    ;;
  local_state_error_first)
    # Two bad inputs: a state dir path through a regular file (local) and a destination that is the
    # source's own organization (found by asking both sides). The local one is named, without network.
    start_emulator source "$src_key:same-org,$dst_key" same-org; src_url=$url
    touch "$work/afile"
    out=$(BT_SOURCE_URL=$src_url BT_SOURCE_API_KEY=$src_key BT_DEST_URL=$src_url BT_DEST_API_KEY=$dst_key \
      MIGRATION_STATE_DIR=$work/afile/state timeout 60 "$ferry" migrate 2>&1)
    rc=$?
    [ $rc -eq 2 ] || fail "exit $rc, want 2: $out"
    grep -q "state dir .*afile is not a directory" <<<"$out" || fail "the state dir is not named: $out"
    if grep -q "same deployment" <<<"$out"; then fail "the network check ran before the local one: $out"; fi
    # Once the local input is right, the same-organization refusal still comes, and writes no state.
    out=$(BT_SOURCE_URL=$src_url BT_SOURCE_API_KEY=$src_key BT_DEST_URL=$src_url BT_DEST_API_KEY=$dst_key \
      MIGRATION_STATE_DIR=$work/state timeout 60 "$ferry" migrate 2>&1)
    [ $? -eq 2 ] || fail "same org not refused: $out"
    grep -q "same deployment" <<<"$out" || fail "no same-org refusal: $out"
    [ ! -e "$work/state" ] || fail "a refused run created the state dir"
    ;;
  *) fail "unknown case $case_name" ;;
esac
echo "ok: $case_name"
