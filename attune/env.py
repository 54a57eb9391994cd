"""Typed reading of settings from the environment.

A bad value stops the process at start-up with a message naming the
variable, rather than surfacing later as a confusing runtime error.
"""

import os
import re
import urllib.parse
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int | None, *, minimum: int | None = None) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")


def env_rate(name: str, default: str) -> str:
    """A request rate in DRF's form: ``<count>/<second|minute|hour|day>``."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    match = _RATE.match(raw)
    if match is None or int(match.group(1)) < 1:
        raise ImproperlyConfigured(
            f"{name} must be a rate such as 100/minute (per second, minute, hour or day), got {raw!r}"
        )
    return f"{match.group(1)}/{match.group(2)}"


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


@dataclass(frozen=True)
class RedisClusterURL:
    """Where a Redis Cluster is and how to log in: ``nodes`` are the
    startup nodes (any reachable one is enough; the client learns the
    others and the slot map from it)."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    ssl: bool = False


CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}


def redis_cluster_url(url: str, *, name: str = "REDIS_URL") -> RedisClusterURL | None:
    """The cluster a ``redis+cluster://[user:password@]host:port[,host:port...]``
    URL names (``rediss+cluster://`` for TLS); None for any other URL.
    Raises ImproperlyConfigured, naming ``name``, for a malformed one."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in CLUSTER_SCHEMES:
        return None
    authority, _, path = rest.partition("/")
    if path.split("?")[0] not in ("", "0"):
        # A cluster has database 0 only.
        raise ImproperlyConfigured(f"{name}: a Redis Cluster has only database 0, got {url!r}")
    userinfo, _, hosts = authority.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes = []
    for host in hosts.split(","):
        parts = urllib.parse.urlsplit(f"//{host.strip()}")
        try:
            port = parts.port or 6379
        except ValueError:
            port = 0
        if not parts.hostname or not 0 < port < 65536:
            raise ImproperlyConfigured(f"{name}: {host!r} is not host:port in {url!r}")
        nodes.append((parts.hostname, port))
    return RedisClusterURL(
        nodes=tuple(nodes),
        username=urllib.parse.unquote(username) or None,
        password=urllib.parse.unquote(password) or None,
        ssl=CLUSTER_SCHEMES[scheme.lower()],
    )
