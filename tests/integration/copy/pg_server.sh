#!/usr/bin/env bash
# A real PostgreSQL 15 for the copy tests, one per test suite (ctest fixture copy_pg):
#   pg_server.sh start STATE_FILE   initdb in a fresh temp dir, start on a free 127.0.0.1 port with
#                                   password (scram) auth for user ferry, write STATE_FILE (dir, port)
#   pg_server.sh stop STATE_FILE    stop it (immediate) and remove its dir; always succeeds
# As root the server runs as the `postgres` user (PostgreSQL refuses to run as root).
set -u
bin=/usr/lib/postgresql/15/bin
cmd=$1
state=$2
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ "$cmd" = stop ]; then
  [ -f "$state" ] || exit 0
  . "$state"
  as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1
  rm -rf "$PG_DIR" "$state"
  exit 0
fi

dir=$(mktemp -d /tmp/ferry-copy-pg.XXXXXX)
chmod 755 "$dir"
[ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=ferry-pg-secret-$RANDOM$RANDOM
printf '%s\n' "$password" >"$dir/pw" && chmod 644 "$dir/pw"
as_pg "$bin/initdb" -D "$dir/data" -U ferry --pwfile="$dir/pw" -E UTF8 --locale=C.UTF-8 \
  --auth-host=scram-sha-256 --auth-local=trust --no-sync >"$dir/initdb.log" 2>&1 ||
  { echo "initdb failed: $(tail -5 "$dir/initdb.log")"; rm -rf "$dir"; exit 1; }
mkdir -p "$dir/sock" && { [ "$(id -u)" -ne 0 ] || chown postgres: "$dir/sock"; }
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null 2>&1 ||
  { echo "postgres did not start: $(tail -5 "$dir/server.log")"; rm -rf "$dir"; exit 1; }
cat >"$state" <<EOS
PG_DIR=$dir
PG_PORT=$port
PG_PASSWORD=$password
EOS
echo "postgres 15 on 127.0.0.1:$port ($dir)"
