"""The web process's /metrics: queue gauges read from Redis at scrape time,
and the counters the web process itself moves."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import redis
from django.test import Client
from django.utils import timezone

from executions.exceptions import QueueFull
from executions.models import Execution
from executions.services import cancel_execution, request_execution
from queues import metrics
from queues.live import live_queues
from tests.prometheus import Samples, parse, total, value

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def scrape_web() -> Samples:
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


def test_it_exports_every_queue_gauge_from_the_live_counters(make_action: Any, redis_db: Any) -> None:
    limited = make_action("gauged", concurrency_limit=1)
    unlimited = make_action("gauged_unlimited")
    before = time.time()
    ids = [request_execution(limited.ref, {}).pk for _ in range(3)]
    request_execution(unlimited.ref, {})

    samples = scrape_web()

    assert value(samples, "attune_queue_length", action=limited.ref, group="default") == 2
    assert value(samples, "attune_queue_active", action=limited.ref, group="default") == 1
    assert value(samples, "attune_queue_max_concurrent", action=limited.ref) == 1
    age = value(samples, "attune_queue_oldest_age_seconds", action=limited.ref, group="default")
    assert age is not None and 0 <= age < 60
    updated = value(samples, "attune_queue_last_updated", action=limited.ref)
    assert updated is not None and before - 1 <= updated <= time.time() + 1
    assert value(samples, "attune_queue_length", action=unlimited.ref, group="default") == 0
    assert value(samples, "attune_queue_active", action=unlimited.ref, group="default") == 1
    assert value(samples, "attune_queue_max_concurrent", action=unlimited.ref) == float("inf")
    assert value(samples, "attune_queue_oldest_age_seconds", action=unlimited.ref, group="default") == 0
    assert value(samples, "attune_queue_collector_up") == 1

    # The gauges follow the queue, not a cache: a cancel shows at the next scrape.
    cancel_execution(ids[1])
    assert value(scrape_web(), "attune_queue_length", action=limited.ref, group="default") == 1


def test_it_matches_the_live_figures_the_api_and_dashboard_use(make_action: Any, redis_db: Any) -> None:
    action = make_action("matching", concurrency_limit=2)
    for _ in range(5):
        request_execution(action.ref, {})

    samples = scrape_web()
    (live,) = [q for q in live_queues() if q.action_ref == action.ref]

    assert value(samples, "attune_queue_length", action=action.ref, group="default") == live.queue_length == 3
    assert value(samples, "attune_queue_active", action=action.ref, group="default") == live.active_count == 2
    assert value(samples, "attune_queue_max_concurrent", action=action.ref) == live.max_concurrent


def test_it_reads_no_executions_at_scrape_time(
    make_action: Any, redis_db: Any, django_assert_max_num_queries: Any
) -> None:
    for name in ("one", "two", "three"):
        action = make_action(name, concurrency_limit=1)
        request_execution(action.ref, {})

    # One query for the actions, however many executions there are.
    with django_assert_max_num_queries(1) as captured:
        scrape_web()
    assert not any("executions_execution" in query["sql"] for query in captured.captured_queries)


def test_it_counts_rejections_and_admissions_in_the_web_process(make_action: Any, redis_db: Any) -> None:
    action = make_action("rejecting", concurrency_limit=1, max_queue_length=1)
    request_execution(action.ref, {})
    request_execution(action.ref, {})
    for _ in range(2):
        with pytest.raises(QueueFull):
            request_execution(action.ref, {})

    samples = scrape_web()

    assert value(samples, "attune_queue_rejected_total", action=action.ref, reason="queue_full") == 2
    assert value(samples, "attune_executions_enqueued_total", action=action.ref) == 2


def test_it_counts_a_cancelled_wait_as_terminal_once(make_action: Any, redis_db: Any) -> None:
    action = make_action("cancelled_wait", concurrency_limit=1)
    request_execution(action.ref, {})
    waiting = request_execution(action.ref, {})
    cancel_execution(waiting.pk)

    samples = scrape_web()

    assert value(samples, "attune_executions_terminal_total", action=action.ref, status="cancelled") == 1
    assert total(samples, "attune_executions_terminal_total", action=action.ref) == 1
    # It never ran, so no duration.
    assert total(samples, "attune_execution_duration_seconds_count", action=action.ref) == 0


def test_it_answers_a_scrape_when_redis_is_away(make_action: Any, redis_db: Any) -> None:
    make_action("unreachable")
    with mock.patch(
        "queues.live.live_queues", autospec=True, side_effect=redis.ConnectionError("Redis is away")
    ):
        samples = scrape_web()

    assert value(samples, "attune_queue_collector_up") == 0
    assert not any(name == "attune_queue_length" for name, _ in samples)


def test_it_observes_queue_wait_and_hand_off_at_start(make_action: Any, redis_db: Any) -> None:
    action = make_action("observed", concurrency_limit=1)
    execution = request_execution(action.ref, {})
    now = timezone.now()
    Execution.objects.filter(pk=execution.pk).update(created=now - timedelta(seconds=7), started_at=now)
    execution.refresh_from_db()
    wait_before = total(scrape_web(), "attune_queue_wait_seconds_sum", action=action.ref)

    metrics.started(execution, released_at=now.timestamp() - 0.25)

    samples = scrape_web()
    waited = total(samples, "attune_queue_wait_seconds_sum", action=action.ref) - wait_before
    assert waited == pytest.approx(7)
    assert value(samples, "attune_handoff_seconds_count", action=action.ref) == 1
    assert value(samples, "attune_handoff_seconds_sum", action=action.ref) == pytest.approx(0.25, abs=0.01)
    assert value(samples, "attune_handoff_seconds_bucket", action=action.ref, le="0.1") == 0
    assert value(samples, "attune_handoff_seconds_bucket", action=action.ref, le="0.25") == 1


def test_an_exporter_serves_what_its_process_counts_but_nothing_read_from_redis(
    make_action: Any, redis_db: Any
) -> None:
    action = make_action("exported", concurrency_limit=1)
    request_execution(action.ref, {})
    metrics.lease_reclaimed(action.ref)

    body, content_type = metrics.exposition(include_queues=False)

    samples = parse(body.decode())
    assert content_type.startswith("text/plain")
    assert (value(samples, "attune_leases_reclaimed_total", action=action.ref) or 0) >= 1
    # The gauges and the gate's counters: only the web process serves them, once.
    assert not any(name.startswith(("attune_queue_length", "attune_executions_")) for name, _ in samples)


def test_it_exports_each_group_up_to_the_cap_and_the_rest_as_other(make_action: Any, redis_db: Any) -> None:
    from django.test import override_settings

    from executions.models import Policy

    action = make_action("grouped", parameters_schema={"type": "object", "properties": {"host": {}}})
    Policy.objects.create(
        name="per-host-metrics", scope="action", action=action, concurrency_limit=1, parameters=["host"]
    )
    # Host h<i> gets i + 1 requests: one runs, i wait.
    for i in range(4):
        for _ in range(i + 1):
            request_execution(action.ref, {"host": f"h{i}"})

    with override_settings(ATTUNE_METRICS_MAX_GROUPS=2):
        samples = scrape_web()

    lengths = {
        dict(labels)["group"]: count
        for (name, labels), count in samples.items()
        if name == "attune_queue_length" and dict(labels)["action"] == action.ref
    }
    # Busiest first: h3 (3 waiting), h2 (2); then h1, h0 and the empty default summed.
    assert lengths == {'[["h3"]]': 3, '[["h2"]]': 2, "other": 1}
    assert value(samples, "attune_queue_active", action=action.ref, group="other") == 2
    assert total(samples, "attune_executions_enqueued_total", action=action.ref) == 10
