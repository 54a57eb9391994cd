"""The process's Redis connection for the gate: a standalone Redis, or a
Redis Cluster when REDIS_URL is a ``redis+cluster://`` URL
(docs/scaling.md)."""

from __future__ import annotations

from functools import lru_cache
from typing import TypeAlias

import redis
from django.conf import settings
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ClusterError, RedisClusterException, SlotNotCoveredError, TryAgainError

from attune.env import redis_cluster_url

RedisClient: TypeAlias = redis.Redis | RedisCluster
# Each connection pings a server it has not heard from for this long before
# reusing the connection, so one dropped by a proxy or a failover is noticed.
HEALTH_CHECK_INTERVAL_SECONDS = 30
# A server that stops answering without closing the connection (a paused
# host, a partition) must fail the call, not hang it: the reaper's loop and
# a request then see an outage they can wait out. Well above the longest
# script (a rebuild of a large queue takes a fraction of a second).
SOCKET_CONNECT_TIMEOUT_SECONDS = 5
SOCKET_TIMEOUT_SECONDS = 30
# What a call raises while Redis, or the cluster primary of its slot, is
# away: connection refused or timed out, the cluster down (CLUSTERDOWN, a
# node restarted and not yet rejoined; ClusterDownError is a ResponseError),
# a slot in the middle of moving, no node known for a slot, or no node of
# the cluster answering at all (redis-py then fails to reload the slot map
# with RedisClusterException). An outage to wait out, not a bug in the caller.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ClusterError,
    TryAgainError,
    SlotNotCoveredError,
    RedisClusterException,
)


def connect(url: str, *, decode_responses: bool = True) -> RedisClient:
    """A client for ``url``: RedisCluster for a ``redis+cluster://`` URL,
    else redis.Redis. Raises ImproperlyConfigured for a malformed cluster URL."""
    cluster = redis_cluster_url(url)
    if cluster is None:
        return redis.Redis.from_url(
            url,
            decode_responses=decode_responses,
            health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
            socket_connect_timeout=SOCKET_CONNECT_TIMEOUT_SECONDS,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_keepalive=True,
        )
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes],
        username=cluster.username,
        password=cluster.password,
        ssl=cluster.ssl,
        decode_responses=decode_responses,
        health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
        socket_connect_timeout=SOCKET_CONNECT_TIMEOUT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_keepalive=True,
    )


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, RedisCluster)


def primaries(client: RedisClient) -> list[redis.Redis]:
    """One plain client per primary (the server itself when standalone),
    for what must run on every node: flushing a test database, reading
    memory figures."""
    if not isinstance(client, RedisCluster):
        return [client]
    return [client.get_redis_connection(node) for node in client.get_primaries()]


@lru_cache(maxsize=1)
def get_redis() -> RedisClient:
    # redis-py's pools notice a fork and reconnect (the cluster client's
    # per-node pools too), so one client per process is safe under
    # Celery's prefork pool.
    return connect(settings.REDIS_URL)
