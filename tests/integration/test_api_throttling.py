"""The API's throttles: past the rate, 429 in the API's error shape with
Retry-After, counted per user (a token's owner) and per IP without one, in
Redis so every web process shares the count."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _rates(user: str, anon: str) -> Any:
    rest = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": user, "anon": anon}}
    return override_settings(REST_FRAMEWORK=rest)


def test_a_user_past_the_rate_gets_429_with_retry_after(
    alice: APIClient, bob: APIClient, redis_db: Any
) -> None:
    with _rates(user="3/minute", anon="100/minute"):
        allowed = [bob.get("/api/v1/packs").status_code for _ in range(3)]
        refused = bob.get("/api/v1/packs")
        someone_else = alice.get("/api/v1/packs")

    assert allowed == [200, 200, 200]
    assert refused.status_code == 429
    assert 50 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["error"].startswith("Request was throttled. Expected available in ")
    assert someone_else.status_code == 200


def test_requests_without_credentials_are_counted_per_ip(redis_db: Any) -> None:
    first, second = APIClient(REMOTE_ADDR="10.0.0.1"), APIClient(REMOTE_ADDR="10.0.0.2")
    with _rates(user="100/minute", anon="2/minute"):
        statuses = [first.get("/api/v1/packs").status_code for _ in range(3)]
        other_ip = second.get("/api/v1/packs").status_code

    assert statuses == [401, 401, 429]
    assert other_ip == 401
