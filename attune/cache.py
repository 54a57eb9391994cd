"""Django's Redis cache on a Redis Cluster.

Django's RedisCache talks to standalone servers only. The API throttles
(its one user here) read and write one key at a time, which a cluster
serves like any server; the calls that span keys are split per slot, and
``clear`` is refused: it would flush every primary, the gate's queues
with them.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.cluster import RedisCluster

from queues.redis_client import connect


class RedisClusterCacheClient(RedisCacheClient):
    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **options)
        # LOCATION is one redis+cluster:// URL, whose commas name startup
        # nodes: RedisCache split it on them.
        self._url = ",".join(servers)
        self._cluster: RedisCluster | None = None

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        if self._cluster is None:
            # Values are pickles: bytes, not decoded text.
            client = connect(self._url, decode_responses=False)
            assert isinstance(client, RedisCluster), "LOCATION must be a redis+cluster:// URL"
            self._cluster = client
        return self._cluster

    def get_many(self, keys: Any) -> dict[Any, Any]:
        keys = list(keys)
        values = self.get_client().mget_nonatomic(keys)
        return {
            key: self._serializer.loads(value)
            for key, value in zip(keys, values, strict=True)
            if value is not None
        }

    def set_many(self, data: dict[Any, Any], timeout: int | None) -> None:
        pipe = self.get_client().pipeline(transaction=False)
        for key, value in data.items():
            pipe.set(key, self._serializer.dumps(value), ex=timeout)
        pipe.execute()

    def clear(self) -> bool:
        raise NotImplementedError("clearing the cache would flush every primary of the cluster")


class RedisClusterCache(RedisCache):
    """settings.CACHES backend for a ``redis+cluster://`` LOCATION."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisClusterCacheClient
