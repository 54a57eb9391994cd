"""docs/ops-runbook-queues.md works on this system: every command it marks
`# (test)` and every SQL query in it is run here, exactly as written (with
its placeholders filled), against a queue in a known state; every other
command is marked as checked by hand; every management command it names
exists."""

from __future__ import annotations

import io
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command, get_commands
from django.db import connection

from executions.models import Action, Execution, ExecutionStatus
from executions.services import request_execution
from queues.gate import order_score
from queues.keys import QueueRef

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "ops-runbook-queues.md"
TEXT = RUNBOOK.read_text()
BLOCKS = re.findall(r"^ *```(\w*)\n(.*?)^ *```", TEXT, re.MULTILINE | re.DOTALL)
SHELL_LINES = [
    line.strip() for lang, body in BLOCKS if lang == "sh" for line in body.splitlines() if line.strip()
]
TESTED = sorted({line.removesuffix("# (test)").strip() for line in SHELL_LINES if line.endswith("# (test)")})
SQL = [" ".join(body.split()) for lang, body in BLOCKS if lang == "sql"]


@pytest.fixture
def queue(core_pack: Any, redis_db: Any) -> dict[str, Any]:
    """core.sleep with limit 1: one execution holds the slot, three wait,
    and queue_stats has been flushed."""
    from queues.stats import flush_once

    action = Action.objects.get(ref="core.sleep")
    action.concurrency_limit = 1
    action.save()
    ids = [str(request_execution(action.ref, {"seconds": 1}).pk) for _ in range(4)]
    flush_once()
    return {"action": action, "active": ids[0], "waiting": ids[1:], "queue": QueueRef(action.pk)}


def fill(command: str, queue: dict[str, Any]) -> str:
    return (
        command.replace("{a12}", f"{{a{queue['action'].pk}}}")
        .replace("<execution-id>", queue["waiting"][1])
        # The second waiting execution was the third request: queue seq 3,
        # at the default priority.
        .replace("<order-score>", str(order_score(5, 3)))
        .replace('"$REDIS_URL"', shlex.quote(settings.REDIS_URL))
    )


def test_it_marks_every_command_as_tested_or_checked_by_hand() -> None:
    assert SHELL_LINES
    unmarked = [line for line in SHELL_LINES if not re.search(r"# \((test|by hand)\)$", line)]
    assert not unmarked


def test_it_names_only_management_commands_that_exist() -> None:
    named = set(re.findall(r"manage\.py ([a-z_]+)", TEXT))
    assert {"queue_stats", "reconcile_queues", "purge_queue", "cancel_execution", "reap"} <= named
    assert not named - set(get_commands())


def test_it_links_every_section_it_refers_to() -> None:
    anchors = {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+\s+(.+)$", TEXT, re.MULTILINE)
    }
    assert not set(re.findall(r"\]\(#([\w-]+)\)", TEXT)) - anchors


@pytest.mark.parametrize("command", [c for c in TESTED if c.startswith("python manage.py")])
def test_it_runs_the_management_command(command: str, queue: dict[str, Any]) -> None:
    name, *args = shlex.split(fill(command, queue))[2:]
    out = io.StringIO()

    call_command(name, *args, stdout=out)

    output = out.getvalue()
    waiting = queue["waiting"]
    if name == "queue_stats":
        (row,) = [line.split() for line in output.splitlines() if line.startswith("core.sleep ")]
        assert row[1:5] == ["default", "3", "1", "1"]  # group, waiting, active, limit
    elif name == "reap":
        assert output.startswith("ReapReport(ran=True")
    elif name == "reconcile_queues":
        assert "core.sleep: +0 waiting, +0 active, 0 stale freed" in output
    elif name == "cancel_execution":
        assert Execution.objects.get(pk=waiting[1]).status == S.CANCELLED
        assert Execution.objects.get(pk=waiting[0]).status == S.QUEUED
    elif name == "purge_queue":
        assert "core.sleep: 3 waiting executions cancelled" in output
        assert set(Execution.objects.filter(pk__in=waiting).values_list("status", flat=True)) == {S.CANCELLED}
        assert Execution.objects.get(pk=queue["active"]).status == S.SCHEDULED
    else:
        pytest.fail(f"no expectation written for {name}")


@pytest.mark.parametrize("command", [c for c in TESTED if c.startswith("redis-cli")])
def test_it_runs_the_redis_command(command: str, queue: dict[str, Any]) -> None:
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed (Debian package redis-tools)")
    result = subprocess.run(
        shlex.split(fill(command, queue)), capture_output=True, text=True, timeout=30, check=True
    )

    lines = result.stdout.split()
    verb = shlex.split(command)[3]
    key = shlex.split(fill(command, queue))[4]
    assert key.startswith(f"{settings.ATTUNE_REDIS_PREFIX}:{{a{queue['action'].pk}}}:default:")
    if verb == "ZRANGE" and key == queue["queue"].waiting:
        assert lines == queue["waiting"]
    elif verb == "ZRANGE" and key == queue["queue"].active:
        assert lines[0] == queue["active"] and int(lines[1]) > 0  # id, lease deadline (ms)
    elif verb == "ZCARD":
        assert lines == ["3"]
    elif verb == "HGETALL":
        meta = dict(zip(lines[::2], lines[1::2], strict=True))
        assert (meta["limit"], meta["seq"], meta["total_enqueued"]) == ("1", "4", "4")
    elif verb == "HGET":
        assert int(lines[0]) > 0  # enqueued at, ms
    else:
        pytest.fail(f"no expectation written for {command}")


@pytest.mark.parametrize("query", SQL, ids=[f"sql{i}" for i in range(len(SQL))])
def test_it_runs_the_sql(query: str, queue: dict[str, Any]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(query.replace("%", "%%"))
        columns = [column.name for column in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    if "ORDER BY s.queue_length DESC, s.active_count DESC" in query:
        assert (rows[0]["ref"], rows[0]["queue_length"], rows[0]["active_count"]) == ("core.sleep", 3, 1)
    elif "AS out_of_order" in query:
        assert rows == [{"out_of_order": 0}]
    elif "status IN ('requested', 'queued')" in query:
        assert [str(row["id"]) for row in rows] == queue["waiting"]
    elif "s.active_count >= s.max_concurrent" in query:
        assert [row["ref"] for row in rows] == ["core.sleep"]
    elif "FROM executions_action WHERE ref" in query:
        assert rows[0]["id"] == queue["action"].pk
    else:
        # The others look at history (stuck for 10 minutes, the last hour)
        # that a fresh queue does not have: they must run and name their columns.
        assert columns
