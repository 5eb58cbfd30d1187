#!/usr/bin/env bash
# Baseline servers for the load tests (SPEC section 5): a single, unreplicated Redis and a
# PostgreSQL, each our OWN instance on loopback, never the system services.
#
#   scripts/baselines.sh start    install (apt-get, if missing) and start both; no-op if running
#   scripts/baselines.sh stop     stop both (only the instances this script started)
#   scripts/baselines.sh status   say what runs; exit 0 only if both answer
#   scripts/baselines.sh env      print `export STOCKD_REDIS_URL=...` and `export STOCKD_PG_URL=...`
#                                 (eval them: programs started afterwards see both)
#
# Typical use:  scripts/baselines.sh start && eval "$(scripts/baselines.sh env)" && cargo test ...
#
# Redis: redis-server (Debian package) on 127.0.0.1:6390, `--save '' --appendonly no` (no
#   persistence at all), protected mode on, daemonized, as the `redis` system user when root;
#   its pid, log and (unused) dir in $STOCKD_BASELINES_DIR/redis.
# PostgreSQL: the Debian package's binaries (/usr/lib/postgresql/<major>/bin), `initdb` into
#   $STOCKD_BASELINES_DIR/pg (default <repo>/target/baselines/pg), run as the `postgres` system
#   user (PostgreSQL refuses to run as root), listening on 127.0.0.1:5439 only, its unix socket
#   in $STOCKD_BASELINES_DIR/pg-run. Database `stockd`, user `stockd`, scram-sha-256 with a random
#   password generated at initdb (kept in $STOCKD_BASELINES_DIR/pg.password, printed by `env`).
#   Durability: PostgreSQL's DEFAULTS are kept (fsync=on, synchronous_commit=on,
#   full_page_writes=on): every committed reservation is flushed to the WAL before the commit
#   returns. That is what the numbers in the report use unless said otherwise.
#   Note: STOCKD_PG_SYNCHRONOUS_COMMIT=off (at `start`) runs it with synchronous_commit=off
#   instead: commits return before the WAL flush (a crash loses the last few hundred ms of
#   commits, never consistency) - closer to stockd's default `replicated` durability mode.
#
# Installing: apt-get install -y --no-install-recommends redis-server postgresql, with
#   DEBIAN_FRONTEND=noninteractive. The packages' maintainer scripts would start the SYSTEM
#   services (redis on 6379, the `main` cluster on 5432); when /usr/sbin/policy-rc.d is absent, a
#   temporary one (exit 101) is installed for the duration of the apt-get call so they do not.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
BASE="${STOCKD_BASELINES_DIR:-$REPO/target/baselines}"
REDIS_PORT=6390
PG_PORT=5439
HOST=127.0.0.1
PG_USER=stockd
PG_DB=stockd
PG_OS_USER=postgres

