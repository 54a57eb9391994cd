"""The real servers of the scaled-out stacks, started the way their
operators start them, one of each per test session:

- ``redis_cluster``: three ``redis-server --cluster-enabled yes`` primaries
  on free loopback ports, joined by ``redis-cli --cluster create``;
- ``rabbitmq_url``: a fresh vhost on the RabbitMQ answering on
  127.0.0.1:5672 (``.ci/run`` installs and starts Debian's
  ``rabbitmq-server`` when none does), removed at the end;
- ``pgbouncer``: Debian's ``pgbouncer`` in transaction pooling mode in
  front of the test PostgreSQL.

Each is skipped, saying why, when its server cannot be had, and fails the
session instead under CI=true, where ``.ci/run`` installs them all.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"
CLUSTER_PRIMARIES = 3
# A cluster node also listens on its port + 10000, for the cluster bus.
CLUSTER_BUS_OFFSET = 10000
RABBITMQ_PORT = 5672
RABBITMQ_MANAGEMENT_PORT = 15672
RABBITMQ_USER = "guest"
START_TIMEOUT_SECONDS = 30.0


def unavailable(reason: str) -> None:
    """Skip the test, or fail it in CI, where every server must be there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def answers(port: int, host: str = LOOPBACK) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port(*, with_bus: bool = False) -> int:
    """A loopback port nothing listens on (and, ``with_bus``, its cluster
    bus port too). Another process may take it before we do; the server
    start then fails loudly rather than silently sharing it."""
    while True:
        with socket.socket() as probe:
            probe.bind((LOOPBACK, 0))
            port = int(probe.getsockname()[1])
        if not with_bus or (port + CLUSTER_BUS_OFFSET < 65536 and _bindable(port + CLUSTER_BUS_OFFSET)):
            return port


def _wait(predicate: object, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            pytest.fail(f"timed out after {START_TIMEOUT_SECONDS}s waiting for {what}\n{tail}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# --- Redis Cluster ------------------------------------------------------------


@dataclass(frozen=True)
class RedisClusterServers:
    ports: tuple[int, ...]

    @property
    def url(self) -> str:
        """The REDIS_URL that puts the gate on this cluster."""
        return "redis+cluster://" + ",".join(f"{LOOPBACK}:{port}" for port in self.ports)


def _cluster_ok(port: int) -> bool:
    completed = subprocess.run(
        ["redis-cli", "-h", LOOPBACK, "-p", str(port), "cluster", "info"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return "cluster_state:ok" in completed.stdout


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """Three cluster primaries, no replicas, no persistence: a throw-away
    cluster, stopped at the end of the session."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        unavailable(
            "redis-server and redis-cli are needed for the Redis Cluster tests (apt-get install redis)"
        )
    directory = Path(tempfile.mkdtemp(prefix="attune-redis-cluster-"))
    processes: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        for _ in range(CLUSTER_PRIMARIES):
            port = free_port(with_bus=True)
            node_dir = directory / str(port)
            node_dir.mkdir()
            log = node_dir / "redis.log"
            processes.append(
                subprocess.Popen(
                    [
                        str(server),
                        "--port",
                        str(port),
                        "--bind",
                        LOOPBACK,
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(node_dir / "nodes.conf"),
                        "--cluster-node-timeout",
                        "2000",
                        "--dir",
                        str(node_dir),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--logfile",
                        str(log),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                )
            )
            ports.append(port)
            _wait(lambda port=port: answers(port), f"redis-server on port {port}", log)
        created = subprocess.run(
            [str(cli), "--cluster", "create", *(f"{LOOPBACK}:{port}" for port in ports), "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}")
        for port in ports:
            _wait(lambda port=port: _cluster_ok(port), f"cluster_state:ok on port {port}")
        yield RedisClusterServers(tuple(ports))
    finally:
        for process in processes:
            _stop(process)
        shutil.rmtree(directory, ignore_errors=True)


# --- RabbitMQ -------------------------------------------------------------------


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str] | None:
    """Run rabbitmqctl; None when it is missing or cannot reach the node."""
    binary = shutil.which("rabbitmqctl")
    if binary is None:
        return None
    try:
        completed = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return None
    return completed if completed.returncode == 0 else None


def _management(method: str, path: str, body: dict[str, str] | None = None) -> bool:
    """One call of the management HTTP API as guest; whether it succeeded."""
    request = urllib.request.Request(
        f"http://{LOOPBACK}:{RABBITMQ_MANAGEMENT_PORT}/api/{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={
            "Authorization": "Basic "
            + base64.b64encode(f"{RABBITMQ_USER}:{RABBITMQ_USER}".encode()).decode(),
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10):
            return True
    except (urllib.error.URLError, OSError):
        return False


def _add_vhost(vhost: str) -> Callable[[], object] | None:
    """Make ``vhost`` with guest allowed everything in it; returns what
    removes it, or None when neither rabbitmqctl nor the management API
    could make it."""
    permissions = [".*", ".*", ".*"]
    if _rabbitmqctl("add_vhost", vhost) is not None:
        _rabbitmqctl("set_permissions", "-p", vhost, RABBITMQ_USER, *permissions)
        return lambda: _rabbitmqctl("delete_vhost", vhost)
    quoted = urllib.parse.quote(vhost, safe="")
    if _management("PUT", f"vhosts/{quoted}", {}):
        grant = dict(zip(("configure", "write", "read"), permissions, strict=True))
        _management("PUT", f"permissions/{quoted}/{RABBITMQ_USER}", grant)
        return lambda: _management("DELETE", f"vhosts/{quoted}")
    return None


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """``amqp://guest:guest@127.0.0.1:5672/<fresh vhost>``, the vhost made
    with rabbitmqctl (or, where it cannot reach the node, the management
    API) and deleted at the end of the session with every queue in it."""
    if not answers(RABBITMQ_PORT):
        unavailable(
            f"no RabbitMQ answers on {LOOPBACK}:{RABBITMQ_PORT} (.ci/run starts Debian's rabbitmq-server)"
        )
    vhost = f"attune-test-{uuid.uuid4().hex[:10]}"
    remove = _add_vhost(vhost)
    if remove is None:
        unavailable("cannot make a RabbitMQ vhost: rabbitmqctl failed and the management API does not answer")
    try:
        yield f"amqp://{RABBITMQ_USER}:{RABBITMQ_USER}@{LOOPBACK}:{RABBITMQ_PORT}/{vhost}"
    finally:
        if remove is not None:
            remove()


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
        _wait(
            lambda: process.poll() is not None or _pgbouncer_answers(port, user, str(database["NAME"])),
            f"pgbouncer on port {port}",
            log,
        )
        if process.poll() is not None:
            pytest.fail(f"pgbouncer exited at start:\n{log.read_text(errors='replace')[-3000:]}")
        yield PgBouncer(LOOPBACK, port, user)
    finally:
        _stop(process)
        shutil.rmtree(directory, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
