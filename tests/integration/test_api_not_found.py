"""Every error under /api/ is the API's JSON shape, Django's pages stay elsewhere."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, RequestFactory

from attune.api_errors import server_error

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.mark.parametrize("path", ["/api/", "/api/v1/nope", "/api/v1/executions/1/nope/", "/api/v2/actions"])
def test_an_unknown_api_path_answers_a_json_404(client: Any, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": f"No API endpoint at {path}"}


def test_an_unknown_path_outside_the_api_keeps_the_html_404(client: Any) -> None:
    response = client.get("/nope/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_server_error_under_the_api_is_json_and_says_nothing_internal() -> None:
    response = server_error(RequestFactory().get("/api/v1/executions"))
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert b"Internal server error" in response.content
    assert server_error(RequestFactory().get("/admin/"))["Content-Type"].startswith("text/html")


def test_a_session_post_without_csrf_to_an_unknown_api_path_is_a_json_404(django_user_model: Any) -> None:
    # Django's CSRF check ran first on this plain view and answered its HTML 403 page.
    client = Client(enforce_csrf_checks=True)
    client.force_login(django_user_model.objects.create_user("sam", password="sam-password"))

    response = client.post("/api/v1/nope", {"a": "b"})

    assert response.status_code == 404
    assert response.json() == {"error": "No API endpoint at /api/v1/nope"}


def test_a_session_write_without_csrf_is_a_json_403(django_user_model: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(django_user_model.objects.create_user("sam", password="sam-password"))

    response = client.post("/api/v1/packs", '{"ref": "ops"}', content_type="application/json")

    assert response.status_code == 403
    assert response.json()["error"].startswith("CSRF Failed")
