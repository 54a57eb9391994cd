"""The pure parts of the benchmarks' stack launcher (bench/stacks.py) and
of the gate micro-benchmark's plan (bench/gate_ops.py), and which way the
benchmarks empty the broker (bench/common.py)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from django.test import override_settings

from bench import common
from bench.gate_ops import shares, split, spread_actions
from bench.stacks import STACKS, parse_stacks, split_argv, stack_env

CLUSTER_URL = "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/attune-bench-x"


def test_it_passes_what_follows_the_double_dash_to_the_benchmark() -> None:
    assert split_argv(["--stack", "cluster", "--", "--count", "10", "--", "x"]) == (
        ["--stack", "cluster"],
        ["--count", "10", "--", "x"],
    )
    assert split_argv(["--stack", "cluster"]) == (["--stack", "cluster"], [])


def test_the_default_stack_keeps_the_operators_servers() -> None:
    base = {"REDIS_URL": "redis://db:6379/3", "CELERY_BROKER_URL": "redis://db:6379/4", "PATH": "/bin"}
    env = stack_env(STACKS["default"], base, cluster_url=CLUSTER_URL, amqp_url=AMQP_URL)
    assert (env["REDIS_URL"], env["CELERY_BROKER_URL"], env["PATH"]) == (
        "redis://db:6379/3",
        "redis://db:6379/4",
        "/bin",
    )


def test_each_stack_points_only_its_scaled_out_part_at_the_started_server() -> None:
    base = {"REDIS_URL": "redis://db:6379/3", "CELERY_BROKER_URL": "redis://db:6379/4"}

    def urls(name: str) -> tuple[str, str]:
        env = stack_env(STACKS[name], base, cluster_url=CLUSTER_URL, amqp_url=AMQP_URL)
        return env["REDIS_URL"], env["CELERY_BROKER_URL"]

    assert urls("cluster") == (CLUSTER_URL, "redis://db:6379/4")
    assert urls("rabbitmq") == ("redis://db:6379/3", AMQP_URL)
    assert urls("cluster-rabbitmq") == (CLUSTER_URL, AMQP_URL)


def test_a_cluster_stack_always_names_its_broker() -> None:
    # Settings refuse a cluster REDIS_URL without an explicit broker URL.
    env = stack_env(STACKS["cluster"], {}, cluster_url=CLUSTER_URL, amqp_url=None)
    assert env["CELERY_BROKER_URL"] == common.DEFAULTS["CELERY_BROKER_URL"]


def test_a_stack_refuses_to_run_without_its_server() -> None:
    with pytest.raises(ValueError, match="cluster"):
        stack_env(STACKS["cluster"], {}, cluster_url=None, amqp_url=AMQP_URL)
    with pytest.raises(ValueError, match="AMQP"):
        stack_env(STACKS["cluster-rabbitmq"], {}, cluster_url=CLUSTER_URL, amqp_url=None)


def test_it_names_the_unknown_stacks() -> None:
    assert [stack.name for stack in parse_stacks("cluster, rabbitmq")] == ["cluster", "rabbitmq"]
    with pytest.raises(argparse.ArgumentTypeError, match="pgbouncer"):
        parse_stacks("cluster,pgbouncer")


def test_it_spreads_the_actions_evenly_and_interleaved_over_the_primaries() -> None:
    # Action ids 1-9 on primaries a, b, c as the slots might put them: unevenly.
    primary = dict(zip(range(1, 10), "aabacbcca", strict=True))
    ids = spread_actions(6, primary.__getitem__, ["a", "b", "c"])
    assert [primary[action_id] for action_id in ids] == ["a", "b", "c", "a", "b", "c"]
    assert ids == [1, 3, 5, 2, 6, 7]
    # Each process's slice covers every primary.
    assert {primary[action_id] for action_id in ids[0::2]} == {"a", "b", "c"}


def test_it_gives_the_first_primaries_the_extra_actions() -> None:
    primary = {action_id: "abc"[action_id % 3] for action_id in range(1, 20)}
    ids = spread_actions(4, primary.__getitem__, ["a", "b", "c"])
    assert sorted(primary[action_id] for action_id in ids) == ["a", "a", "b", "c"]
    assert spread_actions(2, lambda action_id: "only", ["only"]) == [1, 2]


def test_it_shares_the_work_out_to_the_last_execution() -> None:
    assert split(10, 3) == [4, 3, 3]
    parts = shares(list(range(1, 7)), 4, waiting=1050, batch=100, ops=7)
    assert [part.actions for part in parts] == [[1, 5], [2, 6], [3], [4]]
    # 1050 executions are 11 batches of 100, rounded up.
    assert sum(part.batches for part in parts) == 11
    assert sum(part.renews for part in parts) == sum(part.releases for part in parts) == 7


class FakeRedis:
    def __init__(self, url: str, calls: list[str]) -> None:
        self.url, self.calls = url, calls

    def flushdb(self) -> None:
        self.calls.append(f"flushdb {self.url}")


def test_it_flushes_a_redis_broker_and_purges_rabbitmq(monkeypatch: pytest.MonkeyPatch) -> None:
    from attune.celery import app
    from queues import redis_client

    calls: list[str] = []

    def connect(url: str, **_: Any) -> FakeRedis:
        return FakeRedis(url, calls)

    monkeypatch.setattr(redis_client, "connect", connect)
    monkeypatch.setattr(app.control, "purge", lambda: calls.append("purge") or 0)
    with override_settings(CELERY_BROKER_URL="redis://broker:6379/8", BROKER_IS_REDIS=True):
        common.purge_broker()
    with override_settings(CELERY_BROKER_URL=AMQP_URL, BROKER_IS_REDIS=False):
        common.purge_broker()
    # RabbitMQ has no database to flush: the queues the app declares are purged.
    assert calls == ["flushdb redis://broker:6379/8", "purge"]
