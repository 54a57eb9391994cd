"""The long operator commands show progress on stderr (plain lines when it
is not a terminal) while their results on stdout stay what they were."""

from __future__ import annotations

import re
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution
from queues import stats
from queues.models import QueueStats
from queues.reconcile import reconcile_all
from queues.services import purge_queue

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus
LINE = re.compile(r"progress: (?P<unit>\w+)(?P<fields>( \w+=[\w.]+)+)")


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def run(*args: Any, stderr: StringIO | None = None) -> tuple[str, str]:
    out, err = StringIO(), stderr if stderr is not None else StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def progress_lines(stderr: str, unit: str) -> list[dict[str, int]]:
    """The fields of each progress line; fails on any other line."""
    lines = []
    for line in stderr.splitlines():
        match = LINE.fullmatch(line)
        assert match and match["unit"] == unit, f"not a progress line of {unit}: {line!r}"
        fields = dict(field.split("=") for field in match["fields"].split())
        fields.pop("elapsed")
        lines.append({name: int(value) for name, value in fields.items()})
    return lines


class Recorder:
    """A service's progress callback that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


@pytest.fixture
def busy(make_action: Any, redis_db: Any) -> list[Execution]:
    """test.busy: one scheduled and three waiting."""
    action = make_action("busy", concurrency_limit=1)
    return [request_execution(action.ref) for _ in range(4)]


def test_it_shows_no_progress_at_verbosity_0(busy: list[Execution]) -> None:
    out, err = run("purge_queue", "test.busy", "--yes", "--verbosity", "0")

    assert err == ""
    assert out.strip() == "test.busy: 3 waiting executions cancelled, 0 had already left the queue"


def test_it_shows_progress_over_the_actions_it_reconciles(make_action: Any, redis_db: Any) -> None:
    actions = [make_action(f"r{index}", concurrency_limit=1) for index in range(3)]
    for action in actions:
        request_execution(action.ref)
    redis_db.flushdb()

    out, err = run("reconcile_queues")

    lines = progress_lines(err, "actions")
    assert lines[0] == {"done": 0, "total": 3} and lines[-1] == {"done": 3, "total": 3}
    assert out.splitlines() == [
        f"test.r{index}: +0 waiting, +1 active, 0 stale freed, 0 granted, 0 stranded requests admitted"
        for index in range(3)
    ]


def test_it_calls_back_after_each_action_reconciled(make_action: Any, redis_db: Any) -> None:
    for index in range(2):
        make_action(f"r{index}")
    recorder = Recorder()

    reports = reconcile_all(progress=recorder)

    assert len(reports) == 2
    assert recorder.calls == [(0, 2), (1, 2), (2, 2)]


def test_it_shows_progress_over_the_waiting_executions_it_purges(busy: list[Execution]) -> None:
    out, err = run("purge_queue", "test.busy", "--yes")

    lines = progress_lines(err, "executions")
    assert lines[0] == {"done": 0, "total": 3} and lines[-1] == {"done": 3, "total": 3}
    assert out.strip() == "test.busy: 3 waiting executions cancelled, 0 had already left the queue"
    assert Execution.objects.filter(status=S.CANCELLED).count() == 3


def test_it_calls_back_after_each_execution_purged(busy: list[Execution]) -> None:
    recorder = Recorder()

    report = purge_queue("test.busy", progress=recorder)

    assert len(report.cancelled) == 3
    assert recorder.calls == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_it_prints_only_the_error_when_purging_an_unknown_action(db: None) -> None:
    err = StringIO()

    with pytest.raises(CommandError, match=re.escape("Action 'nope.gone' not found")):
        call_command("purge_queue", "nope.gone", "--yes", stdout=StringIO(), stderr=err)

    assert err.getvalue() == ""


def test_it_shows_progress_over_the_actions_whose_stats_it_rebuilds(
    make_action: Any, redis_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stats, "REBUILD_CHUNK", 2)
    for index in range(5):
        request_execution(make_action(f"s{index}", concurrency_limit=1).ref)

    out, err = run("rebuild_queue_stats")

    lines = progress_lines(err, "actions")
    assert lines[0] == {"done": 0, "total": 5} and lines[-1] == {"done": 5, "total": 5}
    assert out.splitlines() == [
        *(f"test.s{index}: 0 waiting, 1 active, 1 enqueued, 0 completed, 0 terminal" for index in range(5)),
        "5 queue statistics rows rebuilt",
    ]


def test_it_rebuilds_chunk_by_chunk_the_same_rows_as_at_once(
    make_action: Any, redis_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    actions = [make_action(f"s{index}", concurrency_limit=1) for index in range(5)]
    for action in actions:
        for _ in range(2):  # one active, one waiting
            request_execution(action.ref)
    at_once = {row.action_id: row.as_dict() for row in stats.rebuild()}
    QueueStats.objects.all().delete()
    monkeypatch.setattr(stats, "REBUILD_CHUNK", 2)
    recorder = Recorder()

    in_chunks = stats.rebuild(progress=recorder)

    assert recorder.calls == [(0, 5), (2, 5), (4, 5), (5, 5)]
    ignore = {"last_updated": None, "oldest_enqueued_at": None}
    assert {row.action_id: row.as_dict() | ignore for row in in_chunks} == {
        action_id: row | ignore for action_id, row in at_once.items()
    }
    assert QueueStats.objects.count() == 5
