"""Shared set-up for the benchmarks: Django on its own database, real Redis,
real `celery worker` subprocesses.

The gate's Redis and the broker are whatever REDIS_URL and
CELERY_BROKER_URL say: a standalone Redis or a Redis Cluster
(``redis+cluster://``) for the gate, Redis or RabbitMQ (``amqp://``) for
the broker; bench/stacks.py starts the scaled-out ones and runs a
benchmark on each."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from queues.redis_client import RedisClient

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


def gate_redis() -> RedisClient:
    """A client of the gate's Redis as the app makes it: a RedisCluster on a
    ``redis+cluster://`` REDIS_URL."""
    from django.conf import settings

    from queues.redis_client import connect

    return connect(settings.REDIS_URL)


def flush_gate() -> None:
    """Empty the gate's Redis database, on every primary of a cluster."""
    from queues.redis_client import primaries

    for node in primaries(gate_redis()):
        node.flushdb()


def purge_broker() -> None:
    """Drop every message the benchmarks may have left with the broker: its
    whole Redis database, or on RabbitMQ (where the vhost is shared with
    whatever else uses it) the queues the app declares, `default` among
    them, which every benchmark worker consumes."""
    from django.conf import settings

    if settings.BROKER_IS_REDIS:
        from queues.redis_client import connect

        connect(settings.CELERY_BROKER_URL).flushdb()
        return
    from attune.celery import app

    app.control.purge()


def reset_state() -> None:
    """Empty the executions table, the gate's Redis and the broker between
    runs; no worker may be running."""
    from executions.models import Execution

    Execution.objects.all().delete()
    flush_gate()
    purge_broker()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _where(url: str) -> str:
    """host:port and path of a URL, without its credentials."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.hostname}:{parts.port}{parts.path}"


def gate_summary(client: RedisClient) -> str:
    from redis.cluster import RedisCluster

    from queues.redis_client import primaries

    nodes = primaries(client)
    # INFO goes to one node of a cluster; the nodes run the same build.
    version = nodes[0].info("server")["redis_version"]
    if isinstance(client, RedisCluster):
        where = ", ".join(f"{node.host}:{node.port}" for node in client.get_primaries())
        return f"Redis Cluster of {len(nodes)} primaries ({where}), Redis {version}"
    from django.conf import settings

    return f"one standalone Redis ({_where(settings.REDIS_URL)}), Redis {version}"


def broker_summary() -> str:
    from django.conf import settings

    where = _where(settings.CELERY_BROKER_URL)
    if settings.BROKER_IS_REDIS:
        return f"Redis ({where})"
    from attune.celery import app

    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        properties = getattr(connection.connection, "server_properties", {}) or {}
    product = properties.get("product", "AMQP")
    version = properties.get("version", "")
    acks = "at the end of each task" if settings.CELERY_TASK_ACKS_LATE else "as each task starts"
    return f"{product} {version} ({where}), tasks acknowledged {acks}".replace("  ", " ")


def machine_summary() -> list[str]:
    """What the figures were measured on, as markdown list items."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores",
        f"- Python {platform.python_version()}, PostgreSQL {postgres}",
        f"- gate: {gate_summary(gate_redis())}",
        f"- Celery broker: {broker_summary()}",
    ]


def worker_command(*options: str) -> list[str]:
    """The command of a benchmark's worker: the `default` queue, no gossip
    or mingle (one worker, nothing to sync), then ``options``."""
    return [
        sys.executable,
        *("-m", "celery", "-A", "attune", "worker", "-Q", "default"),
        *("--without-gossip", "--without-mingle"),
        *options,
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
            worker_command("-l", "info", "-c", str(concurrency), "--include", "bench.tasks"),
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
