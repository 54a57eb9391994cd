"""Contract tests of the Lua scripts against a real Redis, standalone and
a 3-primary cluster, without the database."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from queues.gate import (
    DEFAULT_PRIORITY,
    KEEP_LIMIT,
    MAX_PRIORITY,
    Admission,
    BatchAdmission,
    Gate,
    RestoreState,
    order_score,
    seq_of,
)
from queues.keys import QueueRef
from queues.redis_client import RedisClient, primaries
from tests.stacks import CLUSTER, DEFAULT, Stack, use_stack

pytestmark = pytest.mark.integration
LEASE_MS = 30_000


@pytest.fixture(params=[DEFAULT, CLUSTER], ids=str)
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    # Every script, on one Redis and on a cluster, where each action's keys
    # live on the primary of their hash tag's slot.
    yield from use_stack(request, request.param)


@pytest.fixture
def gate(redis_db: RedisClient) -> Iterator[Gate]:
    yield Gate(redis_db)


def every_key(client: RedisClient) -> list[str]:
    return sorted(key for node in primaries(client) for key in node.keys("*"))


@pytest.fixture
def queue(gate: Gate) -> QueueRef:
    queue = QueueRef(4242)
    gate.restore(queue, RestoreState(None, 0, 0, 0, 0, 0, [], []), lease_ms=LEASE_MS)
    return queue


def admit_batch(
    gate: Gate, queue: QueueRef, execution_ids: list[str], limit: int | None = 2, max_waiting: int = 100
) -> BatchAdmission:
    return gate.admit(queue, execution_ids, limit=limit, max_waiting=max_waiting, lease_ms=LEASE_MS)


def admit(
    gate: Gate, queue: QueueRef, execution_id: str, limit: int | None = 2, max_waiting: int = 100
) -> Admission | BatchAdmission:
    """One execution through admit_v6: its admission, or the batch's
    outcome when nothing was admitted."""
    batch = admit_batch(gate, queue, [execution_id], limit, max_waiting)
    return batch.admissions[0] if batch.outcome == "admitted" else batch


def test_it_keys_every_queue_by_the_action_hash_tag(queue: QueueRef) -> None:
    assert all("{a4242}" in key for key in queue.all_keys())
    assert len({key.split("}")[0] for key in queue.all_keys()}) == 1


def test_it_refuses_to_admit_into_a_queue_that_was_never_built(gate: Gate) -> None:
    assert admit(gate, QueueRef(1), "x").outcome == "uninitialized"
    assert every_key(gate.redis) == []


def test_it_grants_while_slots_are_free_then_queues_in_order(gate: Gate, queue: QueueRef) -> None:
    outcomes = [admit(gate, queue, f"e{i}") for i in range(5)]
    assert [o.outcome for o in outcomes] == ["granted", "granted", "queued", "queued", "queued"]
    assert [o.seq for o in outcomes] == [1, 2, 3, 4, 5]
    assert [o.grant_seq for o in outcomes[:2]] == [1, 2]
    assert [o.position for o in outcomes[2:]] == [1, 2, 3]
    assert gate.waiting_ids(queue) == ["e2", "e3", "e4"]
    assert gate.position(queue, "e3") == 2


def test_it_reports_a_second_admit_of_the_same_execution_as_a_duplicate(gate: Gate, queue: QueueRef) -> None:
    admit(gate, queue, "e0")
    admit(gate, queue, "e1", limit=1)
    assert admit(gate, queue, "e0").outcome == "duplicate"
    assert admit(gate, queue, "e1", limit=1).outcome == "duplicate"
    assert gate.redis.hget(queue.meta, "seq") == "2"


def test_it_rejects_when_full_admitting_nothing_and_counting_the_refusal(gate: Gate, queue: QueueRef) -> None:
    admit(gate, queue, "e0", limit=1, max_waiting=2)
    admit(gate, queue, "e1", limit=1, max_waiting=2)
    admit(gate, queue, "e2", limit=1, max_waiting=2)
    before = gate.redis.hgetall(queue.meta)
    rejected = admit(gate, queue, "e3", limit=1, max_waiting=2)
    assert (rejected.outcome, rejected.waiting) == ("full", 2)
    assert gate.redis.hgetall(queue.meta) == {**before, "rejected:queue_full": "1"}
    assert gate.waiting_ids(queue) == ["e1", "e2"]


def test_it_frees_a_slot_once_and_hands_it_to_the_head(gate: Gate, queue: QueueRef) -> None:
    for i in range(4):
        admit(gate, queue, f"e{i}")
    first = gate.release(queue, "e0", limit=2, lease_ms=LEASE_MS, terminal_status="completed")
    second = gate.release(queue, "e0", limit=2, lease_ms=LEASE_MS, terminal_status="completed")
    assert first.released and [g.execution_id for g in first.grants] == ["e2"]
    assert first.grants[0].grant_seq == 3
    assert not second.released and second.grants == []
    assert gate.redis.zcard(queue.active) == 2
    meta = gate.redis.hgetall(queue.meta)
    assert (meta["total_terminal"], meta["total_completed"]) == ("1", "1")


def test_it_grants_several_heads_in_order_when_the_limit_rises(gate: Gate, queue: QueueRef) -> None:
    for i in range(6):
        admit(gate, queue, f"e{i}", limit=1)
    refill = gate.release(queue, None, limit=4, lease_ms=LEASE_MS)
    assert [g.execution_id for g in refill.grants] == ["e1", "e2", "e3"]
    assert [g.grant_seq for g in refill.grants] == [2, 3, 4]
    assert gate.waiting_ids(queue) == ["e4", "e5"]


def test_it_puts_a_requeued_grant_back_at_the_head(gate: Gate, queue: QueueRef) -> None:
    for i in range(4):
        admit(gate, queue, f"e{i}", limit=1)
    # e0 (seq 1) was granted but its task never started: back to the head.
    result = gate.release(queue, "e0", limit=1, lease_ms=LEASE_MS, requeue_score=1)
    assert result.released
    assert [g.execution_id for g in result.grants] == ["e0"]
    assert gate.waiting_ids(queue) == ["e1", "e2", "e3"]
    assert gate.redis.hget(queue.meta, "total_terminal") in (None, "0")


def test_it_removes_a_waiting_execution_and_keeps_the_others_order(gate: Gate, queue: QueueRef) -> None:
    for i in range(5):
        admit(gate, queue, f"e{i}", limit=1)
    assert gate.dequeue(queue, "e2", terminal_status="cancelled") is True
    assert gate.dequeue(queue, "e2", terminal_status="cancelled") is False
    assert gate.waiting_ids(queue) == ["e1", "e3", "e4"]
    assert gate.redis.hget(queue.meta, "total_terminal") == "1"
    # e2 was admitted third: its enqueue time, kept under seq 3, is gone too.
    assert sorted(seq_of(int(score)) for score in gate.redis.hkeys(queue.enqueued)) == [2, 4, 5]


def test_it_renews_only_leases_still_held(gate: Gate, queue: QueueRef) -> None:
    admit(gate, queue, "e0")
    gate.release(queue, "e0", limit=2, lease_ms=LEASE_MS, terminal_status="completed")
    admit(gate, queue, "e1")
    assert gate.renew(queue, ["e0", "e1"], lease_ms=60_000) == 1
    assert gate.active_ids(queue) == ["e1"]


def test_it_lists_leases_past_their_deadline(gate: Gate, queue: QueueRef) -> None:
    gate.admit(queue, ["short"], limit=5, max_waiting=10, lease_ms=1)
    gate.admit(queue, ["long"], limit=5, max_waiting=10, lease_ms=60_000)
    now = gate.now_ms() + 5
    assert gate.expired(queue, now_ms=now) == ["short"]


def test_it_merges_a_database_rebuild_without_losing_live_entries(gate: Gate, redis_db: RedisClient) -> None:
    queue = QueueRef(7)
    state = RestoreState(
        limit=2,
        seq=10,
        grant_seq=8,
        total_enqueued=10,
        total_terminal=7,
        total_completed=5,
        waiting=[("w9", 9, 1000), ("w10", 10, 2000)],
        active=["a7", "a8"],
    )
    assert gate.restore(queue, state, lease_ms=LEASE_MS) == (2, 2)
    assert gate.restore(queue, state, lease_ms=LEASE_MS) == (0, 0)
    assert gate.waiting_ids(queue) == ["w9", "w10"]
    assert sorted(gate.active_ids(queue)) == ["a7", "a8"]
    # New numbers continue after the database's, never reusing one.
    queued = admit(gate, queue, "new")
    assert (queued.outcome, queued.seq) == ("queued", 11)
    snapshot = gate.snapshots([queue])[0]
    assert (snapshot.waiting, snapshot.active, snapshot.total_terminal) == (3, 2, 7)
    assert snapshot.oldest_enqueued_ms == 1000


def test_it_never_moves_counters_backwards_on_restore(gate: Gate, queue: QueueRef) -> None:
    for i in range(3):
        admit(gate, queue, f"e{i}")
    gate.restore(queue, RestoreState(2, 1, 1, 1, 0, 0, [], []), lease_ms=LEASE_MS)
    assert gate.redis.hget(queue.meta, "seq") == "3"
    assert gate.redis.hget(queue.meta, "grant_seq") == "2"


def test_it_grants_everything_at_once_when_unlimited(gate: Gate, queue: QueueRef) -> None:
    outcomes = [admit(gate, queue, f"e{i}", limit=None) for i in range(50)]
    assert {o.outcome for o in outcomes} == {"granted"}
    assert gate.redis.zcard(queue.active) == 50


def test_it_admits_a_batch_in_list_order_granting_only_while_nobody_waits(
    gate: Gate, queue: QueueRef
) -> None:
    batch = admit_batch(gate, queue, [f"b{i}" for i in range(5)], limit=2)
    assert batch.outcome == "admitted"
    assert [(a.execution_id, a.outcome) for a in batch.admissions] == [
        ("b0", "granted"),
        ("b1", "granted"),
        ("b2", "queued"),
        ("b3", "queued"),
        ("b4", "queued"),
    ]
    assert [a.seq for a in batch.admissions] == [1, 2, 3, 4, 5]
    assert [a.position for a in batch.admissions[2:]] == [1, 2, 3]
    # A later batch queues behind, even with a slot free: someone waits.
    gate.release(queue, "b0", limit=3, lease_ms=LEASE_MS, terminal_status="completed")
    later = admit_batch(gate, queue, ["c0", "c1"], limit=3)
    assert [a.outcome for a in later.admissions] == ["queued", "queued"]
    assert gate.waiting_ids(queue) == ["b4", "c0", "c1"]
    assert gate.redis.hget(queue.meta, "total_enqueued") == "7"


def test_it_rejects_a_whole_batch_whose_waiters_do_not_fit(gate: Gate, queue: QueueRef) -> None:
    admit_batch(gate, queue, ["a0", "a1", "a2"], limit=1, max_waiting=4)
    before = {key: gate.redis.dump(key) for key in queue.all_keys() if key != queue.meta}
    meta = gate.redis.hgetall(queue.meta)
    rejected = admit_batch(gate, queue, ["x0", "x1", "x2"], limit=1, max_waiting=4)
    assert (rejected.outcome, rejected.waiting, rejected.admissions) == ("full", 2, [])
    assert {key: gate.redis.dump(key) for key in queue.all_keys() if key != queue.meta} == before
    # The whole batch is refused, and counted so.
    assert gate.redis.hgetall(queue.meta) == {**meta, "rejected:queue_full": "3"}
    # Exactly filling the queue is allowed.
    assert admit_batch(gate, queue, ["y0", "y1"], limit=1, max_waiting=4).outcome == "admitted"


def test_it_counts_granted_slots_of_a_batch_against_the_queue_length(gate: Gate, queue: QueueRef) -> None:
    # 2 free slots + 1 place in the queue: 3 fit, 4 do not.
    assert admit_batch(gate, queue, ["g0", "g1", "g2", "g3"], limit=2, max_waiting=1).outcome == "full"
    assert admit_batch(gate, queue, ["g0", "g1", "g2"], limit=2, max_waiting=1).outcome == "admitted"


def test_it_marks_ids_already_admitted_or_repeated_as_duplicates(gate: Gate, queue: QueueRef) -> None:
    admit_batch(gate, queue, ["d0"], limit=1)
    batch = admit_batch(gate, queue, ["d0", "d1", "d1"], limit=1)
    assert [a.outcome for a in batch.admissions] == ["duplicate", "queued", "duplicate"]
    assert gate.redis.hget(queue.meta, "seq") == "2"
    assert gate.redis.hget(queue.meta, "total_enqueued") == "2"


def test_it_renews_leases_of_several_queues_in_one_call(gate: Gate, queue: QueueRef) -> None:
    other = QueueRef(4343)
    gate.restore(other, RestoreState(None, 0, 0, 0, 0, 0, [], []), lease_ms=LEASE_MS)
    admit_batch(gate, queue, ["r0"], limit=None)
    admit_batch(gate, other, ["r1"], limit=None)
    before = {q: gate.redis.zscore(q.active, i) for q, i in ((queue, "r0"), (other, "r1"))}
    renewed = gate.renew_many({queue: ["r0", "gone"], other: ["r1"]}, lease_ms=LEASE_MS * 2)
    assert renewed == 2
    assert gate.redis.zscore(queue.active, "r0") > before[queue]
    assert gate.redis.zscore(other.active, "r1") > before[other]
    assert gate.redis.zscore(queue.active, "gone") is None


def test_it_keeps_one_enqueue_time_per_waiting_execution_under_its_score(gate: Gate, queue: QueueRef) -> None:
    admit_batch(gate, queue, ["h0", "h1", "h2", "h3"], limit=1)
    assert sorted(seq_of(int(score)) for score in gate.redis.hkeys(queue.enqueued)) == [2, 3, 4]
    head_since = int(gate.redis.hget(queue.enqueued, str(order_score(DEFAULT_PRIORITY, 2))))
    assert gate.snapshots([queue])[0].oldest_enqueued_ms == head_since
    assert gate.waiting_entry(queue, "h1") == (2, head_since)

    # A grant takes the head's time away; the new head's is the oldest.
    gate.release(queue, "h0", limit=1, lease_ms=LEASE_MS, terminal_status="completed")
    assert sorted(seq_of(int(score)) for score in gate.redis.hkeys(queue.enqueued)) == [3, 4]
    assert gate.snapshots([queue])[0].oldest_enqueued_ms == int(
        gate.redis.hget(queue.enqueued, str(order_score(DEFAULT_PRIORITY, 3)))
    )

    # A grant put back returns under its own seq, at the head (limit 0, so
    # that the same step does not grant it again at once).
    gate.release(queue, "h1", limit=0, lease_ms=LEASE_MS, requeue_score=order_score(DEFAULT_PRIORITY, 2))
    assert gate.waiting_ids(queue) == ["h1", "h2", "h3"]
    assert sorted(seq_of(int(score)) for score in gate.redis.hkeys(queue.enqueued)) == [2, 3, 4]
    assert gate.waiting_entry(queue, "h1") == (
        2,
        int(gate.redis.hget(queue.enqueued, str(order_score(DEFAULT_PRIORITY, 2)))),
    )


def test_a_release_that_keeps_the_limit_grants_by_the_stored_one(gate: Gate, queue: QueueRef) -> None:
    for i in range(5):
        admit(gate, queue, f"k{i}", limit=3)
    result = gate.release(queue, "k0", limit=KEEP_LIMIT, lease_ms=LEASE_MS, terminal_status="completed")
    assert result.released
    assert [grant.execution_id for grant in result.grants] == ["k3"]
    assert gate.redis.hget(queue.meta, "limit") == "3"
    # A lowered limit, stored by a refill, holds for the next release.
    gate.release(queue, None, limit=1, lease_ms=LEASE_MS)
    assert (
        gate.release(queue, "k1", limit=KEEP_LIMIT, lease_ms=LEASE_MS, terminal_status="completed").grants
        == []
    )


def test_the_first_admission_stores_a_config_token_and_a_refill_replaces_it(
    gate: Gate, queue: QueueRef
) -> None:
    first = gate.admit(queue, ["c0"], limit=1, max_waiting=10, lease_ms=LEASE_MS, config="t1")
    again = gate.admit(queue, ["c1"], limit=1, max_waiting=10, lease_ms=LEASE_MS, config="t2")
    assert (first.config, again.config) == ("t1", "t1")

    refill = gate.release(queue, None, limit=1, lease_ms=LEASE_MS, config="t3")
    ended = gate.release(queue, "c0", limit=KEEP_LIMIT, lease_ms=LEASE_MS, terminal_status="completed")
    assert (refill.config, ended.config) == ("t3", "t3")
    assert [grant.execution_id for grant in ended.grants] == ["c1"]


def test_a_queue_without_a_token_gets_a_fresh_one_at_admission(gate: Gate, queue: QueueRef) -> None:
    other = QueueRef(4343)
    gate.restore(other, RestoreState(None, 0, 0, 0, 0, 0, [], []), lease_ms=LEASE_MS)
    tokens = [gate.admit(q, ["x"], limit=1, max_waiting=1, lease_ms=LEASE_MS).config for q in (queue, other)]
    assert tokens[0] != tokens[1]
    assert all(
        len(token) == 16 and gate.redis.hget(q.meta, "config") == token
        for q, token in zip((queue, other), tokens, strict=True)
    )


def test_every_end_is_counted_by_status_and_a_rebuild_takes_the_counts_of_the_database(
    gate: Gate, queue: QueueRef
) -> None:
    for i in range(5):
        admit(gate, queue, f"s{i}", limit=2)
    gate.release(queue, "s0", limit=2, lease_ms=LEASE_MS, terminal_status="completed")
    gate.release(queue, "s1", limit=2, lease_ms=LEASE_MS, terminal_status="failed")
    gate.release(queue, "s1", limit=2, lease_ms=LEASE_MS, terminal_status="failed")  # a duplicate
    gate.dequeue(queue, "s4", terminal_status="cancelled")
    assert gate.snapshots([queue])[0].terminal_by_status == {"completed": 1, "failed": 1, "cancelled": 1}

    gate.redis.delete(queue.meta)
    ended = {"completed": 4, "failed": 1, "cancelled": 0, "timeout": 0, "abandoned": 2}
    gate.restore(queue, RestoreState(2, 9, 9, 9, 7, 4, [], [], terminal_by_status=ended), lease_ms=LEASE_MS)
    assert gate.snapshots([queue])[0].terminal_by_status == ended


def test_its_priority_constants_are_the_models() -> None:
    from executions import models

    assert (DEFAULT_PRIORITY, MAX_PRIORITY) == (models.DEFAULT_PRIORITY, models.MAX_PRIORITY)


def test_it_queues_a_higher_priority_ahead_and_equal_ones_in_order(gate: Gate, queue: QueueRef) -> None:
    batch = gate.admit(
        queue,
        ["p0", "p1", "p2", "p3", "p4"],
        limit=1,
        max_waiting=100,
        lease_ms=LEASE_MS,
        priorities=[5, 1, 9, 1, 9],
    )

    assert [a.outcome for a in batch.admissions] == ["granted", "queued", "queued", "queued", "queued"]
    assert gate.waiting_ids(queue) == ["p2", "p4", "p1", "p3"]
    assert [a.position for a in batch.admissions[1:]] == [1, 1, 3, 2]
    assert gate.waiting_entry(queue, "p3")[0] == 4  # type: ignore[index]


def test_it_cancels_rather_than_queues_at_the_limit_when_told(gate: Gate, queue: QueueRef) -> None:
    batch = gate.admit(
        queue, ["c0", "c1", "c2"], limit=1, max_waiting=1, lease_ms=LEASE_MS, cancel_at_limit=True
    )

    assert [(a.outcome, a.seq) for a in batch.admissions] == [
        ("granted", 1),
        ("cancelled", 2),
        ("cancelled", 3),
    ]
    assert gate.waiting_ids(queue) == []
    meta = gate.redis.hgetall(queue.meta)
    assert (meta["total_enqueued"], meta["terminal:cancelled"], meta["rejected:at_limit"]) == ("3", "2", "2")


def test_a_rate_limit_holds_grants_past_it_and_asks_for_one_wake_up(gate: Gate, queue: QueueRef) -> None:
    rates = ((2, 1000),)
    before = gate.now_ms()
    first = gate.admit(queue, ["r0", "r1", "r2"], limit=None, max_waiting=100, lease_ms=LEASE_MS, rates=rates)
    second = gate.admit(queue, ["r3"], limit=None, max_waiting=100, lease_ms=LEASE_MS, rates=rates)
    freed = gate.release(queue, "r0", limit=KEEP_LIMIT, lease_ms=LEASE_MS, terminal_status="completed")

    assert [a.outcome for a in first.admissions] == ["granted", "granted", "queued"]
    assert before + 1000 <= first.wake_ms <= gate.now_ms() + 1000
    # The same wake-up covers the later ones: no second task.
    assert (second.admissions[0].outcome, second.wake_ms) == ("queued", 0)
    # A freed slot is not a free start: the window still holds two.
    assert (freed.grants, freed.wake_ms) == ([], 0)
    assert gate.waiting_ids(queue) == ["r2", "r3"]


def test_only_the_wake_up_clears_its_time_and_never_a_later_one(gate: Gate, queue: QueueRef) -> None:
    rates = ((1, 200),)
    first = gate.admit(queue, ["k0", "k1", "k2"], limit=None, max_waiting=100, lease_ms=LEASE_MS, rates=rates)
    kept_before_its_time = gate.woken(queue.action_id)
    time.sleep(0.25)
    # The window has room again: this release grants the head and asks for
    # the next wake-up; the past-due one is replaced, not dropped.
    refill = gate.release(queue, None, limit=KEEP_LIMIT, lease_ms=LEASE_MS)
    kept_while_a_later_one_is_pending = gate.woken(queue.action_id)
    time.sleep(0.25)
    done_with = gate.woken(queue.action_id)

    assert first.wake_ms > 0
    assert [grant.execution_id for grant in refill.grants] == ["k1"]
    assert refill.wake_ms > first.wake_ms
    assert (kept_before_its_time, kept_while_a_later_one_is_pending, done_with) == (False, False, True)
    assert gate.redis.hget(queue.meta, "wake_at") is None


def test_once_the_window_moves_on_the_head_goes_through_in_order(gate: Gate, queue: QueueRef) -> None:
    rates = ((2, 200),)
    gate.admit(queue, ["w0", "w1", "w2", "w3"], limit=None, max_waiting=100, lease_ms=LEASE_MS, rates=rates)
    early = gate.release(queue, None, limit=KEEP_LIMIT, lease_ms=LEASE_MS)
    time.sleep(0.25)
    late = gate.release(queue, None, limit=KEEP_LIMIT, lease_ms=LEASE_MS)

    assert early.grants == []
    assert [grant.execution_id for grant in late.grants] == ["w2", "w3"]
    assert gate.redis.hget(QueueRef(queue.action_id).meta, "rates") == "2:200"
