"""Redis connection pools that wait for a free connection, and what they have in use.

redis-py's default pools raise `MaxConnectionsError` once their 100 connections are
in use: 500 viewers reconnecting at once to a fresh process (a rolling restart) got
503s from the cache's pool, looking up their tokens. These pools hold at most
REDIS_POOL_SIZE connections each and make a caller wait up to
REDIS_POOL_TIMEOUT_SECONDS for one; only then does it fail (a 503 that says so).
Every pool registers itself here, so /healthz can tell when one stays exhausted.

The cache's pool is Django's `RedisCache` `pool_class` (config/settings.py); the frame
log's client and the "core" channel layer build theirs with `asyncio_pool()`. The
"pubsub" layer publishes over one connection at a time and needs no bound. With
several Redis servers, each has its pools, and both layers put a stream's channel
groups on the server that holds its keys (`streaming.shards`).
"""

import asyncio
import re
import threading
import weakref
from typing import Any

import redis
from channels_redis.core import RedisChannelLayer as _CoreLayer
from channels_redis.pubsub import RedisPubSubChannelLayer as _PubSubLayer
from channels_redis.pubsub import RedisPubSubLoopLayer as _PubSubLoopLayer
from channels_redis.utils import _wrap_close
from django.conf import settings
from redis import asyncio as aioredis

from streaming import shards

_Pool = redis.BlockingConnectionPool | aioredis.BlockingConnectionPool
_registered: weakref.WeakKeyDictionary[_Pool, str] = weakref.WeakKeyDictionary()


class CachePool(redis.BlockingConnectionPool):
    """The cache's pool: Django passes it `max_connections` and `timeout` (OPTIONS).

    One per process and URL. Django makes a cache object, and with it a pool, for
    every async context that uses the cache (each running stream's, for its limits):
    an owner of 100 running streams held up to 170 pools, each with its connections.
    """

    _shared: dict[tuple[str, str], "CachePool"] = {}
    _lock = threading.Lock()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _registered[self] = "cache"

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> "CachePool":
        key = (url, repr(sorted(kwargs.items())))
        with cls._lock:
            if key not in cls._shared:
                cls._shared[key] = super().from_url(url, **kwargs)
            return cls._shared[key]


def asyncio_pool(name: str, url: str, **kwargs: Any) -> aioredis.BlockingConnectionPool:
    """A waiting pool of REDIS_POOL_SIZE connections to `url`, reported as `name`."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=settings.REDIS_POOL_SIZE,
        timeout=settings.REDIS_POOL_TIMEOUT_SECONDS,
        **kwargs,
    )
    _registered[pool] = name
    return pool


# A stream's channel groups (`relay.fanout`): "stream.<id>.owner", "stream.<id>.viewers".
_STREAM_GROUP = re.compile(r"(?:^|_)stream\.(\d+)\.")


def _shard_of(name: str, count: int) -> int:
    """A stream's groups go to the shard of its keys; any other name by its hash."""
    if match := _STREAM_GROUP.search(name):
        return shards.index(shards.stream_tag(int(match[1])), count)
    return shards.index(name, count)


class RedisChannelLayer(_CoreLayer):
    """channels-redis's "core" layer on waiting pools (its own pools raise), each
    stream's groups on the shard of its keys."""

    def create_pool(self, index: int) -> aioredis.BlockingConnectionPool:
        host = dict(self.hosts[index])
        return asyncio_pool("channel_layer", host.pop("address"), **host)

    def consistent_hash(self, value: str | bytes) -> int:
        name = value.decode() if isinstance(value, bytes) else value
        return _shard_of(name, self.ring_size)


class RedisPubSubChannelLayer(_PubSubLayer):
    """channels-redis's "pubsub" layer, each stream's groups on the shard of its keys
    (a group lives on one shard: its messages are published and subscribed there)."""

    def _get_layer(self) -> _PubSubLoopLayer:
        loop = asyncio.get_running_loop()
        if loop not in self._layers:
            self._layers[loop] = _ShardedLoopLayer(
                *self._args, **self._kwargs, channel_layer=self
            )
            _wrap_close(self, loop)  # as channels-redis does: flushed as loops close
        return self._layers[loop]


class _ShardedLoopLayer(_PubSubLoopLayer):
    def _get_shard(self, channel_or_group_name: str) -> Any:
        return self._shards[_shard_of(channel_or_group_name, len(self._shards))]


def usage() -> dict[str, dict[str, int]]:
    """Connections in use and the most allowed, summed over each name's pools."""
    report: dict[str, dict[str, int]] = {}
    for pool, name in list(_registered.items()):
        entry = report.setdefault(name, {"in_use": 0, "max": 0})
        # redis-py keeps no public count of the connections handed out.
        entry["in_use"] += len(list(pool._get_in_use_connections()))
        entry["max"] += pool.max_connections
    return report


def exhausted() -> list[str]:
    """The names of the pools that have every connection handed out right now."""
    return sorted(
        name
        for pool, name in list(_registered.items())
        if len(list(pool._get_in_use_connections())) >= pool.max_connections
    )
