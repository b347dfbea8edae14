# Shared by the end-to-end shell tests (e2e, archive, cluster, resources): sourced after `ferry` and
# `case_name` are set. A scratch dir that is the working dir, every started process killed and the dir
# removed on exit, the environment cleared of Ferry's settings, and the helpers below.
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 1
unset BT_SOURCE_API_KEY BT_DEST_API_KEY BT_SOURCE_URL BT_DEST_URL MIGRATION_STATE_DIR LOG_LEVEL LOG_FORMAT

fail() { echo "FAIL: $*"; exit 1; }
expect_line() {  # expect_line <output> <regex>
  grep -Eq -- "$2" <<<"$1" || fail "expected /$2/ in: $1"
}

# start_emulator NAME KEY ORG [serve flags...] -> sets $url. Not called as $(...): a subshell would
# record the server's pid in its own copy of pids, and cleanup would leave the server running.
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
