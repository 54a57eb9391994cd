"""A limit changed at runtime applies at once."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from queues.keys import QueueRef
from queues.policy import resolve_limit

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


def _statuses(ids: list[Any]) -> list[str]:
    by_id = dict(Execution.objects.filter(pk__in=ids).values_list("pk", "status"))
    return [by_id[pk] for pk in ids]


def test_it_admits_the_waiting_heads_at_once_in_order_when_a_limit_is_raised(
    make_action: Any, redis_db: Any
) -> None:
    action = make_action("raise_me", concurrency_limit=1)
    ids = [request_execution(action.ref, {}).pk for _ in range(6)]
    assert _statuses(ids) == [S.SCHEDULED] + [S.QUEUED] * 5

    action.concurrency_limit = 4
    action.save()

    assert _statuses(ids) == [S.SCHEDULED] * 4 + [S.QUEUED] * 2
    granted = Execution.objects.filter(pk__in=ids[:4]).order_by("grant_seq")
    assert [e.pk for e in granted] == ids[:4]
    assert [e.grant_seq for e in granted] == [1, 2, 3, 4]
    assert redis_db.hget(QueueRef(action.pk).meta, "limit") == "4"
    assert redis_db.zrange(QueueRef(action.pk).waiting, 0, -1) == [str(pk) for pk in ids[4:]]


def test_it_applies_a_pack_limit_change_to_actions_without_their_own(make_action: Any, redis_db: Any) -> None:
    action = make_action("pack_governed", pack="limited")
    action.pack.concurrency_limit = 1
    action.pack.save()
    ids = [request_execution(action.ref, {}).pk for _ in range(3)]
    assert _statuses(ids) == [S.SCHEDULED, S.QUEUED, S.QUEUED]

    action.pack.concurrency_limit = 3
    action.pack.save()

    assert _statuses(ids) == [S.SCHEDULED] * 3


def test_it_resolves_the_limit_from_action_then_pack_then_the_global_default(make_action: Any) -> None:
    action = make_action("precedence", pack="prec")
    with override_settings(ATTUNE_DEFAULT_CONCURRENCY=None):
        assert resolve_limit(action) is None
    with override_settings(ATTUNE_DEFAULT_CONCURRENCY=7):
        assert resolve_limit(action) == 7
        action.pack.concurrency_limit = 3
        assert resolve_limit(action) == 3
        action.concurrency_limit = 2
        assert resolve_limit(action) == 2


def test_it_never_queues_when_no_limit_applies(make_action: Any, redis_db: Any) -> None:
    action = make_action("unlimited")
    with override_settings(ATTUNE_DEFAULT_CONCURRENCY=None):
        ids = [request_execution(action.ref, {}).pk for _ in range(20)]
    assert _statuses(ids) == [S.SCHEDULED] * 20
    assert redis_db.hget(QueueRef(action.pk).meta, "limit") == "-1"
