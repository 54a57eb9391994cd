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

``publish_task`` sends a grant's task on a Redis broker without Celery's
``send_task``, which spends more on routing and assembling the message
than the push onto the queue's list costs.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery
from celery.signals import after_task_publish, before_task_publish
from celery.utils.nodenames import anon_nodename
from kombu import Producer
from kombu.entity import PERSISTENT_DELIVERY_MODE
from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps as json_dumps

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


# The body's third part, Celery's "embed": no workflow around the task.
NO_WORKFLOW: dict[str, None] = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@functools.cache
def _retry_options(app: Celery) -> tuple[bool, dict[str, Any]]:
    # Read once: a lookup in Celery's layered configuration costs more than
    # building the rest of the message.
    return bool(app.conf.task_publish_retry), dict(app.conf.task_publish_retry_policy or {})


def publish_hooked() -> bool:
    """Whether something listens to Celery's publish signals (tracing
    that puts its context into each message's headers, for one): then
    every message goes through ``send_task``, which sends them."""
    return bool(before_task_publish.receivers or after_task_publish.receivers)


def publish_task(
    app: Celery,
    name: str,
    task_id: str,
    args: list[Any],
    *,
    queue: str,
    time_limit: float,
    soft_time_limit: float,
    headers: dict[str, Any],
    argsrepr: str,
    producer: Producer | None = None,
) -> None:
    """Publish the task ``name`` onto the Redis list of ``queue``: the
    message ``send_task`` would make (Celery's protocol 2, as
    ``AMQP.as_task_v2`` builds it), for about 60 % of its instructions.

    ``send_task`` spends about three fifths of a grant's publishing outside
    the Redis call: routing the name, building the message field by field,
    finding a parent task to chain it to, signals. A grant has one shape
    (one positional argument, no workflow, no ETA, a root of its own), so
    this builds it straight and hands it to kombu's producer, with the
    same retries on a lost connection (``task_publish_retry_policy``).
    Only for a Redis broker, which routes the anonymous exchange by the
    queue's name and needs no declaration; a publish signal's receivers
    would be skipped (see ``publish_hooked``).
    """
    message_headers = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [time_limit, soft_time_limit],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": argsrepr,
        "kwargsrepr": "{}",
        "origin": anon_nodename(),
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
        **headers,
    }
    retry, retry_policy = _retry_options(app)
    with app.producer_or_acquire(producer) as publisher:
        publisher.publish(
            json_dumps([args, {}, NO_WORKFLOW]),
            exchange="",
            routing_key=queue,
            headers=message_headers,
            content_type="application/json",
            content_encoding="utf-8",
            correlation_id=task_id,
            reply_to=app.thread_oid,
            delivery_mode=PERSISTENT_DELIVERY_MODE,
            retry=retry,
            retry_policy=retry_policy,
            declare=[],
        )