log() { echo "baselines: $*" >&2; }
die() { log "$*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

pg_bindir() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

install_packages() {
    local need=()
    command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
    [ -n "$(pg_bindir)" ] || need+=(postgresql)
    [ ${#need[@]} -eq 0 ] && return 0
    log "installing ${need[*]} (apt-get)"
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        made_policy=1
    fi
    local rc=0
    {
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                --no-install-recommends "${need[@]}" >/dev/null
    } || rc=$?
    [ "$made_policy" -eq 1 ] && as_root rm -f "$policy"
    [ "$rc" -eq 0 ] || die "apt-get failed ($rc)"
    command -v redis-server >/dev/null 2>&1 || die "redis-server still missing"
    [ -n "$(pg_bindir)" ] || die "PostgreSQL binaries still missing"
}

# --- Redis ----------------------------------------------------------------------------------

redis_pidfile() { echo "$BASE/redis/redis.pid"; }

redis_running() {
    local pf
    pf="$(redis_pidfile)"
    [ -f "$pf" ] && kill -0 "$(cat "$pf")" 2>/dev/null
}

redis_ping() {
    command -v redis-cli >/dev/null 2>&1 &&
        [ "$(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
}

redis_start() {
    if redis_running; then
        log "redis already running (pid $(cat "$(redis_pidfile)"))"
        return 0
    fi
    if redis_ping; then
        die "something else already answers on $HOST:$REDIS_PORT; not ours, not touching it"
    fi
    mkdir -p "$BASE/redis"
    rm -f "$(redis_pidfile)"
    local runas=()
    if [ "$(id -u)" -eq 0 ] && id redis >/dev/null 2>&1; then
        chown redis: "$BASE/redis"
        runas=(runuser -u redis --)
    fi
    # Every setting on the command line: the package's /etc/redis/redis.conf is not read.
    "${runas[@]}" redis-server --bind "$HOST" --port "$REDIS_PORT" --protected-mode yes \
        --save '' --appendonly no --daemonize yes \
        --dir "$BASE/redis" --logfile "$BASE/redis/redis.log" \
        --pidfile "$(redis_pidfile)" --databases 16
    for _ in $(seq 1 100); do
        if redis_running && redis_ping; then
            log "redis started on $HOST:$REDIS_PORT (pid $(cat "$(redis_pidfile)"))"
            return 0
        fi
        sleep 0.1
    done
    die "redis did not start; see $BASE/redis/redis.log"
}

redis_stop() {
    if ! redis_running; then
        log "redis not running"
        rm -f "$(redis_pidfile)"
        return 0
    fi
    local pid
    pid="$(cat "$(redis_pidfile)")"
    kill "$pid"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && die "redis (pid $pid) did not stop"
    rm -f "$(redis_pidfile)"
    log "redis stopped"
}

# --- PostgreSQL -----------------------------------------------------------------------------

PGDATA_DIR="$BASE/pg"
PG_RUN="$BASE/pg-run"
PG_LOG="$BASE/pg.log"
PG_PASSFILE="$BASE/pg.password"

# Runs a command as the postgres system user (PostgreSQL refuses root), or as ourselves when
# we are not root.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$PG_OS_USER" -- "$@"
    else
        "$@"
    fi
}

pg_ctl_() { as_pg "$(pg_bindir)/pg_ctl" -D "$PGDATA_DIR" "$@"; }

pg_running() {
    [ -f "$PGDATA_DIR/PG_VERSION" ] && pg_ctl_ status >/dev/null 2>&1
}

pg_init() {
    [ -f "$PGDATA_DIR/PG_VERSION" ] && return 0
    local bindir
    bindir="$(pg_bindir)"
    mkdir -p "$BASE"
    if [ "$(id -u)" -eq 0 ]; then
        id "$PG_OS_USER" >/dev/null 2>&1 || die "no '$PG_OS_USER' system user (package missing?)"
    fi
    mkdir -p "$PGDATA_DIR" "$PG_RUN"
    chmod 700 "$PGDATA_DIR"
    if [ "$(id -u)" -eq 0 ]; then chown "$PG_OS_USER:" "$PGDATA_DIR" "$PG_RUN"; fi
    local pw pwtmp
    pw="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
    (umask 077 && echo "$pw" >"$PG_PASSFILE")
    pwtmp="$PG_RUN/initdb.pw"
    (umask 077 && echo "$pw" >"$pwtmp")
    if [ "$(id -u)" -eq 0 ]; then chown "$PG_OS_USER:" "$pwtmp"; fi
    log "initdb into $PGDATA_DIR"
    # No locale: byte-order collation (the baseline sorts keys in byte order too), UTF-8.
    if ! as_pg "$bindir/initdb" -D "$PGDATA_DIR" -U "$PG_USER" --pwfile="$pwtmp" \
        --auth-host=scram-sha-256 --auth-local=scram-sha-256 \
        --no-locale -E UTF8 >"$BASE/initdb.log" 2>&1; then
        rm -f "$pwtmp"
        die "initdb failed; see $BASE/initdb.log"
    fi
    rm -f "$pwtmp"
}

pg_start() {
    pg_init
    if pg_running; then
        log "postgres already running ($PGDATA_DIR)"
        return 0
    fi
    if (exec 3<>"/dev/tcp/$HOST/$PG_PORT") 2>/dev/null; then
        die "something else already listens on $HOST:$PG_PORT; not ours, not touching it"
    fi
    local sync="${STOCKD_PG_SYNCHRONOUS_COMMIT:-on}"
    case "$sync" in on | off) ;; *) die "STOCKD_PG_SYNCHRONOUS_COMMIT must be on or off" ;; esac
    touch "$PG_LOG"
    if [ "$(id -u)" -eq 0 ]; then chown "$PG_OS_USER:" "$PG_LOG" "$PG_RUN"; fi
    # Loopback only; everything else (fsync, full_page_writes, ...) stays at the defaults.
    pg_ctl_ start -w -t 60 -l "$PG_LOG" -o "-c listen_addresses=$HOST -c port=$PG_PORT \
        -c unix_socket_directories=$PG_RUN -c synchronous_commit=$sync -c max_connections=200" \
        >/dev/null || die "postgres did not start; see $PG_LOG"
    local pw
    pw="$(cat "$PG_PASSFILE")"
    if ! PGPASSWORD="$pw" "$(pg_bindir)/psql" -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres \
        -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
        PGPASSWORD="$pw" "$(pg_bindir)/createdb" -h "$HOST" -p "$PG_PORT" -U "$PG_USER" "$PG_DB"
    fi
    log "postgres started on $HOST:$PG_PORT (synchronous_commit=$sync)"
}

pg_stop() {
    if ! pg_running; then
        log "postgres not running"
        return 0
    fi
    pg_ctl_ stop -w -t 60 -m fast >/dev/null
    log "postgres stopped"
}

pg_ping() {
    [ -f "$PG_PASSFILE" ] || return 1
    PGPASSWORD="$(cat "$PG_PASSFILE")" "$(pg_bindir)/psql" -h "$HOST" -p "$PG_PORT" \
        -U "$PG_USER" -d "$PG_DB" -tAc 'SELECT 1' >/dev/null 2>&1
}

# --- commands -------------------------------------------------------------------------------

cmd_env() {
    # `export`, so that `eval` reaches the programs the shell starts next, not only the shell.
    echo "export STOCKD_REDIS_URL=redis://$HOST:$REDIS_PORT/0"
    if [ -f "$PG_PASSFILE" ]; then
        echo "export STOCKD_PG_URL=postgres://$PG_USER:$(cat "$PG_PASSFILE")@$HOST:$PG_PORT/$PG_DB"
    else
        log "postgres not initialised yet: run '$0 start' first"
        return 1
    fi
}

cmd_status() {
    local ok=0
    if redis_running && redis_ping; then
        echo "redis: running on $HOST:$REDIS_PORT (pid $(cat "$(redis_pidfile)"))"
    else
        echo "redis: not running"
        ok=1
    fi
    if [ -n "$(pg_bindir)" ] && pg_running && pg_ping; then
        echo "postgres: running on $HOST:$PG_PORT (data $PGDATA_DIR)"
    else
        echo "postgres: not running"
        ok=1
    fi
    return "$ok"
}

case "${1:-}" in
start)
    install_packages
    redis_start
    pg_start
    ;;
stop)
    redis_stop
    if [ -n "$(pg_bindir)" ]; then pg_stop; else log "postgres not installed"; fi
    ;;
status) cmd_status ;;
env) cmd_env ;;
*)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
