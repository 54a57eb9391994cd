"""One lease thread per worker process: it keeps every run of the process
alive in one round trip, renews a stale grant at once, and stops renewing a
run that ended."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from queues.gate import RestoreState, get_gate
from queues.keys import QueueRef
from tests.conftest import wait_until
from workers.lease import LeaseKeeper

pytestmark = pytest.mark.integration
LEASE_SECONDS = 0.9  # renewed every 0.3 s


@pytest.fixture
def queues(redis_db: redis.Redis, settings: Any) -> list[QueueRef]:
    settings.ATTUNE_LEASE_SECONDS = LEASE_SECONDS
    get_gate.cache_clear()
    made = [QueueRef(7101), QueueRef(7102)]
    for queue in made:
        get_gate().restore(queue, RestoreState(None, 0, 0, 0, 0, 0, [], []), lease_ms=1000)
    yield made
    get_gate.cache_clear()


def grant(queue: QueueRef, execution_id: str) -> float:
    """Admit ``execution_id`` with a fresh lease; returns its deadline (ms)."""
    get_gate().admit(queue, [execution_id], limit=None, max_waiting=10, lease_ms=int(LEASE_SECONDS * 1000))
    return deadline(queue, execution_id)


def deadline(queue: QueueRef, execution_id: str) -> float:
    return float(get_gate().redis.zscore(queue.active, execution_id) or 0)


def test_it_keeps_runs_of_several_queues_alive_past_their_lease_with_one_thread(
    queues: list[QueueRef],
) -> None:
    keeper = LeaseKeeper()
    first = {queue: grant(queue, f"run-{i}") for i, queue in enumerate(queues)}

    with keeper.holding(queues[0], "run-0", granted_at=time.time()):
        thread = keeper._thread
        with keeper.holding(queues[1], "run-1", granted_at=time.time()):
            assert keeper._thread is thread and thread is not None and thread.is_alive()
            # A fresh grant is not renewed at start: its grant set its lease.
            assert deadline(queues[0], "run-0") == first[queues[0]]
            time.sleep(LEASE_SECONDS * 2.5)
            now_ms = get_gate().now_ms()
            assert deadline(queues[0], "run-0") > now_ms
            assert deadline(queues[1], "run-1") > now_ms
    ended_at = deadline(queues[0], "run-0")
    time.sleep(LEASE_SECONDS)
    # Out of the block, the run is no longer renewed.
    assert deadline(queues[0], "run-0") == ended_at
    assert keeper.held() == {}


@pytest.mark.parametrize("granted_ago", [None, LEASE_SECONDS])
def test_it_renews_at_once_a_grant_older_than_one_interval_or_of_unknown_age(
    queues: list[QueueRef], granted_ago: float | None
) -> None:
    keeper = LeaseKeeper()
    before = grant(queues[0], "late")
    time.sleep(0.05)

    granted_at = None if granted_ago is None else time.time() - granted_ago
    with keeper.holding(queues[0], "late", granted_at=granted_at):
        assert deadline(queues[0], "late") > before


def test_it_does_not_bring_back_a_lease_that_was_reclaimed(queues: list[QueueRef]) -> None:
    keeper = LeaseKeeper()
    grant(queues[0], "reclaimed")
    with keeper.holding(queues[0], "reclaimed", granted_at=time.time()):
        get_gate().release(queues[0], "reclaimed", limit=None, lease_ms=1000, terminal_status="abandoned")
        wait_until(lambda: keeper._thread is not None, timeout=1)
        time.sleep(LEASE_SECONDS)
        assert get_gate().redis.zscore(queues[0].active, "reclaimed") is None
