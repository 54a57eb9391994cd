"""Each process caches action definitions under the gate's config token,
and reads one again as soon as the action (or its pack) is saved."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions.models import Execution, ExecutionStatus, Pack
from executions.services import request_execution
from queues.action_cache import ActionCache
from queues.keys import QueueRef
from workers import execution as worker_execution

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


def _token(redis_db: Any, action: Any) -> str:
    return str(redis_db.hget(QueueRef(action.pk).meta, "config"))


def test_a_cached_definition_is_read_once_per_token(make_action: Any) -> None:
    action = make_action("cached")
    cache = ActionCache()
    with CaptureQueriesContext(connection) as queries:
        first = cache.get(action.pk, "t1")
        assert cache.get(action.pk, "t1") is first
    assert len(queries) == 1

    action.entrypoint = "tests.actions.sleep_indexed"
    action.save()
    assert cache.get(action.pk, "t1").entrypoint == "workers.core_actions.noop"
    assert cache.get(action.pk, "t2").entrypoint == "tests.actions.sleep_indexed"
    # Without a token the database is read every time and nothing is kept.
    with CaptureQueriesContext(connection) as queries:
        cache.get(action.pk, None)
        cache.get(action.pk, None)
    assert len(queries) == 2


def test_an_entry_is_read_again_once_it_is_older_than_its_bound(make_action: Any) -> None:
    action = make_action("aged")
    cache = ActionCache(max_age_seconds=0.05)
    first = cache.get(action.pk, "t1")
    assert cache.get(action.pk, "t1") is first
    time.sleep(0.06)
    with CaptureQueriesContext(connection) as queries:
        assert cache.get(action.pk, "t1") is not first
    assert len(queries) == 1


def test_saving_an_action_or_its_pack_gives_its_queue_a_new_token(make_action: Any, redis_db: Any) -> None:
    action = make_action("tokens", pack="tokens_pack", concurrency_limit=1)
    request_execution(action.ref, {})
    tokens = [_token(redis_db, action)]

    action.timeout_seconds = 30
    action.save()
    tokens.append(_token(redis_db, action))
    pack = Pack.objects.get(ref="tokens_pack")
    pack.label = "changed"
    pack.save()
    tokens.append(_token(redis_db, action))

    assert len(set(tokens)) == 3 and all(tokens)


def test_a_run_granted_after_a_change_uses_the_new_definition(make_action: Any, redis_db: Any) -> None:
    action = make_action("redefined", concurrency_limit=1)
    first, second = (request_execution(action.ref, {}) for _ in range(2))
    outcome = worker_execution.run(
        str(first.pk), task_id=first.celery_task_id, hostname="h", config=_token(redis_db, action)
    )
    assert outcome["result"] is None  # core noop

    # The action now echoes its parameters; the change reaches the worker
    # through the token the hand-off carries, not through a restart.
    action.entrypoint = "workers.core_actions.echo"
    action.save()
    worker_execution.record_success(outcome)
    second.refresh_from_db()
    assert second.status == S.SCHEDULED
    outcome = worker_execution.run(
        str(second.pk), task_id=second.celery_task_id, hostname="h", config=_token(redis_db, action)
    )
    assert outcome.get("skipped") is None
    assert Execution.objects.get(pk=second.pk).status == S.RUNNING
    assert outcome["result"] == {"message": ""}
