"""Shared set-up for the benchmarks: Django on its own database, real Redis,
real `celery worker` subprocesses."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/attune_bench",
    "REDIS_URL": "redis://127.0.0.1:6379/13",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/12",
    "DJANGO_SETTINGS_MODULE": "attune.settings",
    "ATTUNE_LOG_LEVEL": "WARNING",
}


def setup_django() -> None:
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    sys.path.insert(0, str(ROOT))
    _ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _ensure_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    import psycopg2
    from psycopg2 import sql

    base, _, name = url.rpartition("/")
    connection = psycopg2.connect(f"{base}/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    connection.close()


def reset_state() -> None:
    """Empty the executions table and both Redis databases between runs."""
    import redis
    from django.conf import settings

    from executions.models import Execution

    Execution.objects.all().delete()
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_summary() -> list[str]:
    """What the figures were measured on, as markdown list items."""
    import redis
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    redis_version = redis.Redis.from_url(settings.REDIS_URL).info("server")["redis_version"]
    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores",
        f"- Python {platform.python_version()}, PostgreSQL {postgres}, Redis {redis_version}",
    ]


@contextmanager
def celery_worker(
    concurrency: int, extra_env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    log_path = ROOT / "var" / "bench-worker.log"
    log_path.parent.mkdir(exist_ok=True)
    env = {**os.environ, "DATABASE_CONN_MAX_AGE": "60", **(extra_env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "attune",
                "worker",
                "-l",
                "info",
                "-Q",
                "default",
                "-c",
                str(concurrency),
                "--include",
                "bench.tasks",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while " ready." not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start; see {log_path.name}")
            time.sleep(0.1)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
