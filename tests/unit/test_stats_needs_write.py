"""When the flusher writes a row: only when the live queue says more than
the stored row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from queues.models import QueueStats
from queues.stats import needs_write

T = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def snapshot_row(last_updated: datetime, limit: int | None = 2) -> QueueStats:
    return QueueStats(action_id=1, max_concurrent=limit, last_updated=last_updated)


def test_it_writes_a_queue_that_has_no_row_yet() -> None:
    assert needs_write(snapshot_row(T), None)


def test_it_writes_a_queue_that_changed_since_its_row() -> None:
    assert needs_write(snapshot_row(T + timedelta(milliseconds=1)), (T, 2))


def test_it_skips_a_queue_that_did_not_change() -> None:
    assert not needs_write(snapshot_row(T), (T, 2))


def test_it_writes_a_limit_change_that_moved_no_counter() -> None:
    assert needs_write(snapshot_row(T, limit=5), (T, 2))
    assert needs_write(snapshot_row(T, limit=None), (T, 2))


def test_it_never_writes_over_a_newer_row() -> None:
    # A rebuild from the database stamped the row after the last live change.
    assert not needs_write(snapshot_row(T, limit=5), (T + timedelta(seconds=1), 2))
