"""Per-user limits: concurrent streams, stream starts per minute, tokens and cost per
day.

The database is the record of which streams run, so the first two limits are counted
from it (`admit`): a stream holds its slot exactly while its row is in flight and its
lease is fresh, so whatever ends it (its task, a drain, the reaper) or kills its
process frees the slot, and a refused start writes nothing, so it costs nothing.
The daily budgets are counters in Django's cache (Redis in production), one atomic
increment per count (`count`; a running stream counts through `budgets.Spending`).
"""

import functools
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from streaming import caching, shards
from streaming.accounting import costs
from streaming.errors import Refused
from streaming.models import StreamLog, UsageLimit

_MINUTE = timedelta(seconds=60)


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
    cost_per_day: Decimal = Decimal(0)  # in the currency of MODEL_PRICES; 0: unlimited


@dataclass(frozen=True)
class Spent:
    """Today's counters of one user."""

    tokens: int
    cost: int  # in costs.UNIT


def limits_for(user_id: int) -> Limits:
    """The user's limits, from the cache or the database (and then cached); a cache
    that is away only costs the database query."""
    try:
        limits = cache.get(_limits_key(user_id))
    except Exception:
        return _load_limits(user_id)
    if limits is None:
        limits = _load_limits(user_id)
        try:
            cache.set(_limits_key(user_id), limits, caching.CACHE_SECONDS)
        except Exception:
            pass
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
        cost_per_day=pick("cost_per_day", settings.LIMIT_COST_PER_DAY),
    )


def admit(user_id: int) -> Limits:
    """Return the user's limits if they may start a stream now, or raise
    `LimitExceeded`.

    Call it inside the transaction that then writes the stream's row: it locks the
    user's row until that commits, so simultaneous starts (in any process) are
    counted one after another and twenty of them against a limit of three start
    exactly three. (SQLite takes its write lock when the transaction begins.)
    """
    limits = limits_for(user_id)
    _check_budget(user_id, limits)
    now = timezone.now()
    running, started = _running_and_started(user_id, now)
    if running >= limits.concurrent_streams:
        message = (
            f"At most {limits.concurrent_streams} streams at once; "
            "wait for one to finish or stop it."
        )
        raise LimitExceeded("rate_limited", message, 5)
    if started >= limits.starts_per_minute:
        raise _too_many_starts(user_id, limits, now, started)
    return limits


def _running_and_started(user_id: int, now: datetime) -> tuple[int, int]:
    """The user's streams in flight and those started in the last minute, after
    locking the user's row (PostgreSQL; SQLite's transaction holds its write lock).

    Every start pays for this, so these are two plain statements, not three ORM
    queries: the ORM took about 450 µs to build those, the statements run in 25 µs.
    The counts come after the lock, in a statement of their own, so that they see
    the rows of every start that held it before. A row whose process died stops
    counting as in flight once its lease is stale, even before a reaper ends it.
    """
    lock, counts = _statements()
    fresh = now - timedelta(seconds=settings.STREAM_LEASE_SECONDS)
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        if lock:
            cursor.execute(lock, [user_id])
        cursor.execute(counts, [user_id, adapt(fresh), user_id, adapt(now - _MINUTE)])
        running, started = cursor.fetchone()
    return running, started


@functools.cache
def _statements() -> tuple[str | None, str]:
    """The lock on a user's row (None where there is none to take), and the counts."""
    quote, logs, users = (
        connection.ops.quote_name,
        StreamLog._meta,
        get_user_model()._meta,
    )

    def column(name: str) -> str:
        return quote(logs.get_field(name).column)

    lock = None
    if connection.features.has_select_for_update:
        table, pk = quote(users.db_table), quote(users.pk.column)
        lock = f"SELECT 1 FROM {table} WHERE {pk} = %s FOR UPDATE"
    table, user = quote(logs.db_table), column("user")
    # The status as a literal, so that SQLite uses the partial index of rows in flight.
    counts = (
        f"SELECT (SELECT COUNT(*) FROM {table} WHERE {user} = %s"
        f" AND {column('status')} = '{StreamLog.Status.STREAMING}'"
        f" AND {column('updated_at')} >= %s),"
        f" (SELECT COUNT(*) FROM {table} WHERE {user} = %s"
        f" AND {column('created_at')} > %s)"
    )
    return lock, counts


