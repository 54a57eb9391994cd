"""The gate on a real 3-primary Redis Cluster: actions spread over the
primaries, and everything that spans actions (pipelines, reconcile, live
figures, the stats flusher, the throttles' cache, the fleet-wide locks)
works across all of them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from redis.cluster import RedisCluster

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from queues.gate import get_gate
from queues.keys import QueueRef, lock_key
from queues.live import live_queues
from queues.metrics import QueueCollector
from queues.models import QueueStats
from queues.reaper import reap_once
from queues.reconcile import reconcile_all
from queues.redis_client import RedisClient, connect, primaries
from queues.stats import flush_once
from tests.stacks import CLUSTER, Stack, use_stack

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus
ACTIONS = 20


@pytest.fixture
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    yield from use_stack(request, CLUSTER)


@pytest.fixture
def busy_actions(make_action: Any, redis_db: RedisClient) -> list[Any]:
    """20 actions at limit 1, each with one running and two waiting."""
    actions = [make_action(f"sharded{i}", concurrency_limit=1) for i in range(ACTIONS)]
    for action in actions:
        for index in range(3):
            request_execution(action.ref, {"index": index})
    return actions


def primary_of(client: RedisCluster, key: str) -> str:
    node = client.get_node_from_key(key)
    return f"{node.host}:{node.port}"


def test_it_puts_each_actions_keys_in_one_slot_and_the_actions_on_every_primary(
    busy_actions: list[Any], redis_db: RedisClient
) -> None:
    assert isinstance(redis_db, RedisCluster)
    by_primary: dict[str, list[int]] = {}
    for action in busy_actions:
        keys = QueueRef(action.pk).all_keys()
        assert len({redis_db.keyslot(key) for key in keys}) == 1
        by_primary.setdefault(primary_of(redis_db, keys[0]), []).append(action.pk)
    assert len(by_primary) == 3, by_primary
    # Each primary holds exactly the keys of its actions.
    for node in primaries(redis_db):
        address = "{host}:{port}".format(**node.connection_pool.connection_kwargs)
        queue_keys = node.keys(f"{settings.ATTUNE_REDIS_PREFIX}:{{a*")
        assert {int(key.split("{a")[1].split("}")[0]) for key in queue_keys} == set(by_primary[address])


def test_it_reads_every_action_across_the_primaries_in_one_pass(busy_actions: list[Any]) -> None:
    snapshots = get_gate().action_snapshots([action.pk for action in busy_actions])
    assert [(s.waiting, s.active, s.total_enqueued) for s in snapshots] == [(2, 1, 3)] * ACTIONS

    live = {queue.action_ref: queue for queue in live_queues()}
    assert all((live[a.ref].queue_length, live[a.ref].active_count) == (2, 1) for a in busy_actions)
    families = {family.name: family for family in QueueCollector().collect()}
    assert families["attune_queue_collector_up"].samples[0].value == 1
    lengths = {s.labels["action"]: s.value for s in families["attune_queue_length"].samples}
    assert all(lengths[action.ref] == 2 for action in busy_actions)

    report = flush_once()
    assert set(report.written) == {QueueRef(action.pk) for action in busy_actions}
    assert set(QueueStats.objects.values_list("queue_length", "active_count")) == {(2, 1)}


def test_it_renews_leases_on_every_primary_in_one_call(busy_actions: list[Any]) -> None:
    gate = get_gate()
    held = {
        QueueRef(action.pk): [
            str(pk)
            for pk in Execution.objects.filter(action=action, status=S.SCHEDULED).values_list("pk", flat=True)
        ]
        for action in busy_actions
    }
    assert all(len(ids) == 1 for ids in held.values())
    before = {queue: gate.redis.zscore(queue.active, ids[0]) for queue, ids in held.items()}

    assert gate.renew_many(held, lease_ms=3_600_000) == ACTIONS
    assert all(gate.redis.zscore(queue.active, ids[0]) > before[queue] for queue, ids in held.items())


def test_it_rebuilds_every_primary_from_the_database_in_queue_order(
    busy_actions: list[Any], redis_db: RedisClient
) -> None:
    gate = get_gate()
    queues = [QueueRef(action.pk) for action in busy_actions]
    order_before = [gate.waiting_ids(queue) for queue in queues]
    for node in primaries(redis_db):
        node.flushdb()
    assert not any(s.exists for s in gate.snapshots(queues))

    reports = reconcile_all()

    assert sum(report.waiting_added for report in reports) == 2 * ACTIONS
    assert sum(report.active_added for report in reports) == ACTIONS
    assert [gate.waiting_ids(queue) for queue in queues] == order_before
    assert [(s.waiting, s.active, s.total_enqueued) for s in gate.snapshots(queues)] == [(2, 1, 3)] * ACTIONS


def test_a_lock_held_through_one_client_holds_for_every_other(redis_db: RedisClient) -> None:
    other_process = connect(settings.REDIS_URL)
    lock = other_process.lock(lock_key("reaper"), timeout=30)
    assert lock.acquire(blocking=False)
    try:
        assert reap_once().ran is False
    finally:
        lock.release()
    assert reap_once().ran is True


def test_the_throttles_cache_reads_and_writes_keys_of_any_slot(redis_db: RedisClient) -> None:
    values = {f"throttle_user_{i}": [float(i)] for i in range(30)}
    cache.set_many(values, timeout=60)
    assert cache.get("throttle_user_7") == [7.0]
    assert cache.get_many(list(values)) == values
    cache.delete_many(list(values))
    assert cache.get_many(list(values)) == {}
    with pytest.raises(NotImplementedError):
        cache.clear()
