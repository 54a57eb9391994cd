"""The queue_stats repository functions on a real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from queues.models import QueueStats, action_total

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_it_upserts_one_row_per_action(make_action: Any) -> None:
    action = make_action("one")

    QueueStats.objects.upsert(action, queue_length=3, active_count=1, max_concurrent=2, total_enqueued=4)
    QueueStats.objects.upsert(
        action.pk, queue_length=0, active_count=0, max_concurrent=None, total_enqueued=4
    )

    row = QueueStats.objects.get()
    assert (row.action_id, row.queue_length, row.active_count, row.max_concurrent) == (action.pk, 0, 0, None)


def test_it_finds_an_actions_rows_or_says_there_are_none(make_action: Any) -> None:
    with_row, without = make_action("with_row"), make_action("without")
    QueueStats.objects.upsert(with_row, queue_length=5)

    found = QueueStats.objects.for_action(with_row)

    assert [(row.group, row.queue_length, row.action.ref) for row in found] == [
        ("default", 5, "test.with_row")
    ]
    assert QueueStats.objects.for_action(without.pk) == []


def test_it_keeps_a_row_per_group_default_first_and_adds_them_up(make_action: Any) -> None:
    action = make_action("split")
    early, late = timezone.now() - timedelta(seconds=30), timezone.now()
    QueueStats.objects.upsert(
        action,
        '[["web-2"]]',
        queue_length=1,
        active_count=1,
        max_concurrent=1,
        oldest_enqueued_at=late,
        total_enqueued=3,
        total_terminal=1,
        last_updated=early,
    )
    QueueStats.objects.upsert(
        action,
        '[["web-1"]]',
        queue_length=4,
        active_count=1,
        max_concurrent=1,
        oldest_enqueued_at=early,
        total_enqueued=7,
        total_completed=2,
        total_terminal=2,
        last_updated=late,
    )
    QueueStats.objects.upsert(
        action, total_enqueued=1, total_completed=1, total_terminal=1, max_concurrent=1, last_updated=early
    )
    QueueStats.objects.upsert(
        action,
        '[["web-2"]]',
        queue_length=0,
        active_count=1,
        max_concurrent=1,
        total_enqueued=3,
        total_terminal=1,
        last_updated=late,
    )

    rows = QueueStats.objects.for_action(action)
    total = action_total(rows)

    assert [(row.group, row.queue_length) for row in rows] == [
        ("default", 0),
        ('[["web-1"]]', 4),
        ('[["web-2"]]', 0),
    ]
    assert total.as_dict() == {
        "queue_length": 4,
        "active_count": 2,
        "max_concurrent": 1,
        "oldest_enqueued_at": early,
        "total_enqueued": 11,
        "total_completed": 3,
        "total_terminal": 4,
    }
    assert total.last_updated == late
    assert [row.group for row in QueueStats.objects.list_all()] == ['[["web-1"]]', '[["web-2"]]', "default"]


def test_it_lists_all_deepest_first_and_active_only_the_busy(make_action: Any) -> None:
    for name, waiting, active in (("idle", 0, 0), ("running", 0, 2), ("deep", 9, 1), ("shallow", 1, 1)):
        QueueStats.objects.upsert(make_action(name), queue_length=waiting, active_count=active)

    everything = [row.action.ref for row in QueueStats.objects.list_all()]
    busy = [row.action.ref for row in QueueStats.objects.list_active()]

    assert everything == ["test.deep", "test.shallow", "test.running", "test.idle"]
    assert busy == ["test.deep", "test.shallow", "test.running"]


def test_it_batch_upserts_many_rows_in_one_statement(
    make_action: Any, django_assert_num_queries: Any
) -> None:
    actions = [make_action(f"a{i}") for i in range(5)]
    QueueStats.objects.upsert(actions[0], queue_length=99)
    now = timezone.now()
    rows = [
        QueueStats(action_id=a.pk, queue_length=i, total_enqueued=i, last_updated=now)
        for i, a in enumerate(actions)
    ]

    with django_assert_num_queries(1):
        sent = QueueStats.objects.batch_upsert(rows)

    assert sent == 5
    assert dict(QueueStats.objects.values_list("action_id", "queue_length")) == {
        a.pk: i for i, a in enumerate(actions)
    }
    assert QueueStats.objects.batch_upsert([]) == 0


def test_it_never_lets_an_older_snapshot_overwrite_a_newer_row(make_action: Any) -> None:
    action = make_action("raced")
    now = timezone.now()
    QueueStats.objects.upsert(action, queue_length=7, last_updated=now)
    older = QueueStats(action_id=action.pk, queue_length=1, last_updated=now - timedelta(seconds=1))
    same_time = QueueStats(action_id=action.pk, queue_length=7, max_concurrent=3, last_updated=now)

    QueueStats.objects.batch_upsert([older], only_newer=True)
    assert QueueStats.objects.get().queue_length == 7

    QueueStats.objects.batch_upsert([same_time], only_newer=True)
    assert QueueStats.objects.get().max_concurrent == 3

    # A rebuild from the database is not a snapshot: it always wins.
    QueueStats.objects.batch_upsert([older])
    assert QueueStats.objects.get().queue_length == 1


def test_it_deletes_one_actions_row(make_action: Any) -> None:
    kept, dropped = make_action("kept"), make_action("dropped")
    QueueStats.objects.upsert(kept)
    QueueStats.objects.upsert(dropped)

    assert QueueStats.objects.delete_for_action(dropped) is True
    assert QueueStats.objects.delete_for_action(dropped) is False
    assert list(QueueStats.objects.values_list("action_id", flat=True)) == [kept.pk]


def test_it_clears_only_rows_that_are_idle_and_old(make_action: Any) -> None:
    long_ago = timezone.now() - timedelta(hours=2)
    QueueStats.objects.upsert(make_action("old_idle"), last_updated=long_ago)
    QueueStats.objects.upsert(make_action("old_busy"), queue_length=3, last_updated=long_ago)
    QueueStats.objects.upsert(make_action("old_running"), active_count=1, last_updated=long_ago)
    QueueStats.objects.upsert(make_action("new_idle"))

    cleared = QueueStats.objects.clear_stale(3600)

    assert cleared == 1
    assert sorted(row.action.ref for row in QueueStats.objects.list_all()) == [
        "test.new_idle",
        "test.old_busy",
        "test.old_running",
    ]


def test_it_goes_with_its_action(make_action: Any) -> None:
    action = make_action("doomed")
    QueueStats.objects.upsert(action, total_enqueued=3)

    action.delete()

    assert not QueueStats.objects.exists()
