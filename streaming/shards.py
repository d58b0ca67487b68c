"""Several Redis servers as one: which server holds each key, and the cache on them.

REDIS_URL may name several servers, comma separated. Each key lives on exactly one,
chosen by its hash tag (the part between the first `{` and the next `}`, or the whole
key without one), as Redis Cluster reads it: CRC16 to one of 16,384 slots, the slots
split evenly among the servers in the order listed. Every key of one stream carries
`stream_tag(id)` and every per-user key `user_tag(id)`, and the channel layer puts a
stream's groups on the shard of its tag (`pools`), so a server that dies takes with it
only the streams and the users' counters that live on it.

Changing the list moves most keys to another server. All of them are short-lived (a
stream's frame log lasts an hour after its last append, cached rows a minute), but a
day's token count starts again from zero for the users whose counter moved.
"""

import functools
from typing import Any

from django.conf import settings
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot


def stream_tag(stream_id: int) -> str:
    return f"{{s:{stream_id}}}"


def user_tag(user_id: int) -> str:
    return f"{{u:{user_id}}}"


def index(key: str, count: int) -> int:
    """The shard, of `count`, that holds `key` (by its hash tag, if it has one)."""
    if count == 1:
        return 0
    return key_slot(key.encode()) * count // REDIS_CLUSTER_HASH_SLOTS


def of(key: str) -> int:
    """The shard of REDIS_URL's servers that holds `key`."""
    return index(key, len(settings.REDIS_URLS))


@functools.cache
def tag_on(shard: int, count: int) -> str:
    """A hash tag whose keys live on `shard` of `count` (to reach each one in turn)."""
    return next(
        tag
        for tag in (f"{{h{n}}}" for n in range(100_000))
        if index(tag, count) == shard
    )


class ShardedRedisCache(RedisCache):
    """Django's Redis cache, each key on the server of its hash tag.

    Django's own RedisCache reads several servers as one primary and its replicas;
    this one gives every server a share of the keys and keeps each key on one.
    """

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _ShardedClient


class _ShardedClient(RedisCacheClient):
    def get_client(self, key: str | None = None, *, write: bool = False) -> Any:
        return self._on(0 if key is None else index(key, len(self._servers)))

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for shard, some in self._grouped(keys).items():
            values = self._on(shard).mget(some)
            loads = self._serializer.loads
            found |= {k: loads(v) for k, v in zip(some, values) if v is not None}
        return found

    def set_many(self, data: dict[str, Any], timeout: int | None) -> None:
        for shard, some in self._grouped(data).items():
            pipeline = self._on(shard).pipeline()
            pipeline.mset({key: self._serializer.dumps(data[key]) for key in some})
            if timeout is not None:
                for key in some:
                    pipeline.expire(key, timeout)
            pipeline.execute()

    def delete_many(self, keys: list[str]) -> None:
        for shard, some in self._grouped(keys).items():
            self._on(shard).delete(*some)

    def clear(self) -> bool:
        return all([self._on(n).flushdb() for n in range(len(self._servers))])

    def _on(self, shard: int) -> Any:
        if shard not in self._pools:
            self._pools[shard] = self._pool_class.from_url(
                self._servers[shard], **self._pool_options
            )
        return self._client(connection_pool=self._pools[shard])

    def _grouped(self, keys: Any) -> dict[int, list[str]]:
        grouped: dict[int, list[str]] = {}
        for key in keys:
            grouped.setdefault(index(key, len(self._servers)), []).append(key)
        return grouped
