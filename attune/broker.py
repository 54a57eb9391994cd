"""The Celery transport Attune publishes with.

kombu's Redis channel builds a new ``redis.Redis`` for every message it
publishes (``Channel.conn_or_acquire``); the client itself holds no
connection, yet making one copies its table of ~160 response callbacks,
100-170 µs of CPU per message on a 2-core machine, a third of what a
worker's pool process spends handing off the next grant
(docs/performance.md). A ``redis.Redis`` is safe to share between threads
(each command takes its own connection from the pool), so the channel here
keeps one client per connection pool and reuses it. Everything else is
kombu's Redis transport unchanged.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis

REDIS_SCHEMES = frozenset({"redis", "rediss"})


def transport_for(broker_url: str) -> str:
    """The ``broker_transport`` for ``broker_url``: this module's for a
    plain Redis URL, else the URL's own scheme (RabbitMQ, Sentinel), as
    Celery would choose on its own."""
    scheme = urllib.parse.urlsplit(broker_url).scheme
    if scheme in REDIS_SCHEMES:
        return "attune.broker:RedisTransport"
    return scheme


class RedisChannel(kombu_redis.Channel):  # type: ignore[misc]
    _shared_client: Any = None
    # The pool the shared client was made on: a channel drops its pool when
    # it closes and after a fork, and the client must follow.
    _shared_client_pool: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool
        if self._shared_client is None or self._shared_client_pool is not pool:
            self._shared_client = self._create_client()
            self._shared_client_pool = pool
        yield self._shared_client


class RedisTransport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = RedisChannel
