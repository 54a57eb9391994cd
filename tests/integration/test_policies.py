"""Policies: validation, precedence (action > pack > global, by priority
within a scope), live changes, cancel at the limit, and priorities within
a queue; on the real gate, with runs ended through the completion path."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from executions.models import AuditEntry, Execution, ExecutionStatus, Policy
from executions.services import request_execution
from queues import dispatch
from queues.keys import QueueRef
from queues.policy import resolve
from queues.reconcile import reconcile_action

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus
URL = "/api/v1/policies"


def _statuses(ids: list[Any]) -> list[str]:
    by_id = dict(Execution.objects.filter(pk__in=ids).values_list("pk", "status"))
    return [by_id[pk] for pk in ids]


def _grant_order(ids: list[Any]) -> list[Any]:
    granted = Execution.objects.filter(pk__in=ids, grant_seq__isnull=False).order_by("grant_seq")
    return list(granted.values_list("pk", flat=True))


def _finish(execution_id: Any) -> None:
    """What a worker does with a granted execution: start it, then end it."""
    execution = Execution.objects.get(pk=execution_id)
    assert Execution.objects.transition(
        execution.pk, S.RUNNING, expected=[S.SCHEDULED], started_at=timezone.now()
    )
    dispatch.finish(str(execution.pk), S.COMPLETED, task_id=execution.celery_task_id)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"name": "p1", "scope": "global", "method": "cancel", "max_queue_length": 5},
            "method",
            "method 'cancel' acts at the concurrency limit: set concurrency_limit.",
        ),
        (
            {"name": "p2", "scope": "global"},
            "concurrency_limit",
            "A policy must set something: concurrency_limit, a rate limit, max_queue_length or "
            "queue_timeout_seconds.",
        ),
        (
            {"name": "p2b", "scope": "global", "rate_limit_executions": 10},
            "rate_limit_executions",
            "A rate limit is rate_limit_executions per rate_limit_window_seconds: set both or neither.",
        ),
        (
            {
                "name": "p3",
                "scope": "action",
                "action": "test.hosts",
                "concurrency_limit": 1,
                "parameters": ["hots"],
            },
            "parameters",
            "Not a parameter of action 'test.hosts': hots (its schema has: host, version).",
        ),
        (
            {"name": "p4", "scope": "pack", "concurrency_limit": 1},
            "pack",
            "A pack policy names its pack.",
        ),
        (
            {"name": "p5", "scope": "global", "concurrency_limit": 10_000_000},
            "concurrency_limit",
            "Ensure this value is less than or equal to 1000000.",
        ),
        (
            {"name": "Bad Name", "scope": "global", "concurrency_limit": 1},
            "name",
            "A policy name may hold only lowercase letters, digits, '_', '.' and '-'.",
        ),
    ],
)
def test_it_refuses_a_policy_that_cannot_work_naming_the_field(
    alice: APIClient, make_action: Any, redis_db: Any, body: dict[str, Any], field: str, message: str
) -> None:
    make_action("hosts", parameters_schema={"type": "object", "properties": {"host": {}, "version": {}}})

    response = alice.post(URL, body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["detail"][field] == [message]
    assert not Policy.objects.exists()
    assert not AuditEntry.objects.filter(kind__startswith="policy.").exists()


def test_only_staff_write_policies_and_anyone_reads_them(
    alice: APIClient, bob: APIClient, redis_db: Any
) -> None:
    created = alice.post(URL, {"name": "calm", "scope": "global", "concurrency_limit": 3}, format="json")
    refused = bob.post(URL, {"name": "mine", "scope": "global", "concurrency_limit": 1}, format="json")
    listed = bob.get(URL)
    one = bob.get(f"{URL}/calm")
    missing = bob.get(f"{URL}/nope")

    assert created.status_code == 201
    assert refused.status_code == 403
    assert [row["name"] for row in listed.json()["results"]] == ["calm"]
    assert one.json()["concurrency_limit"] == 3
    assert missing.status_code == 404
    assert missing.json() == {"error": "Policy 'nope' not found"}
    (entry,) = AuditEntry.objects.filter(kind="policy.created")
    assert (entry.target, entry.actor_name, entry.after["concurrency_limit"]) == ("calm", "alice", 3)


def test_action_beats_pack_beats_global_and_disabling_falls_back_live(
    alice: APIClient, make_action: Any, redis_db: Any
) -> None:
    action = make_action("layered", pack="layers")
    alice.post(URL, {"name": "everyone", "scope": "global", "concurrency_limit": 5}, format="json")
    alice.post(
        URL, {"name": "the-pack", "scope": "pack", "pack": "layers", "concurrency_limit": 3}, format="json"
    )
    alice.post(
        URL,
        {"name": "one-low", "scope": "action", "action": action.ref, "concurrency_limit": 2},
        format="json",
    )
    alice.post(
        URL,
        {"name": "one-high", "scope": "action", "action": action.ref, "concurrency_limit": 1, "priority": 10},
        format="json",
    )

    def effective() -> dict[str, Any]:
        response = alice.get(f"/api/v1/actions/{action.ref}/policies")
        assert response.status_code == 200
        return dict(response.json())

    ids = [request_execution(action.ref).pk for _ in range(6)]
    first = effective()
    assert (first["effective"]["limit"], first["effective"]["limit_source"]) == (1, "policy 'one-high'")
    assert [row["name"] for row in first["policies"]] == ["one-high", "one-low", "the-pack", "everyone"]
    assert _statuses(ids).count(S.SCHEDULED) == 1

    steps = [
        ("one-high", 2, "policy 'one-low'"),
        ("one-low", 3, "policy 'the-pack'"),
        ("the-pack", 5, "policy 'everyone'"),
    ]
    for name, limit, source in steps:
        assert alice.patch(f"{URL}/{name}", {"enabled": False}, format="json").status_code == 200
        now = effective()["effective"]
        assert (now["limit"], now["limit_source"]) == (limit, source)
        # Each step raised the limit: the waiting heads were granted at once, in order.
        assert _statuses(ids) == [S.SCHEDULED] * limit + [S.QUEUED] * (6 - limit)
    assert _grant_order(ids) == ids[:5]

    assert alice.delete(f"{URL}/everyone").status_code == 204
    with override_settings(ATTUNE_DEFAULT_CONCURRENCY=None):
        assert resolve(action).limit is None


def test_the_actions_own_field_beats_pack_and_global_policies(make_action: Any, redis_db: Any) -> None:
    action = make_action("own_field", pack="fielded", concurrency_limit=4)
    Policy.objects.create(name="pack-wide", scope="pack", pack=action.pack, concurrency_limit=1)

    assert (resolve(action).limit, resolve(action).limit_source) == (4, "action 'fielded.own_field'")
    Policy.objects.create(name="own", scope="action", action=action, concurrency_limit=2)
    assert (resolve(action).limit, resolve(action).limit_source) == (2, "policy 'own'")


def test_lowering_a_limit_lets_runs_finish_and_grants_nothing_until_below(
    make_action: Any, redis_db: Any
) -> None:
    action = make_action("lowered")
    policy = Policy.objects.create(name="wide", scope="action", action=action, concurrency_limit=3)
    ids = [request_execution(action.ref).pk for _ in range(5)]
    assert _statuses(ids) == [S.SCHEDULED] * 3 + [S.QUEUED] * 2

    policy.concurrency_limit = 1
    policy.save()
    _finish(ids[0])
    _finish(ids[1])
    still_two_waiting = _statuses(ids)
    _finish(ids[2])

    assert still_two_waiting == [S.COMPLETED, S.COMPLETED, S.SCHEDULED, S.QUEUED, S.QUEUED]
    assert _statuses(ids) == [S.COMPLETED] * 3 + [S.SCHEDULED, S.QUEUED]


def test_method_cancel_ends_a_request_at_the_limit_at_once_naming_the_policy(
    bob: APIClient, make_action: Any, redis_db: Any
) -> None:
    action = make_action("one_at_a_time")
    Policy.objects.create(
        name="no-pileup", scope="action", action=action, concurrency_limit=1, method="cancel"
    )

    first = bob.post("/api/v1/executions", {"action": action.ref}, format="json").json()
    second = bob.post("/api/v1/executions", {"action": action.ref}, format="json").json()
    batch = bob.post("/api/v1/executions", [{"action": action.ref}] * 2, format="json").json()
    _finish(first["id"])
    after_the_slot_frees = bob.post("/api/v1/executions", {"action": action.ref}, format="json").json()

    assert first["status"] == S.SCHEDULED
    assert second["status"] == S.CANCELLED
    assert second["error"] == (
        f"Cancelled: action '{action.ref}' is at its concurrency limit of 1 and policy 'no-pileup' "
        "cancels rather than queues (method: cancel)."
    )
    assert second["queue_position"] is None
    assert [row["status"] for row in batch] == [S.CANCELLED, S.CANCELLED]
    assert after_the_slot_frees["status"] == S.SCHEDULED
    queue = QueueRef(action.pk)
    assert redis_db.zcard(queue.waiting) == 0
    assert redis_db.hget(queue.meta, "terminal:cancelled") == "3"
    assert redis_db.hget(queue.meta, "rejected:at_limit") == "3"


def test_a_higher_priority_starts_first_and_equal_ones_keep_their_order(
    bob: APIClient, make_action: Any, redis_db: Any
) -> None:
    action = make_action("prioritised", concurrency_limit=1)
    blocker = request_execution(action.ref).pk
    burst = [
        (
            priority,
            bob.post("/api/v1/executions", {"action": action.ref, "priority": priority}, format="json"),
        )
        for priority in (5, 1, 9, 5, 9, 0, 5)
    ]
    ids = [response.json()["id"] for _, response in burst]
    positions = [bob.get(f"/api/v1/executions/{pk}").json()["queue_position"] for pk in ids]

    started = []
    running = blocker
    for _ in ids:
        _finish(running)
        running = Execution.objects.get(status=S.SCHEDULED, action=action).pk
        started.append(str(running))

    expected = [
        pk for _, pk in sorted(zip([p for p, _ in burst], ids, strict=True), key=lambda item: -item[0])
    ]
    assert started == expected  # sorted() is stable: FIFO within a priority
    assert positions == [expected.index(pk) + 1 for pk in ids]
    assert [row.json()["priority"] for _, row in burst] == [5, 1, 9, 5, 9, 0, 5]


def test_a_priority_outside_0_to_9_is_refused(bob: APIClient, make_action: Any, redis_db: Any) -> None:
    action = make_action("bounded_priority")

    response = bob.post("/api/v1/executions", {"action": action.ref, "priority": 10}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "priority: Ensure this value is less than or equal to 9."
    assert not Execution.objects.exists()


def test_reconcile_after_losing_redis_keeps_priority_order(make_action: Any, redis_db: Any) -> None:
    action = make_action("rebuilt", concurrency_limit=1)
    blocker = request_execution(action.ref).pk
    low = request_execution(action.ref, priority=2).pk
    high = request_execution(action.ref, priority=8).pk
    mid = request_execution(action.ref, priority=5).pk
    redis_db.flushdb()

    reconcile_action(action)

    assert redis_db.zrange(QueueRef(action.pk).waiting, 0, -1) == [str(high), str(mid), str(low)]
    _finish(blocker)
    assert Execution.objects.get(pk=high).status == S.SCHEDULED


@pytest.fixture
def per_host(make_action: Any, redis_db: Any) -> Any:
    action = make_action(
        "deploy",
        parameters_schema={"type": "object", "properties": {"host": {}, "index": {"type": "integer"}}},
    )
    Policy.objects.create(
        name="one-per-host", scope="action", action=action, concurrency_limit=1, parameters=["host"]
    )
    return action


def test_each_parameter_value_is_a_queue_with_its_own_limit_and_order(per_host: Any) -> None:
    requests = [
        (host, request_execution(per_host.ref, {"host": host, "index": i}))
        for i in range(3)
        for host in "abc"
    ]
    by_host = {host: [e.pk for h, e in requests if h == host] for host in "abc"}

    assert {e.queue_group for _, e in requests} == {'[["a"]]', '[["b"]]', '[["c"]]'}
    for ids in by_host.values():
        assert _statuses(ids) == [S.SCHEDULED, S.QUEUED, S.QUEUED]
        assert [Execution.objects.get(pk=pk).queue_seq for pk in ids] == [1, 2, 3]
    _finish(by_host["a"][0])
    assert _statuses(by_host["a"]) == [S.COMPLETED, S.SCHEDULED, S.QUEUED]
    assert _statuses(by_host["b"]) == [S.SCHEDULED, S.QUEUED, S.QUEUED]


def test_a_missing_value_is_a_value_of_its_own(per_host: Any) -> None:
    missing = request_execution(per_host.ref, {})
    missing_too = request_execution(per_host.ref, {"index": 1})
    null = request_execution(per_host.ref, {"host": None})

    assert (missing.queue_group, null.queue_group) == ("[[]]", "[[null]]")
    assert (missing.status, missing_too.status, null.status) == (S.SCHEDULED, S.QUEUED, S.SCHEDULED)


def test_a_batch_over_several_queues_is_all_or_nothing(bob: APIClient, per_host: Any) -> None:
    Policy.objects.filter(name="one-per-host").update(max_queue_length=1)
    bob.post("/api/v1/executions", [{"action": per_host.ref, "parameters": {"host": "a"}}] * 2, format="json")

    response = bob.post(
        "/api/v1/executions",
        [{"action": per_host.ref, "parameters": {"host": host}} for host in ("b", "c", "a")],
        format="json",
    )

    assert response.status_code == 429
    assert response.json()["error"].startswith(
        f"""Queue for action '{per_host.ref}' (group [["a"]]) is full"""
    )
    assert Execution.objects.count() == 2
    assert Execution.objects.filter(queue_group='[["b"]]').count() == 0


def test_reconcile_rebuilds_every_queue_of_an_action(per_host: Any, redis_db: Any) -> None:
    ids = {host: [request_execution(per_host.ref, {"host": host}).pk for _ in range(3)] for host in "ab"}
    redis_db.flushdb()

    reconcile_action(per_host)

    for host, group_ids in ids.items():
        queue = QueueRef(per_host.pk, f'[["{host}"]]')
        assert redis_db.zrange(queue.waiting, 0, -1) == [str(pk) for pk in group_ids[1:]]
        assert redis_db.zrange(queue.active, 0, -1) == [str(group_ids[0])]
    _finish(ids["b"][0])
    assert _statuses(ids["b"]) == [S.COMPLETED, S.SCHEDULED, S.QUEUED]


def test_switching_parameters_on_a_busy_action_lets_the_waiting_drain_where_they_are(
    make_action: Any, redis_db: Any
) -> None:
    action = make_action("switched", parameters_schema={"type": "object", "properties": {"host": {}}})
    policy = Policy.objects.create(name="switch", scope="action", action=action, concurrency_limit=1)
    before = [request_execution(action.ref, {"host": "a"}).pk for _ in range(3)]

    policy.parameters = ["host"]
    policy.save()
    after = request_execution(action.ref, {"host": "a"})
    _finish(before[0])

    assert {Execution.objects.get(pk=pk).queue_group for pk in before} == {"default"}
    assert after.queue_group == '[["a"]]'
    assert after.status == S.SCHEDULED
    assert _statuses(before) == [S.COMPLETED, S.SCHEDULED, S.QUEUED]


def test_every_rate_limit_covering_an_action_applies(
    alice: APIClient, make_action: Any, redis_db: Any
) -> None:
    action = make_action("rated", pack="rates")
    Policy.objects.create(
        name="g-rate", scope="global", rate_limit_executions=100, rate_limit_window_seconds=60
    )
    Policy.objects.create(
        name="p-rate", scope="pack", pack=action.pack, rate_limit_executions=2, rate_limit_window_seconds=1
    )

    effective = alice.get(f"/api/v1/actions/{action.ref}/policies").json()["effective"]
    ids = [request_execution(action.ref).pk for _ in range(4)]

    assert effective["rate_limits"] == [
        {"executions": 2, "window_seconds": 1.0},
        {"executions": 100, "window_seconds": 60.0},
    ]
    assert effective["limit"] is None
    # Unlimited, but two a second: the rest wait at their place.
    assert _statuses(ids) == [S.SCHEDULED, S.SCHEDULED, S.QUEUED, S.QUEUED]
    assert redis_db.hget(QueueRef(action.pk).meta, "wake_at") is not None


def test_the_reaper_wakes_a_queue_whose_wake_up_was_lost(make_action: Any, redis_db: Any) -> None:
    from queues.reaper import reap_once

    action = make_action("lost_wake")
    Policy.objects.create(
        name="slow", scope="action", action=action, rate_limit_executions=1, rate_limit_window_seconds=1
    )
    ids = [request_execution(action.ref).pk for _ in range(2)]
    # No worker runs the wake-up task: it stays in the broker, as if lost.
    time.sleep(2.1)

    report = reap_once()

    assert report.woken == 1
    assert _statuses(ids) == [S.SCHEDULED, S.SCHEDULED]
    assert redis_db.hget(QueueRef(action.pk).meta, "wake_at") is None


def test_a_run_ending_in_one_queue_keeps_the_wake_up_another_queue_waits_for(
    per_host: Any, redis_db: Any
) -> None:
    """The rate window is the action's, the wake-up is one per action: a
    release in a queue that the window no longer holds back must not drop
    the wake-up that another, idle, queue still waits for. Had it, a wake-up
    task lost with its worker would leave that queue waiting for ever."""
    from queues.reaper import reap_once

    Policy.objects.create(
        name="one-a-second",
        scope="action",
        action=per_host,
        rate_limit_executions=1,
        rate_limit_window_seconds=1,
    )
    first_a = request_execution(per_host.ref, {"host": "a"}).pk
    held_b = request_execution(per_host.ref, {"host": "b"}).pk
    next_a = request_execution(per_host.ref, {"host": "a"}).pk
    assert _statuses([first_a, held_b, next_a]) == [S.SCHEDULED, S.QUEUED, S.QUEUED]
    # No worker runs the wake-up task: it stays in the broker, as if lost.
    time.sleep(1.1)

    # Queue "a" frees its slot once the window has room again: its next run
    # takes the window's one place, and queue "b" still waits for the wake-up.
    _finish(first_a)
    assert _statuses([held_b, next_a]) == [S.QUEUED, S.SCHEDULED]
    assert redis_db.hget(QueueRef(per_host.pk).meta, "wake_at") is not None
    time.sleep(2.1)

    report = reap_once()

    assert report.woken == 1
    assert _statuses([held_b]) == [S.SCHEDULED]
    assert redis_db.hget(QueueRef(per_host.pk).meta, "wake_at") is None