def _too_many_starts(
    user_id: int, limits: Limits, now: datetime, started: int
) -> LimitExceeded:
    # A start works once enough of the window's rows have left it: the one that
    # brings the count below the limit leaves a minute after it was created.
    window = StreamLog.objects.filter(user_id=user_id, created_at__gt=now - _MINUTE)
    created = window.order_by("created_at").values_list("created_at", flat=True)
    leaving = created[started - limits.starts_per_minute]
    wait = max(1, math.ceil((leaving + _MINUTE - now).total_seconds()))
    limit = limits.starts_per_minute
    message = f"At most {limit} streams a minute; try again in {wait} s."
    return LimitExceeded("rate_limited", message, wait)


def _check_budget(user_id: int, limits: Limits) -> None:
    if not (limits.tokens_per_day or limits.cost_per_day):
        return
    now = time.time()
    keys = _day_key("tokens", user_id, now), _day_key("cost", user_id, now)
    try:
        used = cache.get_many(keys)
    except Exception:
        return  # a cache that is away does not stop starts; the charge counts later
    spent = Spent(used.get(keys[0], 0), used.get(keys[1], 0))
    if spent.tokens >= (limits.tokens_per_day or math.inf) or spent.cost >= (
        costs.units(limits.cost_per_day) or math.inf
    ):
        raise budget_exceeded(spent, limits)


def count(user_id: int, *, tokens: int, cost: int | None) -> Spent:
    """Add `tokens` and `cost` (in costs.UNIT; negative to correct an estimate) to
    today's counters and return them; `cost` None leaves the cost counter alone (0).
    Synchronous: call it through `caching.call`."""
    now = time.time()
    return Spent(
        _add(_day_key("tokens", user_id, now), tokens),
        0 if cost is None else _add(_day_key("cost", user_id, now), cost),
    )


def is_over(spent: Spent, limits: Limits) -> bool:
    """Whether a day's spending went past either budget."""
    return spent.tokens > (limits.tokens_per_day or math.inf) or spent.cost > (
        costs.units(limits.cost_per_day) or math.inf
    )


def budget_exceeded(spent: Spent, limits: Limits) -> LimitExceeded:
    """The refusal for a spent budget; it says which one."""
    now = time.time()
    wait = 86400 - int(now % 86400)
    budget = limits.tokens_per_day
    kind = "token" if budget and spent.tokens >= budget else "cost"
    message = f"Today's {kind} budget is spent; it renews at midnight UTC."
    return LimitExceeded("budget_exceeded", message, wait)


def _limits_key(user_id: int) -> str:
    return f"limits:{shards.user_tag(user_id)}"  # a user's keys on one Redis server


@receiver([post_save, post_delete], sender=UsageLimit)
def _forget_limits(instance: UsageLimit, **kwargs: object) -> None:
    cache.delete(_limits_key(instance.user_id))


def _day_key(counter: str, user_id: int, now: float) -> str:
    return f"limit:{counter}:{shards.user_tag(user_id)}:{int(now // 86400)}"


def _add(key: str, by: int) -> int:
    return _increment(key, ttl=2 * 86400, by=by) if by else cache.get(key, 0)


def _increment(key: str, *, ttl: int, by: int = 1) -> int:
    # The cache's sync incr: atomic in Redis (INCRBY) and in the local-memory cache
    # (under its lock). Django's async aincr() is a get followed by a set, which would
    # let simultaneous charges lose each other's tokens.
    try:
        return cache.incr(key, by)
    except ValueError:  # not there yet, or expired: start it (add keeps a racer's)
        cache.add(key, 0, ttl)
        return cache.incr(key, by)
