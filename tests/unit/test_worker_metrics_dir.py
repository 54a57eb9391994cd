"""Which processes get a private prometheus_client multiprocess directory
(attune/celery.py): a `celery worker` only, and only when none is set."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from attune.celery import _private_metrics_dir_for_workers

CELERY = "/srv/attune/.venv/bin/celery"
CELERY_MODULE = "/srv/attune/.venv/lib/python3.11/site-packages/celery/__main__.py"


@pytest.fixture
def no_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


@pytest.mark.parametrize(
    "argv",
    [
        [CELERY, "-A", "attune", "worker", "-l", "info", "-Q", "default"],
        [CELERY_MODULE, "-A", "attune", "worker", "-c", "2"],
        [CELERY, "--app=attune", "worker"],
    ],
)
def test_it_gives_a_celery_worker_a_fresh_empty_directory(
    argv: list[str], no_dir: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _private_metrics_dir_for_workers(argv)

    path = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    try:
        assert path.is_dir()
        assert list(path.iterdir()) == []
    finally:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
        shutil.rmtree(path)


@pytest.mark.parametrize(
    "argv",
    [
        [CELERY, "-A", "attune", "inspect", "active"],
        [CELERY, "-A", "attune", "inspect", "active", "-d", "worker@host"],
        ["/srv/attune/.venv/bin/gunicorn", "attune.wsgi:application", "--workers", "1"],
        ["manage.py", "reap", "--loop"],
        ["/srv/attune/.venv/bin/pytest", "-k", "worker"],
        [],
    ],
)
def test_it_leaves_every_other_process_alone(argv: list[str], no_dir: None) -> None:
    _private_metrics_dir_for_workers(argv)

    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_it_keeps_a_directory_the_operator_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    _private_metrics_dir_for_workers([CELERY, "-A", "attune", "worker"])

    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)
