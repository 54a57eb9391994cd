"""Throw-away local servers, started the way their operators start them,
as plain context managers: the test fixtures of tests/servers.py wrap
them, and the benchmarks (bench/stacks.py, bench/gate_ops.py) use them
directly, so nothing here may depend on pytest.

- ``redis_server``: one standalone ``redis-server`` on a free loopback port;
- ``redis_cluster``: three ``redis-server --cluster-enabled yes`` primaries
  on free loopback ports, joined by ``redis-cli --cluster create``;
- ``redis_cluster_nodes``: the same, but its nodes can be killed and
  restarted (``RunningCluster``), for the tests of a node's loss;
- ``rabbitmq_vhost``: a fresh vhost on the RabbitMQ answering on
  127.0.0.1:5672, made with ``rabbitmqctl add_vhost`` (or the management
  API) and deleted at the end with every queue in it.

Each raises ``Unavailable`` when its server cannot be had at all (a binary
missing, nothing answering), and ``StartFailed`` when it was there but did
not come up.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import signal
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

LOOPBACK = "127.0.0.1"
CLUSTER_PRIMARIES = 3
# A cluster node also listens on its port + 10000, for the cluster bus.
CLUSTER_BUS_OFFSET = 10000
# How long a node goes unanswered before the others mark it failed.
CLUSTER_NODE_TIMEOUT_MS = 2000
RABBITMQ_PORT = 5672
RABBITMQ_MANAGEMENT_PORT = 15672
RABBITMQ_USER = "guest"
START_TIMEOUT_SECONDS = 30.0


class Unavailable(Exception):
    """The server cannot be had here (not installed, not running)."""


class StartFailed(RuntimeError):
    """The server was there but did not start, or not in time."""


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


def wait_for(predicate: Callable[[], object], what: str, log: Path | None = None) -> None:
    """Poll ``predicate`` until it is truthy; StartFailed, with the tail of
    ``log``, after START_TIMEOUT_SECONDS."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not predicate():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise StartFailed(f"timed out after {START_TIMEOUT_SECONDS}s waiting for {what}\n{tail}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# --- Redis ----------------------------------------------------------------------


@dataclass(frozen=True)
class RedisServer:
    port: int

    @property
    def url(self) -> str:
        """A REDIS_URL for database 0 of this server."""
        return f"redis://{LOOPBACK}:{self.port}/0"


@dataclass(frozen=True)
class RedisClusterServers:
    ports: tuple[int, ...]

    @property
    def url(self) -> str:
        """The REDIS_URL that puts the gate on this cluster."""
        return "redis+cluster://" + ",".join(f"{LOOPBACK}:{port}" for port in self.ports)


def _redis_binaries() -> tuple[str, str]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise Unavailable("redis-server and redis-cli are needed (apt-get install redis)")
    return server, cli


def _start_redis(
    binary: str, directory: Path, port: int, *, cluster: bool, config: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    """One redis-server without persistence, answering on ``port``: a
    throw-away server, its files under ``directory``. A server started
    again on the same port finds its cluster's nodes.conf there (nothing
    else: no data is saved). ``config`` is more ``--name value`` options."""
    node_dir = directory / str(port)
    node_dir.mkdir(exist_ok=True)
    log = node_dir / "redis.log"
    command = [binary, "--port", str(port), "--bind", LOOPBACK, "--dir", str(node_dir)]
    command += ["--save", "", "--appendonly", "no", "--logfile", str(log)]
    if cluster:
        command += ["--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf")]
        command += ["--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS)]
    command += config
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: process.poll() is not None or answers(port), f"redis-server on port {port}", log)
        if process.poll() is not None:
            raise StartFailed(
                f"redis-server on port {port} exited:\n{log.read_text(errors='replace')[-3000:]}"
            )
    except BaseException:
        stop(process)
        raise
    return process


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """One standalone Redis, configured as the cluster's nodes are but for
    the cluster itself, stopped at the end."""
    server, _ = _redis_binaries()
    directory = Path(tempfile.mkdtemp(prefix="attune-redis-"))
    port = free_port()
    try:
        process = _start_redis(server, directory, port, cluster=False)
        try:
            yield RedisServer(port)
        finally:
            stop(process)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _redis_cli(cli: str, port: int, *args: str) -> str:
    """What ``redis-cli`` prints for one command to the node on ``port``."""
    completed = subprocess.run(
        [cli, "-h", LOOPBACK, "-p", str(port), *args], capture_output=True, text=True, timeout=5, check=False
    )
    return completed.stdout


