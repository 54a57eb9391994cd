"""The real servers of the scaled-out stacks, started the way their
operators start them, one of each per test session (tests/local_servers.py
starts the Redis Cluster and the RabbitMQ vhost, for the benchmarks too):

- ``redis_cluster``: three ``redis-server --cluster-enabled yes`` primaries
  on free loopback ports, joined by ``redis-cli --cluster create``;
- ``private_redis_cluster``: the same for one test alone, whose nodes the
  test may kill and restart without touching the session's cluster;
- ``rabbitmq_url``: a fresh vhost on the RabbitMQ answering on
  127.0.0.1:5672 (``.ci/run`` installs and starts Debian's
  ``rabbitmq-server`` when none does), removed at the end;
- ``pgbouncer``: Debian's ``pgbouncer`` in transaction pooling mode in
  front of the test PostgreSQL.

Each is skipped, saying why, when its server cannot be had, and fails the
session instead under CI=true, where ``.ci/run`` installs them all.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import local_servers
from tests.local_servers import (
    LOOPBACK,
    ClusterOptions,
    RedisClusterServers,
    RunningCluster,
    answers,
    free_port,
)

# Used by name by other test modules.
__all__ = [
    "LOOPBACK",
    "ClusterOptions",
    "RedisClusterServers",
    "RunningCluster",
    "answers",
    "free_port",
    "pgbouncer",
    "private_redis_cluster",
    "rabbitmq_url",
    "redis_cluster",
]


def unavailable(reason: str) -> None:
    """Skip the test, or fail it in CI, where every server must be there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def as_test_outcome() -> Iterator[None]:
    """A server that cannot be had skips the test (fails it in CI); one
    that fails to start fails it."""
    try:
        yield
    except local_servers.Unavailable as error:
        unavailable(str(error))
    except local_servers.StartFailed as error:
        pytest.fail(str(error))


# --- Redis Cluster ------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """Three cluster primaries, no replicas, no persistence: a throw-away
    cluster, stopped at the end of the session."""
    with as_test_outcome(), local_servers.redis_cluster() as cluster:
        yield cluster


@pytest.fixture
def private_redis_cluster(request: pytest.FixtureRequest) -> Iterator[RunningCluster]:
    """A cluster like ``redis_cluster``'s for this test alone, so it may
    kill and restart a node. An indirect parameter, if any, is a
    ``ClusterOptions``: replicas per primary, more ``redis-server`` options."""
    options = getattr(request, "param", ClusterOptions())
    with as_test_outcome(), local_servers.redis_cluster_nodes(options=options) as cluster:
        yield cluster


# --- RabbitMQ -------------------------------------------------------------------


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """``amqp://guest:guest@127.0.0.1:5672/<fresh vhost>``, the vhost made
    with rabbitmqctl (or, where it cannot reach the node, the management
    API) and deleted at the end of the session with every queue in it."""
    with as_test_outcome(), local_servers.rabbitmq_vhost() as url:
        yield url


# --- PgBouncer ------------------------------------------------------------------


@dataclass(frozen=True)
class PgBouncer:
    host: str
    port: int
    user: str

    def transactions(self, database: str) -> int:
        """Transactions the pooler has passed to ``database`` (its admin
        console's SHOW STATS), to show traffic really went through it."""
        import psycopg2

        console = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname="pgbouncer")
        # The console runs no transactions: nothing may open one.
        console.autocommit = True
        try:
            with console.cursor() as cursor:
                cursor.execute("SHOW STATS")
                names = [column.name for column in cursor.description]
                rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            console.close()
        return sum(int(row["total_xact_count"]) for row in rows if row["database"] == database)


def _pgbouncer_answers(port: int, user: str, database: str) -> bool:
    import psycopg2

    try:
        connection = psycopg2.connect(host=LOOPBACK, port=port, user=user, dbname=database, connect_timeout=2)
    except psycopg2.Error:
        return False
    connection.close()
    return True


@pytest.fixture(scope="session")
def pgbouncer(django_db_setup: None) -> Iterator[PgBouncer]:
    """PgBouncer in transaction pooling mode on a free loopback port, in
    front of the PostgreSQL the test database is on (every database name
    passed through, users trusted: it listens on loopback only). Fewer
    server connections than clients, so pooling really happens."""
    from django.db import connection

    binary = shutil.which("pgbouncer")
    if binary is None:
        unavailable("pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)")
    database = connection.settings_dict
    if database["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("PgBouncer tests need PostgreSQL (set DATABASE_URL to a postgres:// URL)")
    user = str(database["USER"] or "postgres")
    directory = Path(tempfile.mkdtemp(prefix="attune-pgbouncer-"))
    port = free_port()
    (directory / "users.txt").write_text(f'"{user}" "{database["PASSWORD"] or ""}"\n')
    (directory / "pgbouncer.ini").write_text(
        "\n".join(
            [
                "[databases]",
                f"* = host={database['HOST'] or LOOPBACK} port={database['PORT'] or 5432}",
                "[pgbouncer]",
                f"listen_addr = {LOOPBACK}",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {directory / 'users.txt'}",
                "pool_mode = transaction",
                f"admin_users = {user}",
                "max_client_conn = 500",
                "default_pool_size = 8",
                # psycopg2 sends none, but Django's test runner and others may.
                "ignore_startup_parameters = extra_float_digits,options",
                "",
            ]
        )
    )
    command = [binary, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root; -u drops to a system user, who
        # must be able to read the configuration.
        system_user = next(
            (name for name in ("postgres", "pgbouncer", "nobody") if _user_exists(name)), "nobody"
        )
        directory.chmod(0o755)
        for path in directory.iterdir():
            path.chmod(0o644)
        command[1:1] = ["-u", system_user]
    log = directory / "pgbouncer.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        with as_test_outcome():
            local_servers.wait_for(
                lambda: process.poll() is not None or _pgbouncer_answers(port, user, str(database["NAME"])),
                f"pgbouncer on port {port}",
                log,
            )
        if process.poll() is not None:
            pytest.fail(f"pgbouncer exited at start:\n{log.read_text(errors='replace')[-3000:]}")
        yield PgBouncer(LOOPBACK, port, user)
    finally:
        local_servers.stop(process)
        shutil.rmtree(directory, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
