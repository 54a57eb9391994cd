"""The long operator commands show progress on stderr (plain lines when it
is not a terminal) while their results on stdout stay what they were, and
run_action --concurrency says that the limit it sets stays."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from executions.management.commands.run_action import Command as RunAction
from executions.models import Action, Execution, ExecutionStatus
from executions.services import request_execution
from queues import stats
from queues.models import QueueStats
from queues.reconcile import reconcile_all
from queues.services import purge_queue
from tests.drive import end, scheduled_ids

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


@pytest.fixture
def play_worker(make_action: Any, redis_db: Any) -> Iterator[Callable[[StringIO | None], Action]]:
    """play_worker(stderr) makes test.worked (limit 1) and starts a thread
    playing its worker: once the command has written to ``stderr`` (at
    once if None), it ends the running execution every 0.3 s, so the next
    in line is granted. Waiting for the command's first output makes the
    first progress line certain to show nothing done."""
    stop = threading.Event()
    threads = []

    def start(stderr: StringIO | None) -> Action:
        action = make_action("worked", concurrency_limit=1)

        def work() -> None:
            try:
                while stderr is not None and not stderr.getvalue() and not stop.wait(0.05):
                    pass
                while not stop.wait(0.3):
                    for execution_id in scheduled_ids(action.pk):
                        end(execution_id)
            finally:
                connection.close()

        threads.append(threading.Thread(target=work, daemon=True))
        threads[-1].start()
        return action

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=10)


def test_it_shows_done_running_and_waiting_while_run_action_waits(play_worker: Any) -> None:
    err = StringIO()
    action = play_worker(err)
    started = time.monotonic()

    out, _ = run("run_action", action.ref, "--count", "5", "--wait", "--timeout", "60", stderr=err)

    seconds = time.monotonic() - started
    lines = progress_lines(err.getvalue(), "executions")
    assert lines[0] == {"done": 0, "total": 5, "running": 1, "waiting": 4}
    assert lines[-1] == {"done": 5, "total": 5, "running": 0, "waiting": 0}
    assert all(line["done"] + line["running"] + line["waiting"] == 5 for line in lines)
    assert [line["done"] for line in lines] == sorted(line["done"] for line in lines)
    # At most one a second, plus the final one.
    assert len(lines) <= int(seconds) + 2
    # stdout is what it always was: each request, then the start order.
    ids = [str(pk) for pk in Execution.objects.order_by("queue_seq").values_list("pk", flat=True)]
    statuses = ["scheduled", "queued", "queued", "queued", "queued"]
    requested = zip(ids, statuses, strict=True)
    stdout = out.splitlines()
    assert stdout[:5] == [f"{pk} {status} seq={seq}" for seq, (pk, status) in enumerate(requested, 1)]
    assert stdout[5] == "start order (by grant):"
    assert [line.split()[-2:] for line in stdout[6:]] == [["completed", pk] for pk in ids]


def test_it_draws_a_bar_when_run_action_waits_on_a_terminal(play_worker: Any) -> None:
    err = Terminal()
    action = play_worker(err)

    out, _ = run("run_action", action.ref, "--count", "3", "--wait", "--timeout", "60", stderr=err)

    frames = err.getvalue().split("\r")
    assert re.search(r"executions:\s+0%.* 0/3 done .*running=1, waiting=2", frames[1])
    assert re.search(r"executions: 100%.* 3/3 done .*running=0, waiting=0\]\n$", frames[-1])
    assert "progress" not in out and out.splitlines()[3] == "start order (by grant):"


def test_it_shows_no_progress_with_no_progress(play_worker: Any) -> None:
    action = play_worker(None)

    out, err = run("run_action", action.ref, "--count", "2", "--wait", "--no-progress", "--timeout", "60")

    assert err == ""
    assert out.splitlines()[2] == "start order (by grant):"
    assert [line.split()[-2] for line in out.splitlines()[3:]] == ["completed", "completed"]


def test_it_shows_no_progress_at_verbosity_0(busy: list[Execution]) -> None:
    out, err = run("purge_queue", "test.busy", "--yes", "--verbosity", "0")

    assert err == ""
    assert out.strip() == "test.busy: 3 waiting executions cancelled, 0 had already left the queue"


def test_it_shows_no_progress_without_wait(make_action: Any, redis_db: Any) -> None:
    action = make_action("quick")

    out, err = run("run_action", action.ref, "--count", "2")

    assert err == ""
    assert len(out.splitlines()) == 2


def test_it_says_the_concurrency_it_sets_is_kept(make_action: Any, redis_db: Any) -> None:
    action = make_action("limited", concurrency_limit=1)

    out, _ = run("run_action", action.ref, "--concurrency", "3", "--count", "2")

    lines = out.splitlines()
    assert lines[0] == "concurrency limit of test.limited set to 3 (kept after this command)"
    assert [line.split()[1] for line in lines[1:]] == ["scheduled", "scheduled"]
    assert Action.objects.get(pk=action.pk).concurrency_limit == 3


def test_it_says_in_its_help_that_concurrency_is_kept() -> None:
    help_text = " ".join(RunAction().create_parser("manage.py", "run_action").format_help().split())

    assert "for good: the limit is saved on the action and stays after this command" in help_text
    assert "--no-progress" in help_text


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
