"""A fleet on the scaled stack, every part a real process: 20 actions spread
over the three primaries of a Redis Cluster, three `celery worker`s with
host names of their own, each consuming two of three queues, RabbitMQ as
the broker, PgBouncer in front of PostgreSQL, and two web servers
(gunicorn, two processes each) taking requests from four clients at once.

At rest: each action granted in request order and never past its limit,
every client's requests in the order it sent them, and every counter (the
Prometheus scrape of either server, whichever gunicorn process answers, and
the queue-stats API) equal to the executions table."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from executions.models import ExecutionStatus
from queues.gate import get_gate
from queues.keys import QueueRef
from queues.stats import flush_once
from tests.conftest import start_gunicorn
from tests.helpers import in_request_order, max_concurrency, wait_all_terminal
from tests.prometheus import scrape, total, value
from tests.servers import free_port
from tests.stacks import SCALED, Stack, assert_ran_on

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus

ACTIONS = 20
CELERY_QUEUES = 3
CLIENTS = 4
ROUNDS = 2
PER_BATCH = 2
# Every client sends each action ROUNDS batches of PER_BATCH requests.
PER_ACTION = CLIENTS * ROUNDS * PER_BATCH


def _shard_map(actions: list[Any]) -> dict[str, tuple[int, str]]:
    """Each action's hash slot and the primary serving it (host:port)."""
    cluster = get_gate().redis
    placement = {}
    for action in actions:
        key = QueueRef(action.pk).meta
        node = cluster.get_node_from_key(key)
        placement[action.ref] = (cluster.keyslot(key), f"{node.host}:{node.port}")
    return placement


def _client(base: str, token: str, refs: list[str], client: int, sent: dict[str, list[str]]) -> None:
    """One client: batch after batch, each to one action, going through the
    actions in an order of its own; ``sent`` gets the ids per action in the
    order the server answered."""
    order = refs[client:] + refs[:client]
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {token}"
        for round_ in range(ROUNDS):
            for ref in order:
                items = [
                    {"action": ref, "parameters": {"index": client * 100 + round_ * 10 + i, "seconds": 0.02}}
                    for i in range(PER_BATCH)
                ]
                response = session.post(f"{base}/api/v1/executions", json=items, timeout=60)
                if response.status_code != 201:
                    raise AssertionError(f"{ref}: {response.status_code} {response.text[:500]}")
                sent.setdefault(ref, []).extend(item["id"] for item in response.json())


@pytest.mark.parametrize("stack", [SCALED], indirect=True, ids=str)
def test_twenty_actions_three_workers_two_web_servers_at_once(
    request: pytest.FixtureRequest, stack: Stack, make_action: Any, worker_factory: Any, tmp_path: Path
) -> None:
    actions = [
        make_action(
            f"fleet{i}",
            entrypoint="tests.actions.sleep_indexed",
            concurrency_limit=1 + i % 3,
            celery_queue=f"fleet{i % CELERY_QUEUES}",
        )
        for i in range(ACTIONS)
    ]
    placement = _shard_map(actions)
    print("\naction -> hash slot, primary")
    for ref, (slot, node) in placement.items():
        print(f"  {ref:<14} {slot:>5}  {node}")
    assert len({node for _, node in placement.values()}) == 3, placement

    # Worker k consumes queues k and k+1: every queue has two workers, every
    # worker serves two queues.
    workers = [
        worker_factory(
            f"fleet-w{k}",
            concurrency=2,
            queues=f"fleet{k},fleet{(k + 1) % CELERY_QUEUES}",
        )
        for k in range(CELERY_QUEUES)
    ]
    ports = [free_port(), free_port()]
    webs = [start_gunicorn(port, tmp_path / f"web{port}.log") for port in ports]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        root = User.objects.create_superuser("fleet", "fleet@example.com", "pw-for-tests")
        token = Token.objects.create(user=root).key
        refs = [action.ref for action in actions]
        sent: list[dict[str, list[str]]] = [{} for _ in range(CLIENTS)]
        failures: list[BaseException] = []

        def run_client(client: int) -> None:
            try:
                _client(bases[client % 2], token, refs, client, sent[client])
            except BaseException as error:
                failures.append(error)

        clients = [threading.Thread(target=run_client, args=(c,)) for c in range(CLIENTS)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(timeout=180)
        assert not failures, failures
        assert not any(thread.is_alive() for thread in clients)

        ids = [pk for per_action in sent for pks in per_action.values() for pk in pks]
        executions = wait_all_terminal(ids, timeout=180)
        assert Counter(e.status for e in executions) == {S.COMPLETED: ACTIONS * PER_ACTION}
        by_id = {str(e.pk): e for e in executions}

        for action in actions:
            mine = [e for e in executions if e.action_id == action.pk]
            assert len(mine) == PER_ACTION
            ordered = in_request_order(mine)
            assert [e.queue_seq for e in ordered] == list(range(1, PER_ACTION + 1))
            assert [e.grant_seq for e in ordered] == list(range(1, PER_ACTION + 1)), action.ref
            assert max_concurrency(mine) <= action.concurrency_limit, action.ref
            # Only the two workers consuming the action's queue ran it.
            queue = int(action.celery_queue.removeprefix("fleet"))
            allowed = {f"fleet-w{queue}", f"fleet-w{(queue - 1) % CELERY_QUEUES}"}
            assert {e.worker.partition("@")[0] for e in mine} <= allowed, action.ref
        # Each client's requests to an action were admitted in the order it sent them.
        for per_action in sent:
            for ref, pks in per_action.items():
                seqs = [by_id[pk].queue_seq for pk in pks]
                assert seqs == sorted(seqs), ref
        assert {e.worker.partition("@")[0] for e in executions} == {w.name for w in workers}

        flush_once()
        for base in bases:
            # A scrape reaches one gunicorn process of the server at random:
            # every one must show the table's totals.
            for _ in range(4):
                samples = scrape(f"{base}/metrics")
                for ref in refs:
                    assert value(samples, "attune_executions_enqueued_total", action=ref) == PER_ACTION
                    completed = value(
                        samples, "attune_executions_terminal_total", action=ref, status=S.COMPLETED
                    )
                    assert completed == PER_ACTION, ref
            stats = requests.get(
                f"{base}/api/v1/queue-stats", headers={"Authorization": f"Bearer {token}"}, timeout=10
            ).json()
            rows = {row["action_ref"]: row for row in stats["data"]}
            for ref in refs:
                row = rows[ref]
                assert (row["total_enqueued"], row["total_completed"]) == (PER_ACTION, PER_ACTION), row
                assert (row["queue_length"], row["active_count"]) == (0, 0), row
        # The web servers' own request counters, summed over their gunicorn
        # processes: each server counts the batches it was sent, whichever
        # process took them.
        for n, base in enumerate(bases):
            posts = total(
                scrape(f"{base}/metrics"), "django_http_requests_total_by_method_total", method="POST"
            )
            assert posts == ACTIONS * ROUNDS * (CLIENTS // 2), (n, posts)
        assert_ran_on(request, stack, workers)
    finally:
        for web in webs:
            web.stop()
