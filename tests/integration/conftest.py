"""API personas, each an APIClient that authenticates the way a real client
does (an `Authorization: Bearer <token>` header):

- alice is a superuser: she defines packs and actions (the code they run
  included) and may purge queues;
- bob is a plain user granted `execute` on the `core` and `test` packs: he
  requests executions of their actions and cancels his own;
- charlie is anonymous: he gets nothing but 401.

A module may define fixtures of the same names for its own needs; pytest
uses the nearest.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient


def _client_for(username: str, *, is_staff: bool) -> APIClient:
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    user = User.objects.create_user(username, password=f"{username}-password", is_staff=is_staff)
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.key}")
    client.user = user  # type: ignore[attr-defined]
    return client


@pytest.fixture
def alice(db: None) -> APIClient:
    from django.contrib.auth.models import User

    client = _client_for("alice", is_staff=True)
    User.objects.filter(username="alice").update(is_superuser=True)
    return client


@pytest.fixture
def bob(db: None) -> APIClient:
    from executions.core_pack import load_core_pack
    from executions.models import Grant, GrantPermission, Pack

    client = _client_for("bob", is_staff=False)
    load_core_pack()
    for ref in ("core", "test"):
        pack, _ = Pack.objects.get_or_create(ref=ref)
        Grant.objects.create(permission=GrantPermission.EXECUTE, pack=pack, user=client.user)  # type: ignore[attr-defined]
    return client


@pytest.fixture
def charlie() -> APIClient:
    return APIClient()


@pytest.fixture
def personas(alice: APIClient, bob: APIClient, charlie: APIClient) -> dict[str, Any]:
    return {"alice": alice, "bob": bob, "charlie": charlie}
