"""The stacks a test can run on: where the gate's Redis, the Celery broker
and the database connections are.

A test parametrized with ``@pytest.mark.parametrize("stack", STACKS,
indirect=True)`` runs once per stack; every other test runs on the default
one. The ``stack`` fixture points this process at the stack's servers
(Django settings, the cached gate client, the Celery app's connections,
the database connection) and, through ``subprocess_env``, every worker and
reaper the test starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import kombu.pools
import pytest

from attune.broker import transport_for


@dataclass(frozen=True)
class Stack:
    name: str
    # The gate on a 3-primary Redis Cluster, not the standalone REDIS_URL.
    cluster: bool = False
    # The broker on RabbitMQ, not the Redis of CELERY_BROKER_URL.
    rabbitmq: bool = False
    # Workers, the reaper and this process reach PostgreSQL through PgBouncer.
    pgbouncer: bool = False

    def __str__(self) -> str:
        return self.name


DEFAULT = Stack("default")
CLUSTER = Stack("cluster", cluster=True)
RABBITMQ = Stack("rabbitmq", rabbitmq=True)
SCALED = Stack("cluster-rabbitmq-pgbouncer", cluster=True, rabbitmq=True, pgbouncer=True)
STACKS = [DEFAULT, CLUSTER, RABBITMQ, SCALED]


def reset_clients() -> None:
    """Forget the process's cached gate client, so the next use connects
    to the REDIS_URL in force."""
    from queues.gate import get_gate
    from queues.redis_client import get_redis

    get_gate.cache_clear()
    get_redis.cache_clear()


def point_celery_at(broker_url: str, transport_options: dict[str, Any]) -> None:
    """Make this process's Celery app send to ``broker_url`` from now on:
    the app reads its broker once and keeps a pool of connections to it."""
    from attune.celery import app

    # Celery reads CELERY_BROKER_URL from the environment before its
    # configuration (tests/testenv.py sets it).
    os.environ["CELERY_BROKER_URL"] = broker_url
    app.conf.broker_url = broker_url
    app.conf.broker_transport_options = transport_options
    # kombu keeps its connection and producer pools in a registry of its
    # own, which hands a closed pool back unless cleared too.
    kombu.pools.reset()
    # What Celery itself resets after a fork, so the next send connects anew.
    app._after_fork()


def assert_ran_on(request: pytest.FixtureRequest, stack: Stack, workers: Iterable[Any]) -> None:
    """The workers (tests.conftest.WorkerProcess) were given the stack's
    servers and used them: the broker their banner names, and, behind
    PgBouncer, transactions the pooler counted for the test database."""
    from django.db import connection

    for worker in workers:
        assert worker.env["REDIS_URL"].startswith("redis+cluster://") is stack.cluster, worker.name
        assert worker.env["CELERY_BROKER_URL"].startswith("amqp://") is stack.rabbitmq, worker.name
        assert ("transport:   amqp://" in worker.log()) is stack.rabbitmq, worker.name
        assert (worker.env["ATTUNE_DB_POOLER"] == "pgbouncer") is stack.pgbouncer, worker.name
    if stack.pgbouncer:
        bouncer = request.getfixturevalue("pgbouncer")
        assert all(
            worker.env["DATABASE_URL"].startswith(f"postgres://{bouncer.user}@{bouncer.host}:{bouncer.port}/")
            for worker in workers
        )
        assert bouncer.transactions(str(connection.settings_dict["NAME"])) > 0


@pytest.fixture
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The stack of the test (``DEFAULT`` unless parametrized), in force
    for this process and every process the test starts."""
    yield from use_stack(request, getattr(request, "param", DEFAULT))


def use_stack(
    request: pytest.FixtureRequest, chosen: Stack, *, cluster_url: str | None = None
) -> Iterator[Stack]:
    """The body of a ``stack`` fixture: a module may define its own, e.g.
    one parametrized over the stacks its tests must pass on. A cluster
    stack's gate is on the session's cluster, or on ``cluster_url``'s (a
    test's own, one it may break)."""
    if chosen == DEFAULT:
        yield chosen
        return
    from django.conf import settings
    from django.db import connection
    from django.test import override_settings

    from attune.celery import app

    overrides: dict[str, Any] = {}
    saved_environ = os.environ.get("CELERY_BROKER_URL")
    saved_broker = (str(app.conf.broker_url), dict(app.conf.broker_transport_options or {}))
    saved_database = {
        key: connection.settings_dict.get(key)
        for key in ("HOST", "PORT", "CONN_MAX_AGE", "DISABLE_SERVER_SIDE_CURSORS")
    }
    if chosen.cluster:
        url = cluster_url or request.getfixturevalue("redis_cluster").url
        cache = {**settings.CACHES["default"], "BACKEND": "attune.cache.RedisClusterCache", "LOCATION": url}
        overrides.update(REDIS_URL=url, CACHES={"default": cache})
    if chosen.rabbitmq:
        rabbitmq_url = request.getfixturevalue("rabbitmq_url")
        overrides.update(
            CELERY_BROKER_URL=rabbitmq_url,
            CELERY_BROKER_TRANSPORT=transport_for(rabbitmq_url),
            BROKER_IS_REDIS=False,
        )
    if chosen.pgbouncer:
        bouncer = request.getfixturevalue("pgbouncer")
        overrides.update(DB_POOLER="pgbouncer")
        connection.close()
        # The next query connects through PgBouncer, with the settings
        # ATTUNE_DB_POOLER=pgbouncer gives every other process.
        connection.settings_dict.update(
            HOST=bouncer.host, PORT=str(bouncer.port), CONN_MAX_AGE=0, DISABLE_SERVER_SIDE_CURSORS=True
        )
    override = override_settings(**overrides)
    override.enable()
    if chosen.rabbitmq:
        point_celery_at(settings.CELERY_BROKER_URL, {})
    reset_clients()
    try:
        yield chosen
    finally:
        override.disable()
        reset_clients()
        if chosen.rabbitmq:
            point_celery_at(*saved_broker)
            if saved_environ is None:
                del os.environ["CELERY_BROKER_URL"]
        if chosen.pgbouncer:
            connection.close()
            connection.settings_dict.update(saved_database)
