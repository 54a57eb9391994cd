from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.exceptions import ImproperlyConfigured

from attune.env import env_bool, env_float, env_int, env_list, env_rate


def test_it_reads_typed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_INT", "5")
    monkeypatch.setenv("X_FLOAT", "2.5")
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    monkeypatch.setenv("X_RATE", " 30 / minute ")
    assert env_int("X_INT", None) == 5
    assert env_float("X_FLOAT", 1.0) == 2.5
    assert env_bool("X_BOOL", False) is True
    assert env_list("X_LIST", []) == ["a", "b", "c"]
    assert env_rate("X_RATE", "1/s") == "30/minute"


def test_it_falls_back_to_the_default_when_unset_or_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("X_INT", raising=False)
    monkeypatch.setenv("X_EMPTY", "")
    assert env_int("X_INT", None) is None
    assert env_int("X_EMPTY", 3) == 3


@pytest.mark.parametrize(
    ("reader", "raw", "message"),
    [
        (lambda: env_int("X", None, minimum=1), "zero", "X must be an integer, got 'zero'"),
        (lambda: env_int("X", None, minimum=1), "0", "X must be >= 1, got 0"),
        (lambda: env_float("X", 1.0, minimum=0.1), "fast", "X must be a number, got 'fast'"),
        (lambda: env_bool("X", False), "maybe", "X must be a boolean"),
        (lambda: env_rate("X", "1/s"), "lots", "X must be a rate such as 100/minute"),
        (lambda: env_rate("X", "1/s"), "0/minute", "X must be a rate such as 100/minute"),
        (lambda: env_rate("X", "1/s"), "5/week", "X must be a rate such as 100/minute"),
    ],
)
def test_it_fails_loudly_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, reader: Callable[[], object], raw: str, message: str
) -> None:
    monkeypatch.setenv("X", raw)
    with pytest.raises(ImproperlyConfigured, match=message):
        reader()
