"""The Celery application: `celery -A attune worker`."""

import atexit
import os
import shutil
import sys
import tempfile

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "attune.settings")


def _private_metrics_dir_for_workers(argv: list[str]) -> None:
    """Give a `celery worker` its own prometheus_client multiprocess directory.

    Prefork pool processes count in their own memory, which no exporter can
    read; in multiprocess mode each process writes its counts to a file in
    PROMETHEUS_MULTIPROC_DIR and the main process's exporter sums them
    (queues/metrics.py). prometheus_client picks the mode once, when it is
    first imported, so this runs before Django (and so prometheus_client)
    loads. A fresh directory per run means no counts of a previous run or of
    another worker on the host are summed in. A directory set by the
    operator is used as given.
    """
    program = argv[0] if argv else ""
    is_celery = os.path.basename(program) == "celery" or program.endswith(
        os.path.join("celery", "__main__.py")
    )
    if not is_celery or "worker" not in argv[1:] or "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        return
    path = tempfile.mkdtemp(prefix="attune-worker-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    owner = os.getpid()

    def _remove() -> None:
        # Pool processes inherit this hook; only the worker that made the directory removes it.
        if os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(_remove)


_private_metrics_dir_for_workers(sys.argv)

app = Celery("attune")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
