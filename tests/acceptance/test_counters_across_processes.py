"""The gate's counters are exact whichever process moved them: requests
from a one-off `manage.py run_action`, from the API under gunicorn with
three worker processes, and cancels from the admin, ended by a real
`celery worker`; every scrape of any gunicorn worker shows the totals of
the executions table, status by status."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from executions.models import Execution, ExecutionStatus
from tests.acceptance.test_queue_metrics_burst import free_port
from tests.conftest import ROOT, start_gunicorn, subprocess_env
from tests.helpers import wait_all_terminal
from tests.prometheus import scrape, value

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus
MAX_QUEUE_LENGTH = 6


def _admin_session(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    login = f"{base}/admin/login/"
    session.get(login, timeout=10)
    response = session.post(
        login,
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": login},
        timeout=10,
    )
    assert response.url.endswith("/admin/"), response.text[:500]
    return session


def test_scraped_totals_equal_the_table_after_three_kinds_of_process(
    make_action: Any, worker_factory: Any, redis_db: Any, tmp_path: Path
) -> None:
    action = make_action(
        "counted",
        entrypoint="tests.actions.fail_every_third",
        concurrency_limit=1,
        max_queue_length=MAX_QUEUE_LENGTH,
    )
    User.objects.create_superuser("root", "root@example.com", "pw-for-tests")
    token = Token.objects.create(user=User.objects.get(username="root"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = start_gunicorn(port, tmp_path / "gunicorn.log", workers=3)
    try:
        # 1. A one-off process: three requests, then it exits.
        subprocess.run(
            [sys.executable, "manage.py", "run_action", action.ref, "--param", "index=2", "--count", "3"],
            cwd=ROOT,
            env=subprocess_env(),
            check=True,
            capture_output=True,
            timeout=60,
        )
        # 2. The API under gunicorn: one at a time, until the queue is full.
        api = {"Authorization": f"Bearer {token.key}"}
        statuses = []
        for index in range(6):
            response = requests.post(
                f"{base}/api/v1/executions",
                json={"action": action.ref, "parameters": {"index": index, "seconds": 0.3}},
                headers=api,
                timeout=10,
            )
            statuses.append(response.status_code)
        # No worker yet: one holds the slot, MAX_QUEUE_LENGTH wait, the rest are refused.
        assert statuses == [201, 201, 201, 201, 429, 429], statuses

        # 3. The admin (another gunicorn worker, most likely) cancels two waiting ones.
        waiting = list(Execution.objects.filter(action=action, status=S.QUEUED).order_by("-queue_seq")[:2])
        session = _admin_session(base, "root", "pw-for-tests")
        changelist = f"{base}/admin/executions/execution/"
        page = session.get(changelist, timeout=10)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert csrf, page.text[:500]
        response = session.post(
            changelist,
            data={
                "action": "cancel_selected",
                "_selected_action": [str(e.pk) for e in waiting],
                "csrfmiddlewaretoken": csrf.group(1),
            },
            headers={"Referer": changelist},
            timeout=10,
        )
        assert response.status_code == 200

        worker_factory(concurrency=2)
        ids = [str(pk) for pk in Execution.objects.filter(action=action).values_list("pk", flat=True)]
        executions = wait_all_terminal(ids, timeout=120)
        by_status = Counter(e.status for e in executions)
        assert by_status[S.CANCELLED] == 2 and by_status[S.FAILED] >= 1 and by_status[S.COMPLETED] >= 1

        # Each scrape is answered by any of the three workers: all agree with the table.
        for _ in range(9):
            samples = scrape(f"{base}/metrics")
            assert value(samples, "attune_executions_enqueued_total", action=action.ref) == len(ids)
            assert value(samples, "attune_queue_rejected_total", action=action.ref, reason="queue_full") == 2
            for status in sorted({*by_status, S.TIMEOUT, S.ABANDONED}):
                exported = value(
                    samples, "attune_executions_terminal_total", action=action.ref, status=status
                )
                assert (exported or 0) == by_status[status], (status, exported)
    finally:
        web.stop()
