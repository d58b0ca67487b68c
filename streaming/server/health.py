"""GET /healthz: can this process reach what streams need?"""

import asyncio
import time

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from streaming import pools, shards

_TIMEOUT = 2.0
# A pool may be full for a moment in a burst (callers wait for a connection); full
# for this long, it is exhausted.
_POOL_WAIT = 0.5


@never_cache
@require_GET
async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the cache and a channel-layer round trip all work and no
    Redis pool is exhausted, else 503; the body says which part failed (never how it
    is configured). With several Redis servers the cache is tried on each: while some
    answer, 200 "degraded" (every process shares them, so taking this one out of
    rotation would help no stream; the streams on the others go on)."""
    # First, so the other checks' own connections are not counted.
    redis_pools = await _redis_pools()
    count = max(1, len(settings.REDIS_URLS))
    checks = {"database": _database(), "channel_layer": _channel_layer()}
    tried = [_timed(_cache(shards.tag_on(n, count))) for n in range(count)]
    results = await asyncio.gather(*map(_timed, checks.values()), *tried)
    report = dict(zip(checks, results, strict=False))
    on_shards = results[len(checks) :]
    report["cache"] = {"ok": all(r["ok"] for r in on_shards)}
    report["cache"] |= {"shards": on_shards} if count > 1 else on_shards[0]
    report["redis_pools"] = redis_pools
    status = 200
    if all(result["ok"] for result in report.values()):
        state = "ok"
    elif count > 1 and _degraded(report, on_shards):
        state = "degraded"
    else:
        state, status = "unavailable", 503
    return JsonResponse({"status": state, "checks": report}, status=status)


def _degraded(report: dict[str, dict], on_shards: list[dict]) -> bool:
    """Only some Redis servers fail (the channel layer's check may be on one)."""
    rest = [report["database"], report["redis_pools"]]
    return all(r["ok"] for r in rest) and any(r["ok"] for r in on_shards)


async def _timed(check) -> dict[str, object]:
    started = time.monotonic()
    try:
        async with asyncio.timeout(_TIMEOUT):
            await check
    except Exception as error:  # noqa: BLE001 - any failure is "not ok"
        return {"ok": False, "error": type(error).__name__}
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}


async def _redis_pools() -> dict[str, object]:
    """Whether every Redis pool can hand out a connection within _POOL_WAIT, and how
    many of each pool's connections are in use."""
    deadline = time.monotonic() + _POOL_WAIT
    while (full := pools.exhausted()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    report: dict[str, object] = {"ok": not full, "pools": pools.usage()}
    if full:
        report |= {"error": "exhausted", "exhausted": full}
    return report


@sync_to_async
def _database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


async def _cache(tag: str) -> None:
    key = f"healthz:{tag}"  # on the Redis server that `tag` names
    await cache.aset(key, "ok", 10)
    if await cache.aget(key) != "ok":
        raise RuntimeError("cache did not return what was stored")


async def _channel_layer() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "healthz"})
    message = await layer.receive(channel)
    if message.get("type") != "healthz":
        raise RuntimeError("channel layer returned another message")
