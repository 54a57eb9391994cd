"""Shared fixtures: real PostgreSQL, real Redis, real `celery worker` processes.

The suite talks to the services named by DATABASE_URL and REDIS_URL
(scripts/test.sh sets them; tests/testenv.py gives the same defaults). The gate uses one
Redis database and the Celery broker another, both flushed around every
test that asks for `redis_db`. A test parametrized over tests.stacks.STACKS
runs on a Redis Cluster, RabbitMQ and PgBouncer too (tests/servers.py
starts them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from queues.redis_client import RedisClient, connect, primaries
from tests.servers import pgbouncer, private_redis_cluster, rabbitmq_url, redis_cluster
from tests.stacks import Stack, stack

# Fixtures defined in those modules, used by name.
__all__ = ["pgbouncer", "private_redis_cluster", "rabbitmq_url", "redis_cluster", "stack"]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.1, message: str = ""
) -> Any:
    """Poll until ``predicate`` returns something truthy; fail the test
    with ``message`` if it does not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for: {message or predicate}")
        time.sleep(interval)


def flush_broker() -> None:
    """Drop every message of the broker: its Redis database, or on
    RabbitMQ the default queue (the vhost is the session's own)."""
    from django.conf import settings

    if settings.BROKER_IS_REDIS:
        connect(settings.CELERY_BROKER_URL).flushdb()
    else:
        from attune.celery import app

        app.control.purge()


@pytest.fixture
def redis_db(stack: Stack) -> Iterator[RedisClient]:
    """The gate's Redis (every primary of a cluster), flushed with the
    broker before and after."""
    from django.conf import settings

    gate_client = connect(settings.REDIS_URL)
    for node in primaries(gate_client):
        node.flushdb()
    flush_broker()
    yield gate_client
    # A client of its own: a test may have changed the cluster's primaries
    # (a replica taking over a killed one).
    for node in primaries(connect(settings.REDIS_URL)):
        node.flushdb()
    flush_broker()


@pytest.fixture
def core_pack(db: None) -> list[Any]:
    from executions.core_pack import load_core_pack

    return load_core_pack()


@pytest.fixture
def make_action(db: None) -> Callable[..., Any]:
    """Factory: make_action("sleepy", entrypoint=..., concurrency_limit=2)."""
    from executions.models import Action, Pack

    def factory(name: str | None = None, *, pack: str = "test", **fields: Any) -> Action:
        pack_obj, _ = Pack.objects.get_or_create(ref=pack)
        defaults: dict[str, Any] = {
            "runner": "python",
            "entrypoint": "workers.core_actions.noop",
            "parameters_schema": {"type": "object"},
        }
        defaults.update(fields)
        return Action.objects.create(pack=pack_obj, name=name or f"a{uuid.uuid4().hex[:8]}", **defaults)

    return factory


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the worker's whole process group (main process and pool)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.process.wait(timeout=5)
        # Pool children may outlive a killed parent for a moment.
        self.kill(signal.SIGKILL)


def _database_url_for_subprocesses() -> str:
    """The URL of the test database pytest-django created, for workers."""
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("worker tests need PostgreSQL (set DATABASE_URL to a postgres:// URL)")
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every process a test starts (workers, the reaper,
    management commands): the test database and Redis, the test's lease
    and reaper settings, and no metrics ports unless ``extra`` gives one
    (tests running side by side would fight over them)."""
    from django.conf import settings

    return {
        **os.environ,
        "DATABASE_URL": _database_url_for_subprocesses(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "ATTUNE_LEASE_SECONDS": str(settings.ATTUNE_LEASE_SECONDS),
        "ATTUNE_REAPER_INTERVAL_SECONDS": str(settings.ATTUNE_REAPER_INTERVAL_SECONDS),
        "DATABASE_CONN_MAX_AGE": "0",
        "ATTUNE_DB_POOLER": settings.DB_POOLER,
        "ATTUNE_WORKER_METRICS_PORT": "0",
        "ATTUNE_REAPER_METRICS_PORT": "0",
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }


def spawn(command: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``command`` from the repository root in a process group of its
    own (so a kill reaches its children), its output going to ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def start_gunicorn(port: int, log_path: Path, *, workers: int = 2) -> WorkerProcess:
    """The web server as production runs it (attune/gunicorn_config.py, so
    prometheus_client in multiprocess mode over its own fresh directory)
    with ``workers`` processes, serving on 127.0.0.1:``port``."""
    env = subprocess_env()
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "gunicorn", "-c", "python:attune.gunicorn_config"]
    command += ["--workers", str(workers), "--bind", f"127.0.0.1:{port}"]
    web = WorkerProcess(f"gunicorn-{port}", spawn(command, log_path, env), log_path, env)
    wait_until(
        lambda: web.log().count("Booting worker") >= workers or web.process.poll() is not None,
        timeout=30,
        message=f"{workers} gunicorn workers",
    )
    assert web.process.poll() is None, web.log()[-3000:]
    return web


@pytest.fixture
def worker_factory(
    transactional_db: None, redis_db: RedisClient, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real `celery -A attune worker` processes against the test
    database; every one is stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(
        name: str | None = None,
        *,
        concurrency: int = 2,
        queues: str = "default",
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> WorkerProcess:
        name = name or f"w{len(started) + 1}-{uuid.uuid4().hex[:6]}"
        log_path = tmp_path / f"{name}.log"
        worker_env = subprocess_env(env)
        process = spawn(
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
                queues,
                "-c",
                str(concurrency),
                "-n",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            log_path,
            worker_env,
        )
        worker = WorkerProcess(name, process, log_path, worker_env)
        started.append(worker)
        if wait:
            wait_until(
                lambda: " ready." in worker.log() or process.poll() is not None,
                timeout=30,
                message=f"worker {name} to be ready",
            )
            if process.poll() is not None:
                pytest.fail(f"worker {name} exited at start:\n{worker.log()[-4000:]}")
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
