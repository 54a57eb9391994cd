"""The benchmarks that run on the scaled-out stacks run end to end, with
counts too small to mean anything: what they print is checked, never how
fast it was."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT, subprocess_env
from tests.local_servers import RABBITMQ_PORT, answers
from tests.servers import unavailable

BENCH_TIMEOUT_SECONDS = 240


def needs_redis_server() -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        unavailable("redis-server and redis-cli are needed to start a cluster (apt-get install redis)")


def run(command: list[str], env: dict[str, str]) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout


@pytest.mark.integration
def test_the_gate_micro_benchmark_measures_a_standalone_redis_and_a_cluster() -> None:
    needs_redis_server()
    output = run(
        ["bench.gate_ops", "--processes", "2", "--actions", "3", "--waiting", "600", "--ops", "100"],
        # No database: only the servers it starts itself.
        dict(os.environ),
    )
    assert "## one standalone Redis" in output
    assert "## Redis Cluster of 3 primaries" in output
    for script in ("admit_v6", "renew_v1", "release_v4"):
        assert output.count(f"| {script}") == 2, output
    # One row per primary in each memory table: 1 + 3.
    assert output.count("| 127.0.0.1:") == 4, output


@pytest.mark.acceptance
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_stack_launcher_runs_the_throughput_benchmark_on_a_cluster_and_on_rabbitmq(
    redis_db: Any,
) -> None:
    needs_redis_server()
    if not answers(RABBITMQ_PORT):
        unavailable(f"no RabbitMQ answers on 127.0.0.1:{RABBITMQ_PORT}")
    output = run(
        ["bench.stacks", "--stack", "cluster,rabbitmq", "--", "--count", "20", "--rows", "gate-1"],
        subprocess_env(),
    )
    cluster, rabbitmq = output.split("# Stack: cluster\n")[1].split("# Stack: rabbitmq\n")
    assert "- gate: Redis Cluster of 3 primaries" in cluster
    assert "- Celery broker: Redis" in cluster
    assert "- gate: one standalone Redis" in rabbitmq
    assert "- Celery broker: RabbitMQ" in rabbitmq
    for part in (cluster, rabbitmq):
        assert "| gate, limit 1, batches of 100 | " in part
        # The gate's guarantee holds whatever the stack.
        assert "grant 0 / start 0" in part
