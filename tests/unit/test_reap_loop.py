"""The reaper's loop outlives a pass that fails because Redis, or one
primary of a cluster, is away: once the node is back, the reaper is what
rebuilds the queues it lost and admits the requests made meanwhile."""

from __future__ import annotations

import io
import logging
from unittest import mock

import pytest
import redis
from django.core.management import call_command
from redis.exceptions import ClusterDownError

from queues.management.commands import reap
from queues.reaper import ReapReport


class Stop(Exception):
    """Ends the otherwise endless loop."""


def test_the_loop_logs_a_pass_failing_on_redis_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    passes = [redis.ConnectionError("refused"), ClusterDownError("The cluster is down"), ReapReport(), Stop()]
    with (
        mock.patch.object(reap, "reap_once", autospec=True, side_effect=passes) as reap_once,
        mock.patch.object(reap.metrics, "start_exporter", autospec=True),
        mock.patch.object(reap.time, "sleep", autospec=True) as sleep,
        caplog.at_level(logging.ERROR, logger=reap.__name__),
        pytest.raises(Stop),
    ):
        call_command("reap", "--loop", stdout=io.StringIO())

    assert reap_once.call_count == 4
    assert sleep.call_count == 3
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        "reaper pass failed: Redis unavailable"
    ] * 2


def test_a_single_pass_failing_on_redis_fails_the_command() -> None:
    with (
        mock.patch.object(reap, "reap_once", autospec=True, side_effect=redis.ConnectionError("refused")),
        pytest.raises(redis.ConnectionError),
    ):
        call_command("reap", stdout=io.StringIO())
