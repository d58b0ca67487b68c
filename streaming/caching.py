"""Django's cache, called where it costs least.

The default cache lives in this process's memory (LocMemCache): a call takes
microseconds, far less than a trip to a thread, so it runs right on the event loop.
Redis is across the network, through a synchronous client, so calls go to a thread.

Tokens (`api.credentials`) and per-user limits (`accounting.limits`) are read on every
stream start; they are cached for CACHE_SECONDS and dropped as soon as a change is
saved (signal receivers beside each). A change made by a process that shares no cache
with the server (`manage.py shell` without Redis) reaches it within CACHE_SECONDS.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache

T = TypeVar("T")

CACHE_SECONDS = 60


async def call(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run `fn`, which uses the cache and nothing else that blocks."""
    if isinstance(caches["default"], LocMemCache):
        return fn(*args, **kwargs)
    return await sync_to_async(fn)(*args, **kwargs)


async def attempt(
    fn: Callable[..., T], /, *args: Any, default: Any = None, **kwargs: Any
) -> T | Any:
    """`call(fn, ...)`, or `default` if the cache is away (Redis, or the one of its
    servers that holds the key): for lookups that the database can answer too."""
    try:
        return await call(fn, *args, **kwargs)
    except Exception:
        return default
