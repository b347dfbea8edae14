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
    expect_line "$out" '^max_concurrent_requests += 40 +\(default\)'
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
  bad_input_exit_2)
    # Each class of bad input: exit 2 before any request, one line naming the key and where it came from.
    printf 'not a certificate\n' >ca.pem
    mkdir envdir
    printf 'dest:\n  url: http://a\ndest:\n  url: http://b\n' >dup.yaml
    check() {  # check <regex> <ferry args...>
      local want=$1; shift
      out=$("${env_clean[@]}" BT_SOURCE_API_KEY=k-src-1 BT_DEST_API_KEY=k-dst-1 "$ferry" "$@" 2>&1)
      rc=$?
      [ $rc -eq 2 ] || fail "$*: exit $rc, want 2: $out"
      [ "$(wc -l <<<"$out")" -eq 1 ] || fail "$*: want one line, got: $out"
      expect_line "$out" "$want"
    }
    check "invalid resources from --resources: unknown resource 'bogus'" migrate --resources bogus
    check "invalid log_level from --log-level: .*got 'loud'" --log-level loud migrate
    check "invalid log_format from --log-format: .*got 'xml'" --log-format xml migrate
    check "invalid ca_file from --ca-file: 'ca.pem' cannot be read as PEM" migrate --ca-file ca.pem
    check "invalid ca_file from --ca-file" validate --ca-file missing.pem
    check "invalid request_timeout from --request-timeout: expected a duration from 100ms to 24h.*got '0'" \
      migrate --request-timeout 0
    check "invalid request_timeout from --request-timeout: .*got '99999999h'" verify --request-timeout 99999999h
    check "invalid follow_interval from --follow-interval: expected a duration from 100ms to 24h.*got '0'" \
      migrate --follow-interval 0
    check "cannot be combined with dry_run" migrate --until-caught-up --dry-run
    check "invalid source.url from --source-url: port 99999 is out of range 1-65535" \
      migrate --source-url http://127.0.0.1:99999
    check "env file envdir: is a directory" --env-file envdir migrate
    check "config file dup.yaml: key 'dest' is given twice" --config dup.yaml migrate
    check "projects from --projects" migrate --projects '"unclosed, name'
    # The same checks when the value comes from the environment name the variable.
    for kv in MIGRATION_RESOURCES=logs,nope LOG_LEVEL=chatty MIGRATION_RETRY_DELAY=9999999999h BT_DEST_URL=ftp://h; do
      out=$("${env_clean[@]}" BT_SOURCE_API_KEY=k-src-1 BT_DEST_API_KEY=k-dst-1 "$kv" "$ferry" migrate 2>&1)
      [ $? -eq 2 ] || fail "$kv: want exit 2: $out"
      expect_line "$out" "from env ${kv%%=*}"
    done
    out=$("${env_clean[@]}" "$ferry" serve --port 99999 2>&1)
    [ $? -eq 2 ] || fail "serve --port 99999: want exit 2, got: $out"
    ;;
  show_config_defaults)
    # Every setting shows its documented default, not a blank.
    out=$("${env_clean[@]}" "$ferry" --show-config migrate) || fail "exit $?"
    expect_line "$out" '^source.url += https://api.braintrust.dev +\(default\)'
    expect_line "$out" '^state_dir += ./ferry-state +\(default\)'
    expect_line "$out" '^request_timeout += 120s +\(default\)'
    expect_line "$out" '^memory_budget += 192MiB +\(default\)'
    expect_line "$out" '^log_level += info +\(default\)'
    expect_line "$out" '^on_name_conflict += adopt +\(default\)'
    if grep -Eq '^[a-z_.]+ += +\(default\)' <<<"$out"; then fail "a blank default: $out"; fi
    ;;
  url_passwords_redacted)
    # A password in a URL never reaches --show-config, validate or an error line.
    out=$("${env_clean[@]}" "$ferry" --show-config migrate --source-url http://bob:url-pass-4321@127.0.0.1:9 2>&1)
    grep -q 'url-pass-4321' <<<"$out" && fail "password printed by --show-config: $out"
    expect_line "$out" '^source.url += http://bob:\[REDACTED\]@127.0.0.1:9'
    out=$("${env_clean[@]}" BT_SOURCE_API_KEY=k-src-1 BT_DEST_API_KEY=k-dst-1 MIGRATION_RETRY_ATTEMPTS=0 \
      timeout 60 "$ferry" validate --source-url http://bob:url-pass-4321@127.0.0.1:9 --dest-url http://127.0.0.1:9 2>&1)
    grep -q 'url-pass-4321' <<<"$out" && fail "password printed by validate: $out"
    out=$("${env_clean[@]}" "$ferry" migrate --dest-url http://bob:url-pass-4321@127.0.0.1:99999 2>&1)
    grep -q 'url-pass-4321' <<<"$out" && fail "password printed in an error: $out"
    expect_line "$out" 'http://bob:\[REDACTED\]@127.0.0.1:99999'
    ;;
  dotenv_like_python_dotenv)
    # The reference tool's users write .env for python-dotenv: quotes, inline comments, export.
    cat >.env <<'EOF'
# a comment line

export BT_DEST_URL="http://127.0.0.1:7001" # destination
BT_SOURCE_URL='http://127.0.0.1:7002' # source
MIGRATION_STATE_DIR=/tmp/x # state
MIGRATION_PROJECTS="alpha, beta"
EOF
    out=$("${env_clean[@]}" "$ferry" --show-config migrate) || fail "exit $?: $out"
    expect_line "$out" '^dest.url += http://127.0.0.1:7001 +\(.env:3\)'
    expect_line "$out" '^source.url += http://127.0.0.1:7002 +\(.env:4\)'
    expect_line "$out" '^state_dir += /tmp/x +\(.env:5\)'
    expect_line "$out" '^projects += alpha, beta +\(.env:6\)'
    printf 'BT_DEST_URL="http://unterminated\n' >bad.env
    out=$("${env_clean[@]}" "$ferry" --env-file bad.env migrate 2>&1)
    [ $? -eq 2 ] || fail "unterminated quote: want exit 2: $out"
    expect_line "$out" 'bad.env:1: cannot parse'
    ;;
  project_names_with_commas)
    # --project NAME (repeatable) takes a name exactly; the comma list has a quoting rule.
    out=$("${env_clean[@]}" "$ferry" --show-config migrate --project 'a, b' --project ' c ') || fail "exit $?"
    expect_line "$out" '^projects += "a, b"," c " +\(--project\)'
    out=$("${env_clean[@]}" "$ferry" --show-config migrate --projects 'x,"y, z"' --project w) || fail "exit $?"
    expect_line "$out" '^projects += x,"y, z",w +\(--projects/--project\)'
    ;;
  report_mode_under_umask_000)
    # The report is created 0600 even under umask 000 (it names the organization's objects).
    out=$(umask 000; "${env_clean[@]}" BT_SOURCE_API_KEY=k-src-1 BT_DEST_API_KEY=k-dst-1 MIGRATION_RETRY_ATTEMPTS=0 \
      timeout 60 "$ferry" migrate --dry-run --source-url http://127.0.0.1:9 --dest-url http://127.0.0.1:9 \
      --report "$work/r/plan.json" 2>&1)
    [ -f "$work/r/plan.json" ] || fail "no report written: $out"
    mode=$(stat -c %a "$work/r/plan.json")
    [ "$mode" = 600 ] || fail "report mode $mode, want 600"
    ;;
  status_beside_running_owner_and_bad_state_dirs)
    # A world-writable state dir is refused; status never creates or writes a state dir.
    mkdir -m 1777 shared
    out=$("${env_clean[@]}" BT_SOURCE_API_KEY=k-src BT_DEST_API_KEY=k-dst "$ferry" migrate -s shared \
      --source-url http://127.0.0.1:9 --dest-url http://127.0.0.1:10 2>&1)
    [ $? -eq 2 ] || fail "world-writable state dir: want exit 2: $out"
    expect_line "$out" 'writable by every user \(mode 1777\)'
    out=$("${env_clean[@]}" "$ferry" status -s nowhere 2>&1)
    [ $? -ne 0 ] || fail "status of a missing state dir exited 0"
    [ ! -e nowhere ] || fail "status created the state dir"
    ;;
  *) fail "unknown case $case_name" ;;
esac
echo "ok: $case_name"
