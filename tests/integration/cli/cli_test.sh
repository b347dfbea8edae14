#!/usr/bin/env bash
# CLI behaviour through the real `ferry` binary: help lists every command, configuration precedence
# (flag > env > .env > config file > default), one-line errors that name the key and its source,
# secrets never printed. Usage: cli_test.sh <path to ferry> <case>
set -u
ferry=$1
case_name=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
env_clean=(env -u BT_SOURCE_API_KEY -u BT_DEST_API_KEY -u BT_SOURCE_URL -u BT_DEST_URL -u MIGRATION_STATE_DIR
  -u MIGRATION_MAX_CONCURRENT_REQUESTS -u LOG_LEVEL -u LOG_FORMAT)

fail() { echo "FAIL: $*"; exit 1; }
expect_line() {  # expect_line <output> <regex>
  grep -Eq -- "$2" <<<"$1" || fail "expected /$2/ in: $1"
}

case "$case_name" in
  help_lists_commands)
    out=$("$ferry" --help) || fail "--help exit $?"
    for c in migrate validate serve seed verify status replay; do expect_line "$out" "^  $c "; done
    for c in migrate validate serve seed verify status replay; do
      "$ferry" "$c" --help >/dev/null || fail "$c --help exit $?"
    done
    ;;
  precedence)
    printf 'BT_DEST_URL=http://dotenv\nBT_SOURCE_URL=http://dotenv-src\nMIGRATION_STATE_DIR=/dotenv\n' >.env
    printf 'dest:\n  url: http://file\nsource:\n  url: http://file-src\nstate_dir: /file\nretry_attempts: 7\n' >f.yaml
    out=$("${env_clean[@]}" BT_DEST_URL=http://env "$ferry" --config f.yaml --show-config migrate --state-dir /flag)
    expect_line "$out" '^dest.url +=  ?http://env +\(env BT_DEST_URL\)'
    expect_line "$out" '^source.url += http://dotenv-src +\(.env:2\)'
    expect_line "$out" '^state_dir += /flag +\(--state-dir\)'
    expect_line "$out" '^retry_attempts += 7 +\(f.yaml\)'
    expect_line "$out" '^max_concurrent_requests += +\(default\)'
    ;;
  bad_env_value_names_key_and_source)
    out=$("${env_clean[@]}" MIGRATION_MAX_CONCURRENT_REQUESTS=lots "$ferry" migrate 2>&1)
    rc=$?
    [ $rc -eq 2 ] || fail "exit $rc, want 2"
    [ "$(wc -l <<<"$out")" -eq 1 ] || fail "want one line, got: $out"
    expect_line "$out" "max_concurrent_requests from env MIGRATION_MAX_CONCURRENT_REQUESTS.*'lots'"
    ;;
  unknown_config_key)
    printf 'state_dirr: /x\n' >bad.yaml
    out=$("${env_clean[@]}" "$ferry" --config bad.yaml migrate 2>&1)
    rc=$?
    [ $rc -eq 2 ] || fail "exit $rc, want 2"
    expect_line "$out" "config file bad.yaml: unknown key 'state_dirr'"
    ;;
  malformed_config_file)
    printf 'dest: [unclosed\n' >broken.yaml
    out=$("${env_clean[@]}" "$ferry" --config broken.yaml migrate 2>&1)
    [ $? -eq 2 ] || fail "want exit 2"
    expect_line "$out" "config file broken.yaml: syntax error at line"
    ;;
  bad_date_names_key)
    out=$("${env_clean[@]}" "$ferry" migrate --created-after 2026-13-45 2>&1)
    [ $? -eq 2 ] || fail "want exit 2"
    expect_line "$out" "invalid created_after from --created-after: expected YYYY-MM-DD"
    ;;
  unreadable_config_file)
    # A config path that is missing, a directory, or binary garbage: exit 2, one line naming the file.
    out=$("${env_clean[@]}" "$ferry" --config missing.yaml migrate 2>&1)
    [ $? -eq 2 ] || fail "missing config: want exit 2"
    [ "$(wc -l <<<"$out")" -le 2 ] || fail "missing config: want one line, got: $out"
    expect_line "$out" "missing.yaml"
    mkdir adir.yaml
    out=$("${env_clean[@]}" "$ferry" --config adir.yaml migrate 2>&1)
    [ $? -eq 2 ] || fail "directory as config: want exit 2"
    expect_line "$out" "adir.yaml"
    # Fixed bytes (random ones made this test flaky): binary with NUL bytes; a line that YAML reads as a
    # directive and so as an empty document (it used to be accepted as an empty config).
    printf 'k\x01\x02: [\x00\xff\xfe' >garbage.yaml
    printf '%%s\x81\x8amc(95\xf58\x0eB\xd0\x08 not yaml' >directive.yaml
    for f in garbage.yaml directive.yaml; do
      out=$("${env_clean[@]}" "$ferry" --config $f migrate 2>&1)
      [ $? -eq 2 ] || fail "$f: want exit 2, got: $out"
      [ "$(wc -l <<<"$out")" -eq 1 ] || fail "$f: want one line, got: $out"
      expect_line "$out" "config file $f"
    done
    ;;
  secrets_never_printed)
    printf 'BT_SOURCE_API_KEY=sk-very-secret-source-key\n' >.env
    out=$("${env_clean[@]}" BT_DEST_API_KEY=sk-very-secret-dest-key "$ferry" --show-config migrate 2>&1)
    grep -q "sk-very-secret" <<<"$out" && fail "secret printed: $out"
    expect_line "$out" '^source.api_key += \[REDACTED\]'
    expect_line "$out" '^dest.api_key += \[REDACTED\]'
    ;;
  seed_bad_options)
    # Bad seed options fail before any request (the URL is never contacted): exit 2, one line each.
    out=$("${env_clean[@]}" FERRY_SEED_API_KEY=k "$ferry" seed --url http://127.0.0.1:9 --payload-min 900 --payload-max 100 2>&1)
    [ $? -eq 2 ] || fail "payload-min above payload-max: want exit 2, got: $out"
    expect_line "$out" "--payload-min \(900\) is above --payload-max \(100\)"
    out=$("${env_clean[@]}" FERRY_SEED_API_KEY=k "$ferry" seed --url http://127.0.0.1:9 --large-ratio 2 2>&1)
    [ $? -eq 2 ] || fail "large-ratio 2: want exit 2, got: $out"
    expect_line "$out" "--large-ratio must be between 0 and 1"
    out=$("${env_clean[@]}" "$ferry" seed --url http://127.0.0.1:9 2>&1)
    [ $? -eq 2 ] || fail "no seed key: want exit 2, got: $out"
    expect_line "$out" "FERRY_SEED_API_KEY or BT_SOURCE_API_KEY"
    ;;
  *) fail "unknown case $case_name" ;;
esac
echo "ok: $case_name"
