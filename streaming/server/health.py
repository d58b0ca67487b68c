"""GET /healthz: can this process reach what streams need?"""

import asyncio
import time

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

_TIMEOUT = 2.0


@never_cache
@require_GET
async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the cache and a channel-layer round trip all work, else
    503; the body says which part failed (never how it is configured)."""
    checks = {
        "database": _database(),
        "cache": _cache(),
        "channel_layer": _channel_layer(),
    }
    results = await asyncio.gather(*(_timed(check) for check in checks.values()))
    report = dict(zip(checks, results, strict=True))
    healthy = all(result["ok"] for result in report.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": report},
        status=200 if healthy else 503,
    )


async def _timed(check) -> dict[str, object]:
    started = time.monotonic()
    try:
        async with asyncio.timeout(_TIMEOUT):
            await check
    except Exception as error:  # noqa: BLE001 - any failure is "not ok"
        return {"ok": False, "error": type(error).__name__}
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}


@sync_to_async
def _database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


async def _cache() -> None:
    await cache.aset("healthz", "ok", 10)
    if await cache.aget("healthz") != "ok":
        raise RuntimeError("cache did not return what was stored")


async def _channel_layer() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "healthz"})
    message = await layer.receive(channel)
    if message.get("type") != "healthz":
        raise RuntimeError("channel layer returned another message")
