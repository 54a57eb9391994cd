"""gunicorn settings for the web process:

    gunicorn -c python:attune.gunicorn_config attune.wsgi:application --workers 3

Several gunicorn worker processes each count their own requests and
histograms; a scrape of ``/metrics`` reaches one of them. So, as for a
Celery worker (attune/celery.py), prometheus_client runs in multiprocess
mode: this module gives the server a fresh ``PROMETHEUS_MULTIPROC_DIR``
before any worker imports prometheus_client, each worker writes its counts
to its own files there, and every scrape sums all of them. The gate's
counters and gauges come from Redis at scrape time (queues/metrics.py), so
they are whole either way. A directory set by the operator is used as
given (it must be empty at start and not shared).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

_owned_metrics_dir: str | None = None
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    _owned_metrics_dir = tempfile.mkdtemp(prefix="attune-web-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _owned_metrics_dir

wsgi_app = "attune.wsgi:application"
worker_class = "gthread"
threads = 8
timeout = 60
accesslog = "-"
errorlog = "-"


def child_exit(server: Any, worker: Any) -> None:
    # A replaced worker's counts stay in the sum; only its live gauges go.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _owned_metrics_dir is not None:
        shutil.rmtree(_owned_metrics_dir, ignore_errors=True)
