#!/usr/bin/env bash
# Throwaway PostgreSQL and Chroma servers on loopback, for the tests of several workers on one
# store (tests/services.py starts them through this script; you can run it by hand too).
#
#   scripts/services.sh start DIR   # prints EVOLVE_TEST_PG_URL=... and EVOLVE_TEST_CHROMA_URL=...
#   scripts/services.sh stop DIR
#
# Everything lives under DIR (data, sockets, logs); stop removes nothing but the processes.
# PostgreSQL comes from the distribution's packages: when no initdb is found and we are root,
# it is installed with apt-get. PostgreSQL refuses to run as root, so as root the cluster
# runs as the `postgres` user (created by the package) owning DIR/pg.
set -euo pipefail

say() { printf '[services] %s\n' "$*" >&2; }
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { say "usage: $0 start|stop DIR"; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)
chroma_bin=${CHROMA_BIN:-$here/.venv/bin/chroma}
[ -x "$chroma_bin" ] || chroma_bin=$(command -v chroma || true)

find_pg_bin() {
  local d
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"; return 0
  fi
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {  # host port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_pg() {
  local bin port
  if ! bin=$(find_pg_bin); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing postgresql (apt)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
      bin=$(find_pg_bin) || { say "postgresql installed but no initdb found"; return 1; }
    else
      say "PostgreSQL is not installed (apt-get install postgresql); not starting it"
      return 1
    fi
  fi
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
  mkdir -p "$dir/pg" "$dir/pgsock"
  [ "$(id -u)" = 0 ] && chown postgres "$dir/pg" "$dir/pgsock" && chmod 700 "$dir/pg"
  if [ ! -f "$dir/pg/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$dir/pg" -U evolve --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { say "initdb failed: $(tail -3 "$dir/initdb.log")"; return 1; }
  fi
  port=$(free_port)
  touch "$dir/pg.log"; [ "$(id -u)" = 0 ] && chown postgres "$dir/pg.log"
  # fsync off: a throwaway test cluster, never a store anyone keeps.
  as_pg "$bin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir/pgsock -c fsync=off -c max_connections=200" \
    start >/dev/null || { say "pg_ctl start failed: $(tail -3 "$dir/pg.log")"; return 1; }
  echo "$bin" > "$dir/pg.bin"
  echo "EVOLVE_TEST_PG_URL=postgresql+psycopg://evolve@127.0.0.1:$port/postgres"
}

start_chroma() {
  local port
  [ -n "$chroma_bin" ] || { say "no chroma command (pip install chromadb); not starting it"; return 1; }
  port=$(free_port)
  mkdir -p "$dir/chroma"
  # setsid: its own process group, so stop can end it and whatever it started.
  setsid "$chroma_bin" run --path "$dir/chroma" --host 127.0.0.1 --port "$port" >"$dir/chroma.log" 2>&1 &
  echo $! > "$dir/chroma.pid"
  wait_port 127.0.0.1 "$port" 60 || { say "chroma did not start: $(tail -3 "$dir/chroma.log")"; return 1; }
  echo "EVOLVE_TEST_CHROMA_URL=http://127.0.0.1:$port"
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    status=0
    start_pg || status=1
    start_chroma || status=1
    exit $status
    ;;
  stop)
    if [ -f "$dir/pg.bin" ]; then
      as_pg "$(cat "$dir/pg.bin")/pg_ctl" -D "$dir/pg" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ -f "$dir/chroma.pid" ]; then
      kill -- "-$(cat "$dir/chroma.pid")" 2>/dev/null || kill "$(cat "$dir/chroma.pid")" 2>/dev/null || true
      rm -f "$dir/chroma.pid"
    fi
    ;;
  *) say "usage: $0 start|stop DIR"; exit 2 ;;
esac
