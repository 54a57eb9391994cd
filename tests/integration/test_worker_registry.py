"""The worker registry's rules: heartbeats, and offline after silence."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from workers.models import Worker, WorkerStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def _worker(hostname: str, *, beat_ago: float, **fields: object) -> Worker:
    beat = timezone.now() - timedelta(seconds=beat_ago)
    return Worker.objects.create(hostname=hostname, started=beat, last_heartbeat=beat, **fields)


def test_it_marks_offline_only_the_workers_silent_for_too_long() -> None:
    _worker("silent@h", beat_ago=60)
    _worker("alive@h", beat_ago=1)
    _worker("gone@h", beat_ago=600, status=WorkerStatus.OFFLINE, stopped=timezone.now())

    assert Worker.objects.mark_silent_offline(silent_for=timedelta(seconds=30)) == ["silent@h"]

    statuses = dict(Worker.objects.values_list("hostname", "status"))
    assert statuses == {"silent@h": "offline", "alive@h": "online", "gone@h": "offline"}
    assert Worker.objects.mark_silent_offline(silent_for=timedelta(seconds=30)) == []


def test_it_brings_back_online_a_worker_marked_offline_that_beats_again() -> None:
    worker = _worker("slow@h", beat_ago=60)
    Worker.objects.mark_silent_offline(silent_for=timedelta(seconds=30))

    assert Worker.objects.heartbeat("slow@h") is True

    worker.refresh_from_db()
    assert worker.status == WorkerStatus.ONLINE
    assert (timezone.now() - worker.last_heartbeat).total_seconds() < 5


def test_it_keeps_a_worker_that_shut_down_offline_even_if_a_late_beat_arrives() -> None:
    worker = _worker("stopped@h", beat_ago=5, status=WorkerStatus.OFFLINE, stopped=timezone.now())

    assert Worker.objects.heartbeat("stopped@h") is False

    worker.refresh_from_db()
    assert worker.status == WorkerStatus.OFFLINE
