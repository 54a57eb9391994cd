"""The pure parts of bench/cpu_split.py."""

from __future__ import annotations

import pytest

from bench.cpu_split import classify, per_execution

WORKER = "/venv/bin/python -m celery -A attune worker -l info -Q default -c 2"


@pytest.mark.parametrize(
    ("command", "parent", "kind"),
    [
        ("/venv/bin/python -m bench.throughput --rows gate --count 6000", "bash", "requester"),
        (WORKER, "/venv/bin/python -m bench.throughput --rows gate", "celery main"),
        (WORKER, WORKER, "celery pool"),
        (
            "postgres: postgres attune_bench 127.0.0.1(5123) idle",
            "/usr/lib/postgresql/15/bin/postgres",
            "postgres",
        ),
        ("/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main", "init", "postgres"),
        ("redis-server 127.0.0.1:6379", "init", "redis"),
        ("/usr/sbin/rabbitmq-server", "init", "other"),
    ],
)
def test_it_classifies_each_process_by_its_command_line(command: str, parent: str, kind: str) -> None:
    assert classify(command, parent) == kind


def test_it_gives_milliseconds_per_execution() -> None:
    assert per_execution({"redis": 0.5, "postgres": 2.0}, 1000) == {"redis": 0.5, "postgres": 2.0}
