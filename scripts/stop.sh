#!/usr/bin/env bash
# Stop everything scripts/start.sh started: the web server, the reaper, the
# Celery worker (warm shutdown: running tasks finish first) and the embedded
# Redis if start.sh had to start one. A Redis that was already running, or
# the one at REDIS_URL, is left alone. Data in var/ is kept.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

for name in web reaper worker redis; do
    stop_pidfile "$name"
done
log "stopped"
