"""The live queue dashboard in a real headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright): a staff user logs in, sees the
same numbers as the API, opens a queue and cancels a waiting execution."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from executions.models import Execution, ExecutionStatus
from executions.services import request_execution

pytestmark = [pytest.mark.acceptance, pytest.mark.browser, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000


@pytest.fixture
def open_page() -> Callable[[], AbstractContextManager[Any]]:
    """Opens a Chromium page for a `with` block. Database work goes before or
    after the block: Playwright's sync API runs an event loop in this
    thread, where Django would treat ORM calls as async-unsafe."""
    if not CHROMIUM.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{CHROMIUM} is required when CI=true: apt-get install chromium (.ci/run does)")
        pytest.skip(f"no browser: {CHROMIUM} is not installed (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    @contextlib.contextmanager
    def page_in_chromium() -> Iterator[Any]:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 860})
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            page.errors = []
            page.on("pageerror", lambda error: page.errors.append(str(error)))
            try:
                yield page
            finally:
                context.close()
                browser.close()
        # The live server closes a request thread's database connection when
        # the browser's keep-alive connection ends; let that happen before
        # the test database is flushed.
        for thread in threading.enumerate():
            if "process_request_thread" in thread.name:
                thread.join(timeout=10)

    return page_in_chromium


def cells(row: Any) -> dict[str, str]:
    return {
        field: row.locator(f'[data-field="{field}"]').inner_text().strip()
        for field in ("active", "limit", "waiting", "oldest", "throughput")
    }


def test_it_shows_the_queues_and_cancels_from_the_page(
    open_page: Any, live_server: Any, make_action: Any, redis_db: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    from queues.stats import flush_once

    User.objects.create_user("alice", password="alice-password", is_staff=True)
    # No worker consumes this action's Celery queue, so the figures hold still.
    busy = make_action(
        "dashboard_busy", concurrency_limit=1, celery_queue="nobody-consumes-this", label="Busy"
    )
    other = make_action("dashboard_other", concurrency_limit=3, celery_queue="nobody-consumes-this")
    ids = [str(request_execution(busy.ref, {"n": n}).pk) for n in range(5)]
    request_execution(other.ref, {})
    # The API serves the persisted rows; a worker's flusher would write them within a second.
    flush_once()

    with open_page() as page:
        page.goto(f"{live_server.url}/dashboard/")
        assert "/admin/login/" in page.url
        page.fill("#id_username", "alice")
        page.fill("#id_password", "alice-password")
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/dashboard/")

        busy_row = page.locator(f'#queues tr[data-action="{busy.ref}"]')
        other_row = page.locator(f'#queues tr[data-action="{other.ref}"]')
        expect(busy_row.locator('[data-field="waiting"]')).to_have_text("4")
        expect(busy_row.locator(".fill")).to_have_attribute("style", "width: 100%;")

        api = page.request.get(f"{live_server.url}/api/v1/queue-stats")
        assert api.ok, api.text()
        stats = {row["action_ref"]: row for row in api.json()["data"]}
        for row, action in ((busy_row, busy), (other_row, other)):
            shown = cells(row)
            expected = stats[action.ref]
            assert shown["waiting"] == str(expected["queue_length"])
            assert shown["active"] == str(expected["active_count"])
            assert shown["limit"] == str(expected["max_concurrent"])
        assert cells(busy_row)["throughput"] == "0"

        # The depth chart fills from the polls: wait for a few, at the top of the scale.
        page.wait_for_function(
            "ref => Number(document.querySelector(`tr[data-action='${ref}'] svg`).dataset.points) >= 3",
            arg=busy.ref,
        )
        expect(busy_row.locator("svg")).to_have_attribute("data-max", "4")
        expect(busy_row.locator("polyline")).not_to_have_attribute("points", "")

        busy_row.click()
        waiting = page.locator("#waiting tbody tr[data-execution]")
        expect(waiting).to_have_count(4)
        assert waiting.evaluate_all("rows => rows.map(r => r.dataset.execution)") == ids[1:]
        assert waiting.locator('[data-field="position"]').all_inner_texts() == ["1", "2", "3", "4"]
        expect(page.locator("#active tbody tr[data-execution]")).to_have_count(1)
        page.screenshot(path=str(artifacts_dir / "dashboard.png"), full_page=True)

        page.locator(f'#waiting tr[data-execution="{ids[2]}"] button.cancel').click()

        expect(page.locator(f'#waiting tr[data-execution="{ids[2]}"]')).to_have_count(0)
        expect(page.locator("#detail-message")).to_have_text(f"Execution {ids[2]} is cancelled.")
        expect(waiting).to_have_count(3)
        assert waiting.evaluate_all("rows => rows.map(r => r.dataset.execution)") == [ids[1], ids[3], ids[4]]
        assert waiting.locator('[data-field="position"]').all_inner_texts() == ["1", "2", "3"]
        expect(busy_row.locator('[data-field="waiting"]')).to_have_text("3")
        expect(busy_row.locator('[data-field="throughput"]')).to_have_text("1")
        page_errors = page.errors

    assert page_errors == []
    assert Execution.objects.get(pk=ids[2]).status == S.CANCELLED
    assert [e.status for e in Execution.objects.filter(pk__in=[ids[1], ids[3], ids[4]])] == [S.QUEUED] * 3


def test_the_api_docs_list_the_operations_with_the_network_blocked(
    open_page: Any, live_server: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    User.objects.create_user("olga", password="olga-password", is_staff=True)
    local = live_server.url
    blocked: list[str] = []

    def only_local(route: Any) -> None:
        # As on a machine without internet: anything not served by Attune fails.
        if route.request.url.startswith(local):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    with open_page() as page:
        page.route("**/*", only_local)
        page.goto(f"{local}/admin/login/?next=/api/docs/")
        page.fill("#id_username", "olga")
        page.fill("#id_password", "olga-password")
        page.click("input[type=submit]")
        page.wait_for_url(f"{local}/api/docs/")

        operations = page.locator(".opblock-summary-path")
        expect(operations.first).to_be_visible()
        paths = set(operations.all_inner_texts())
        page.screenshot(path=str(artifacts_dir / "api-docs-offline.png"), full_page=True)
        page_errors = page.errors

    assert {"/api/v1/executions", "/api/v1/actions/{ref}", "/api/v1/queue-stats"} <= {
        path.replace("\u200b", "") for path in paths
    }, paths
    assert blocked == [] and page_errors == []
