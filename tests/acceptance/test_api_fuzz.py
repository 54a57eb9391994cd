"""Schemathesis against the live API, as staff and as a plain user.

gunicorn serves the API from the test database, a real `celery worker` runs
what the fuzzer requests, and `st run` generates requests from
/api/schema/ with every check it has (server errors, status codes, content
types, headers, response schemas, valid data accepted, invalid data
refused, unsupported methods, authentication ignored, ...), in all four
phases (the schema's examples, coverage, fuzzing, stateful sequences). The
seed and the number of examples are fixed, so CI repeats a laptop's run;
ATTUNE_FUZZ_SEED and ATTUNE_FUZZ_EXAMPLES widen a local search.
tests/acceptance/schemathesis.toml holds the settings that need a reason.

The executions the fuzzer requests are in practice those of the schema's
examples (core.echo, core.noop): it cannot guess other refs. The plain user
may run core.local all the same, so the worker runs in a scratch directory,
where a generated shell command could write nothing of the repository.

A second test sends what no fuzzer would over real HTTP: a 10 MB body,
with and without a Content-Length.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from executions.core_pack import load_core_pack
from executions.models import Action, AuditEntry, Execution, ExecutionStatus, Grant, GrantPermission, Pack
from tests.acceptance.conftest import FUZZ_SUMMARIES
from tests.acceptance.test_queue_metrics_burst import free_port
from tests.conftest import ROOT, WorkerProcess, start_gunicorn, subprocess_env, wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = int(os.environ.get("ATTUNE_FUZZ_SEED", "1"))
# Per operation and phase. 30 keeps both personas within about two minutes
# on two cores and still finds every bug this suite was written against.
MAX_EXAMPLES = int(os.environ.get("ATTUNE_FUZZ_EXAMPLES", "30"))
# Well below what a run generates (about 1,800 requests at 30 examples): a
# schema the fuzzer could not use would fall under it.
MIN_GENERATED = 500
ST_TIMEOUT_SECONDS = 600
TEN_MB = 10 * 1024 * 1024


@dataclass
class LiveApi:
    base: str
    tokens: dict[str, str]


def _start_worker(workdir: Path, log_path: Path) -> WorkerProcess:
    """A `celery worker` whose current directory is ``workdir``, so whatever
    a shell action writes with a relative path lands there."""
    workdir.mkdir()
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = subprocess_env({"PYTHONPATH": pythonpath})
    command = [sys.executable, "-m", "celery", "-A", "attune", "worker", "-l", "info", "-Q", "default"]
    command += ["-c", "2", "-n", f"fuzz-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    worker = WorkerProcess("fuzz-worker", process, log_path, env)
    wait_until(
        lambda: " ready." in worker.log() or process.poll() is not None,
        timeout=30,
        message="the worker to be ready",
    )
    assert process.poll() is None, worker.log()[-3000:]
    return worker


def _personas() -> dict[str, str]:
    """A staff user (not a superuser) and a plain user holding `execute` on
    the core pack; their API tokens by persona."""
    staff = User.objects.create_user("fuzz_staff", password="fuzz-staff-password", is_staff=True)
    plain = User.objects.create_user("fuzz_plain", password="fuzz-plain-password")
    Grant.objects.create(permission=GrantPermission.EXECUTE, pack=Pack.objects.get(ref="core"), user=plain)
    return {name: Token.objects.create(user=user).key for name, user in (("staff", staff), ("plain", plain))}


@pytest.fixture
def live_api(redis_db: Any, tmp_path: Path) -> Iterator[LiveApi]:
    """The core pack, the two personas, the API under gunicorn and a worker."""
    load_core_pack()
    tokens = _personas()
    port = free_port()
    web = start_gunicorn(port, tmp_path / "gunicorn.log")
    worker = None
    try:
        worker = _start_worker(tmp_path / "worker-cwd", tmp_path / "worker.log")
        yield LiveApi(f"http://127.0.0.1:{port}", tokens)
    finally:
        if worker is not None:
            worker.stop()
        web.stop()


def _run_schemathesis(api: LiveApi, persona: str, workdir: Path) -> tuple[dict[str, Any], str]:
    """Run `st run` as ``persona``; return its JSON report and its output."""
    report_path = workdir / f"schemathesis-{persona}.json"
    command = [str(Path(sys.executable).with_name("st")), "--config-file", str(CONFIG), "run"]
    command += [f"{api.base}/api/schema/?format=json", "-H", f"Authorization: Bearer {api.tokens[persona]}"]
    command += ["--checks", "all", "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES)]
    # One worker: the machine has two cores and the server needs them; and
    # several workers share a Python process, where CPython 3.11's ast module
    # (Hypothesis describes strategies with it) is not thread-safe.
    command += ["--workers", "1", "--no-color", "--report", "json", "--report-json-path", str(report_path)]
    result = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=ST_TIMEOUT_SECONDS, check=False
    )
    output = result.stdout + result.stderr
    assert report_path.exists(), f"schemathesis wrote no report (exit {result.returncode}):\n{output[-6000:]}"
    return json.loads(report_path.read_text()), output


def _summary(persona: str, report: dict[str, Any]) -> str:
    operations = report["operations"]
    cases = report["test_cases"]
    return (
        f"schemathesis as {persona}: {operations['tested']}/{operations['total']} operations, "
        f"{cases['generated']} examples, {len(report['failures'])} failures, "
        f"{len(report['errors'])} errors (seed {report['seed']}, {MAX_EXAMPLES} examples per operation "
        f"and phase, {report['running_time']:.0f} s)"
    )


@pytest.mark.parametrize("persona", ["staff", "plain"])
def test_schemathesis_finds_no_failure(
    live_api: LiveApi, persona: str, tmp_path: Path, artifacts_dir: Path, request: pytest.FixtureRequest
) -> None:
    workdir = tmp_path / "schemathesis"
    workdir.mkdir()

    report, output = _run_schemathesis(live_api, persona, workdir)

    (artifacts_dir / f"schemathesis-{persona}.txt").write_text(output)
    (artifacts_dir / f"schemathesis-{persona}.json").write_text(json.dumps(report, indent=2))
    summary = _summary(persona, report)
    print(summary)
    request.config.stash.setdefault(FUZZ_SUMMARIES, []).append(summary)
    request.node.user_properties.append(("schemathesis", summary))
    assert (report["failures"], report["errors"], report["exit_code"]) == ([], [], 0), output[-12000:]
    assert report["stop_reason"] == "completed", output[-3000:]
    operations = report["operations"]
    assert operations["tested"] == operations["selected"] == operations["total"] >= 18, operations
    assert report["test_cases"]["generated"] >= MIN_GENERATED, report["test_cases"]
    assert all(phase["status"] == "success" for phase in report["phases"].values()), report["phases"]
    # The worker ran what the fuzzer requested (the schema's examples at least).
    wait_until(
        lambda: Execution.objects.filter(status=ExecutionStatus.COMPLETED).exists(),
        timeout=60,
        message="an execution the fuzzer requested to complete",
    )


def _rows() -> dict[str, int]:
    return {
        "executions": Execution.objects.count(),
        "actions": Action.objects.count(),
        "packs": Pack.objects.count(),
        "audit": AuditEntry.objects.count(),
    }


def test_a_body_over_the_limit_is_refused_over_http_and_nothing_is_written(live_api: LiveApi) -> None:
    url = f"{live_api.base}/api/v1/executions"
    headers = {"Authorization": f"Bearer {live_api.tokens['plain']}", "Content-Type": "application/json"}
    huge = json.dumps({"action": "core.echo", "parameters": {"message": "x" * TEN_MB}}).encode()
    before = _rows()

    declared = requests.post(url, data=huge, headers=headers, timeout=60)
    # Chunked, without a Content-Length: Django reads no body it was not told the length of.
    chunked = requests.post(
        url, data=iter([huge[i : i + 65536] for i in range(0, len(huge), 65536)]), headers=headers, timeout=60
    )

    assert declared.status_code == 413
    assert declared.headers["Content-Type"] == "application/json"
    assert declared.json() == {
        "error": f"Request body too large: at most 2621440 bytes are accepted, this one has {len(huge)}"
    }
    assert chunked.status_code == 400
    assert chunked.json()["error"] == "action: This field is required."
    assert _rows() == before
    # The server is still there for the next request.
    after = requests.post(url, json={"action": "core.echo"}, headers=headers, timeout=10)
    assert after.status_code == 201, after.text
