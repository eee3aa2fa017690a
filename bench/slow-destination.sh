#!/usr/bin/env bash
# Drain time of a backlog of small transactions into a destination slowed on purpose (a CHECK
# constraint that sleeps 0.5 ms per row, SLOW_S seconds if set), with apply.parallel = 1 and = 4, in one run.
#
#   bench/slow-destination.sh [PGMORPH_BINARY] [TRANSACTIONS]
#
# It shows how apply lanes scale when the destination backend, not pgmorph, is the limit;
# the figures are wall-clock seconds from the connector's start to the last row applied.
set -euo pipefail
BIN=${1:-target/release/pgmorph}
TXS=${2:-4000}
PGBIN=$(pg_config --bindir)
DIR=$(mktemp -d)
chmod 755 "$DIR"
AS=() # the servers refuse to run as root: run them as nobody then
if [ "$(id -u)" = 0 ]; then AS=(runuser -u nobody --); chown nobody "$DIR"; fi
trap 'for c in src dst; do "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/$c" -m immediate stop >/dev/null 2>&1 || true; done; rm -rf "$DIR"' EXIT

start() { # name port
    "${AS[@]}" "$PGBIN/initdb" -D "$DIR/$1" -U postgres -A trust >/dev/null
    "${AS[@]}" tee -a "$DIR/$1/postgresql.conf" >/dev/null <<EOF
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
wal_level = logical
fsync = off
max_connections = 50
EOF
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/$1" -l "$DIR/$1/server.log" -w start >/dev/null
}
start src 55432
start dst 55433
SRC="psql -qAt -h 127.0.0.1 -p 55432 -U postgres postgres"
DST="psql -qAt -h 127.0.0.1 -p 55433 -U postgres postgres"
$SRC -c "CREATE TABLE t (id int PRIMARY KEY, v int)"

run() { # parallel
    local name="slow$1"
    $DST -c "DROP SCHEMA IF EXISTS postgres CASCADE; DROP SCHEMA IF EXISTS pgmorph CASCADE" 2>/dev/null
    $DST -c "CREATE OR REPLACE FUNCTION slow(int) RETURNS bool LANGUAGE plpgsql AS
             \$\$ BEGIN PERFORM pg_sleep(${SLOW_S:-0.0005}); RETURN true; END \$\$;
             CREATE SCHEMA postgres; CREATE TABLE postgres.t (id int PRIMARY KEY, v int CHECK (slow(v)))"
    $SRC -c "TRUNCATE t"
    cat >"$DIR/$name.toml" <<EOF
name = "$name"
[apply]
parallel = $1
[source]
url = "postgres://postgres@127.0.0.1:55432/postgres"
schema = "public"
[destination]
url = "postgres://postgres@127.0.0.1:55433/postgres"
EOF
    # Stream once (empty table), stop, then build the backlog while stopped.
    "$BIN" run --config "$DIR/$name.toml" 2>>"$DIR/$name.log" &
    local pid=$!
    until [ "$($DST -c "SELECT state FROM pgmorph.state WHERE name = '$name'" 2>/dev/null)" = polling ]; do sleep 0.2; done
    kill -TERM $pid; wait $pid || true
    for i in $(seq 1 "$TXS"); do echo "INSERT INTO t VALUES ($i, $i);"; done | $SRC
    local t0; t0=$(date +%s.%N)
    "$BIN" run --config "$DIR/$name.toml" 2>>"$DIR/$name.log" &
    pid=$!
    until [ "$($DST -c "SELECT count(*) FROM postgres.t" 2>/dev/null)" = "$TXS" ]; do sleep 0.05; done
    local t1; t1=$(date +%s.%N)
    kill -TERM $pid; wait $pid || true
    [ "$($SRC -c "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM t")" = \
      "$($DST -c "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM postgres.t")" ] || { echo "destination differs"; exit 1; }
    echo "apply.parallel=$1: $TXS transactions drained in $(echo "$t1 - $t0" | bc) s"
    $SRC -c "SELECT pg_drop_replication_slot('pgmorph_$name')" >/dev/null
}
for n in 1 4 1 4 1 4; do run "$n"; done
