"""The Python callables behind the built-in `core` pack."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from workers.exceptions import ActionError


def noop() -> None:
    return None


def echo(message: str = "") -> dict[str, str]:
    return {"message": message}


def sleep(seconds: float = 1.0) -> dict[str, float]:
    time.sleep(float(seconds))
    return {"slept": float(seconds)}


def fail(message: str = "core.fail always fails") -> None:
    raise ActionError(message)


def http_request(
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    request = urllib.request.Request(
        url, method=method.upper(), headers=headers or {}, data=body.encode() if body is not None else None
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read(1024 * 1024).decode("utf-8", errors="replace")
            return {"status_code": response.status, "headers": dict(response.headers), "body": payload}
    except urllib.error.HTTPError as exc:
        raise ActionError(
            f"HTTP {exc.code} from {url}",
            result={"status_code": exc.code, "body": exc.read(65536).decode("utf-8", errors="replace")},
        ) from exc
    except (urllib.error.URLError, TimeoutError) as exc:
        raise ActionError(f"Request to {url} failed: {exc}") from exc


def json_dumps_safe(value: Any) -> Any:
    """Return value if JSON can store it, else its repr."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