def _cluster_ok(cli: str, port: int) -> bool:
    return "cluster_state:ok" in _redis_cli(cli, port, "cluster", "info")


def _replicas_in_sync(cli: str, ports: tuple[int, ...]) -> int:
    """How many of the nodes are replicas whose link to their primary is up."""
    in_sync = 0
    for port in ports:
        in_sync += "master_link_status:up" in _redis_cli(cli, port, "info", "replication")
    return in_sync


@dataclass(frozen=True)
class ClusterOptions:
    """How to start a cluster: replicas per primary, and more
    ``--name value`` options for every node."""

    replicas: int = 0
    config: tuple[str, ...] = ()


@dataclass
class RunningCluster:
    """A cluster's node processes, which a test may kill and start again.
    ``ports`` are every node's, primaries and replicas."""

    ports: tuple[int, ...]
    directory: Path
    options: ClusterOptions
    processes: dict[int, subprocess.Popen[bytes]]

    @property
    def config(self) -> tuple[str, ...]:
        """Every node's options on top of _start_redis's: a replica's first
        sync starts at once, not 5 s later, then ``options.config``."""
        return ("--repl-diskless-sync-delay", "0", *self.options.config)

    @property
    def url(self) -> str:
        return RedisClusterServers(self.ports).url

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port``: it loses everything it held."""
        process = self.processes[port]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def restart(self, port: int) -> None:
        """Start a fresh redis-server on ``port`` with the node's nodes.conf:
        it comes back as the same node owning the same slots, with no data."""
        server, _ = _redis_binaries()
        self.processes[port] = _start_redis(server, self.directory, port, cluster=True, config=self.config)

    def ok(self, port: int) -> bool:
        """Whether the node on ``port`` answers and says cluster_state:ok."""
        _, cli = _redis_binaries()
        return answers(port) and _cluster_ok(cli, port)

    def log(self, port: int) -> str:
        path = self.directory / str(port) / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def redis_cluster_nodes(
    primaries: int = CLUSTER_PRIMARIES, options: ClusterOptions = ClusterOptions()
) -> Iterator[RunningCluster]:
    """``primaries`` cluster primaries, each with ``options.replicas``
    replicas, no persistence, every node started with ``options.config`` on
    top: a throw-away cluster, stopped at the end."""
    server, cli = _redis_binaries()
    directory = Path(tempfile.mkdtemp(prefix="attune-redis-cluster-"))
    running = RunningCluster((), directory, options, {})
    try:
        for _ in range(primaries * (1 + options.replicas)):
            port = free_port(with_bus=True)
            running.processes[port] = _start_redis(
                server, directory, port, cluster=True, config=running.config
            )
        running.ports = tuple(running.processes)
        nodes = [f"{LOOPBACK}:{port}" for port in running.ports]
        created = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *nodes,
                "--cluster-replicas",
                str(options.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            raise StartFailed(f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}")
        for port in running.ports:
            wait_for(lambda port=port: _cluster_ok(cli, port), f"cluster_state:ok on port {port}")
        # A replica that never synced refuses to take over its primary.
        wait_for(
            lambda: _replicas_in_sync(cli, running.ports) == primaries * options.replicas,
            f"{primaries * options.replicas} replicas in sync",
        )
        yield running
    finally:
        for process in running.processes.values():
            stop(process)
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def redis_cluster(primaries: int = CLUSTER_PRIMARIES) -> Iterator[RedisClusterServers]:
    """``primaries`` cluster primaries, no replicas, no persistence: a
    throw-away cluster, stopped at the end."""
    with redis_cluster_nodes(primaries) as running:
        yield RedisClusterServers(running.ports)


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


@contextlib.contextmanager
def rabbitmq_vhost(prefix: str = "attune-test") -> Iterator[str]:
    """``amqp://guest:guest@127.0.0.1:5672/<prefix>-<random>``, a vhost of
    its own on the local RabbitMQ, deleted at the end."""
    if not answers(RABBITMQ_PORT):
        raise Unavailable(
            f"no RabbitMQ answers on {LOOPBACK}:{RABBITMQ_PORT} (.ci/run starts Debian's rabbitmq-server)"
        )
    vhost = f"{prefix}-{uuid.uuid4().hex[:10]}"
    remove = _add_vhost(vhost)
    if remove is None:
        raise Unavailable(
            "cannot make a RabbitMQ vhost: rabbitmqctl failed and the management API does not answer"
        )
    try:
        yield f"amqp://{RABBITMQ_USER}:{RABBITMQ_USER}@{LOOPBACK}:{RABBITMQ_PORT}/{vhost}"
    finally:
        remove()
