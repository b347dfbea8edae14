#!/usr/bin/env bash
# A real Redis 7 for the copy tests, one per test suite (ctest fixture copy_redis):
#   redis_server.sh start STATE_FILE   redis-server on a free 127.0.0.1 port, password required,
#                                      no persistence, its own temp dir; writes STATE_FILE (dir, port)
#   redis_server.sh stop STATE_FILE    shut it down and remove its dir; always succeeds
set -u
cmd=$1
state=$2
if [ "$cmd" = stop ]; then
  [ -f "$state" ] || exit 0
  . "$state"
  [ -f "$REDIS_DIR/pid" ] && kill -9 "$(cat "$REDIS_DIR/pid")" 2>/dev/null
  rm -rf "$REDIS_DIR" "$state"
  exit 0
fi
dir=$(mktemp -d /tmp/ferry-copy-redis.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=ferry-redis-secret-$RANDOM$RANDOM
redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no --requirepass "$password" \
  --daemonize yes --pidfile "$dir/pid" --logfile "$dir/server.log" || { echo "redis-server failed"; exit 1; }
for _ in $(seq 1 100); do
  REDISCLI_AUTH=$password redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG && break
  sleep 0.05
done
REDISCLI_AUTH=$password redis-cli -h 127.0.0.1 -p "$port" ping | grep -q PONG ||
  { echo "redis did not start: $(tail -5 "$dir/server.log")"; rm -rf "$dir"; exit 1; }
cat >"$state" <<EOS
REDIS_DIR=$dir
REDIS_PORT=$port
REDIS_PASSWORD=$password
EOS
echo "redis on 127.0.0.1:$port ($dir)"
