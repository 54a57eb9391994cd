"""A full queue rejects the request cleanly: a clear error, nothing left behind."""

from __future__ import annotations

from typing import Any

import pytest

from executions.exceptions import QueueFull
from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from queues.keys import QueueRef

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


def test_it_rejects_a_request_when_the_queue_is_full_and_leaves_nothing_behind(
    make_action: Any, redis_db: Any
) -> None:
    action = make_action("bounded", concurrency_limit=1, max_queue_length=3)
    accepted = [request_execution(action.ref, {}) for _ in range(4)]
    assert [e.status for e in accepted] == [S.SCHEDULED, S.QUEUED, S.QUEUED, S.QUEUED]

    with pytest.raises(QueueFull) as caught:
        request_execution(action.ref, {})

    assert str(caught.value) == (
        "Queue for action 'test.bounded' is full: 3 executions are waiting and its max_queue_length is 3."
    )
    assert caught.value.action_ref == "test.bounded"
    assert caught.value.limit == 3
    assert Execution.objects.count() == 4
    queue = QueueRef(action.pk)
    waiting = redis_db.zrange(queue.waiting, 0, -1)
    assert waiting == [str(e.pk) for e in accepted[1:]]
    assert redis_db.zrange(queue.active, 0, -1) == [str(accepted[0].pk)]
    # One enqueue time per waiting execution, under its order score.
    scores = [str(int(score)) for _, score in redis_db.zrange(queue.waiting, 0, -1, withscores=True)]
    assert sorted(redis_db.hkeys(queue.enqueued)) == sorted(scores)
    meta = redis_db.hgetall(queue.meta)
    # The rejected request took no sequence number and counts as nothing enqueued.
    assert meta["seq"] == "4"
    assert meta["total_enqueued"] == "4"


def test_it_accepts_again_once_the_queue_has_room(make_action: Any, redis_db: Any) -> None:
    action = make_action("bounded_again", concurrency_limit=1, max_queue_length=1)
    request_execution(action.ref, {})
    waiting = request_execution(action.ref, {})
    with pytest.raises(QueueFull):
        request_execution(action.ref, {})

    from executions.services import cancel_execution

    cancel_execution(waiting.pk)
    again = request_execution(action.ref, {})
    assert again.status == S.QUEUED
    assert again.queue_seq == 3
