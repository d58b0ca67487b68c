"""Per-user limits: concurrent streams, stream starts per minute, tokens per day.

Counters live in Django's cache (Redis in production), so they hold across workers,
and every check is one atomic increment, never a read followed by a write: twenty
simultaneous starts against a limit of three start exactly three.
"""

import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from streaming import caching
from streaming.errors import Refused
from streaming.models import UsageLimit

# A concurrency slot leaked by a killed worker frees itself after this long.
_SLOT_TTL = 3600


class LimitExceeded(Refused):
    """Over a per-user limit: 429, with when to try again."""

    status = 429

    def __init__(self, code: str, message: str, retry_after: int):
        super().__init__(message, retry_after=retry_after)
        self.code = code


@dataclass(frozen=True)
class Limits:
    concurrent_streams: int
    starts_per_minute: int
    tokens_per_day: int  # 0: unlimited


def limits_for(user_id: int) -> Limits:
    """The user's limits, from the cache or the database (and then cached)."""
    limits = cache.get(_limits_key(user_id))
    if limits is None:
        limits = _load_limits(user_id)
        cache.set(_limits_key(user_id), limits, caching.CACHE_SECONDS)
    return limits


def _load_limits(user_id: int) -> Limits:
    own = UsageLimit.objects.filter(user_id=user_id).first()

    def pick(field: str, default: int) -> int:
        value = getattr(own, field, None) if own else None
        return default if value is None else value

    return Limits(
        concurrent_streams=pick(
            "concurrent_streams", settings.LIMIT_CONCURRENT_STREAMS
        ),
        starts_per_minute=pick("starts_per_minute", settings.LIMIT_STARTS_PER_MINUTE),
        tokens_per_day=pick("tokens_per_day", settings.LIMIT_TOKENS_PER_DAY),
    )


async def acquire(user_id: int) -> Limits:
    """Take a stream slot for the user and return their limits, or raise
    `LimitExceeded` (nothing is taken). Only the cache is asked, unless it does not
    hold the user's limits yet."""
    limits = await caching.call(_take_slot, user_id, None)
    if limits is None:
        known = await sync_to_async(limits_for)(user_id)
        limits = await caching.call(_take_slot, user_id, known)
    return limits


def _take_slot(user_id: int, limits: Limits | None) -> Limits | None:
    """None when `limits` is not given and the cache does not hold them."""
    limits = limits or cache.get(_limits_key(user_id))
    if limits is None:
        return None
    now = time.time()
    if limits.tokens_per_day:
        used = cache.get(_day_key(user_id, now), 0)
        if used >= limits.tokens_per_day:
            raise _budget_exceeded(now)
    minute = int(now // 60)
    starts = _increment(f"limit:starts:{user_id}:{minute}", ttl=120)
    if starts > limits.starts_per_minute:
        wait = 60 - int(now % 60)
        message = f"At most {limits.starts_per_minute} streams a minute; try again in {wait} s."
        raise LimitExceeded("rate_limited", message, wait)
    slot_key = f"limit:concurrent:{user_id}"
    taken = _increment(slot_key, ttl=_SLOT_TTL)
    cache.touch(slot_key, _SLOT_TTL)
    if taken > limits.concurrent_streams:
        _increment(slot_key, ttl=_SLOT_TTL, by=-1)
        message = (
            f"At most {limits.concurrent_streams} streams at once; "
            "wait for one to finish or stop it."
        )
        raise LimitExceeded("rate_limited", message, 5)
    return limits


async def release(user_id: int) -> None:
    """Give back the slot `acquire` took."""
    await caching.call(_increment, f"limit:concurrent:{user_id}", ttl=_SLOT_TTL, by=-1)


async def charge(user_id: int, tokens: int, *, budget: int) -> None:
    """Add `tokens` (negative to correct an estimate) to today's count; raise
    `LimitExceeded` once it is over `budget` (the user's tokens_per_day; 0: none)."""
    if not tokens:
        return
    now = time.time()
    used = await caching.call(
        _increment, _day_key(user_id, now), ttl=2 * 86400, by=tokens
    )
    if tokens > 0 and budget and used > budget:
        raise _budget_exceeded(now)


def _budget_exceeded(now: float) -> LimitExceeded:
    wait = 86400 - int(now % 86400)
    message = "Today's token budget is spent; it renews at midnight UTC."
    return LimitExceeded("budget_exceeded", message, wait)


def _limits_key(user_id: int) -> str:
    return f"limits:{user_id}"


@receiver([post_save, post_delete], sender=UsageLimit)
def _forget_limits(instance: UsageLimit, **kwargs: object) -> None:
    cache.delete(_limits_key(instance.user_id))


def _day_key(user_id: int, now: float) -> str:
    return f"limit:tokens:{user_id}:{int(now // 86400)}"


def _increment(key: str, *, ttl: int, by: int = 1) -> int:
    # The cache's sync incr: atomic in Redis (INCRBY) and in the local-memory cache
    # (under its lock). Django's async aincr() is a get followed by a set, which would
    # let simultaneous starts all pass.
    try:
        return cache.incr(key, by)
    except ValueError:  # not there yet, or expired: start it (add keeps a racer's)
        cache.add(key, 0, ttl)
        return cache.incr(key, by)
