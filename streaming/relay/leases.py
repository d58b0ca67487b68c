"""Leases on in-flight streams, so a dead process leaves a trace, not a hang.

Each process renews the rows of the streams it runs (`updated_at`) every third of
STREAM_LEASE_SECONDS; any process ends rows whose lease ran out as `interrupted`,
keeping the partial answer of the last checkpoint, or the longer one in the frame log.
A process starts its keeper with `start()` (its ASGI application does, on its first
request), so even a process that runs no stream reaps what a dead one left behind.
"""

import asyncio
import logging
import weakref
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Length, NullIf
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from streaming.accounting import costs, tokens
from streaming.models import StreamLog
from streaming.relay import background, framelog, hub, outcome
from streaming.relay.joined import SWITCH

logger = logging.getLogger(__name__)

# What a reaped row's cost is computed from: its model and counts.
_COUNTS = (
    "model",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
)

INTERRUPTED_MESSAGE = (
    "The server generating this answer stopped; the answer is incomplete."
)


_keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


def start() -> None:
    """Keep this process's leases and reap expired ones from now on (once per loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _keepers:
        _keepers[loop] = background.spawn(keep())


async def keep() -> None:
    """Renew the leases of the streams this process runs and reap expired ones,
    every third of STREAM_LEASE_SECONDS, forever."""
    while True:
        await asyncio.sleep(settings.STREAM_LEASE_SECONDS / 3)
        try:
            await renew(list(hub.get().owned))
            if reaped := await reap():
                logger.warning("ended %s abandoned stream(s) as interrupted", reaped)
        except Exception:
            logger.exception("could not renew or reap stream leases; retrying")


@sync_to_async
def renew(stream_ids: list[int]) -> None:
    if stream_ids:
        StreamLog.objects.in_flight().filter(pk__in=stream_ids).update(
            updated_at=timezone.now()
        )


async def reap() -> int:
    """End every in-flight row whose lease expired; return how many.

    With the frame log, a row whose owner logged an outcome it could not write (the
    database was away for longer than the final write retries) gets that outcome, and
    an interrupted row keeps whatever text reached the log after its last checkpoint.
    """
    expired = await _expired()
    records: dict[int, framelog.Record] = {}
    for stream_id, checkpointed in expired:
        try:
            record = await framelog.read(stream_id)
        except Exception:
            logger.exception("stream %s: could not read its frame log", stream_id)
            continue
        if record is not None and (
            record.outcome or _characters(record.text) > checkpointed
        ):
            records[stream_id] = record
    return await _end([stream_id for stream_id, _ in expired], records)


def _characters(text: str) -> int:
    """The characters of a joined text's answer and reasoning: its SWITCHes are
    neither's (the row keeps the two apart, without them)."""
    return len(text) - text.count(SWITCH)


def _stale():
    cutoff = timezone.now() - timedelta(seconds=settings.STREAM_LEASE_SECONDS)
    return StreamLog.objects.in_flight().filter(updated_at__lt=cutoff)


@sync_to_async
def _expired() -> list[tuple[int, int]]:
    """(id, length of the checkpointed text) of every row whose lease ran out."""
    checkpointed = Length("response") + Length("reasoning")
    return list(_stale().values_list("pk", checkpointed))


@sync_to_async
def _end(stream_ids: list[int], records: dict[int, framelog.Record]) -> int:
    # Each UPDATE re-checks the lease, so processes reaping at once cannot disagree.
    now = timezone.now()
    interrupted = {
        "status": StreamLog.Status.INTERRUPTED,
        "error_code": "interrupted",
        "error_message": INTERRUPTED_MESSAGE,
        "finished_at": now,
        "updated_at": now,
        "input_tokens": Coalesce(F("input_tokens"), tokens.estimate_sql("prompt")),
        "tokens_estimated": True,
    }
    ended = 0
    for stream_id, record in records.items():
        rows = _stale().filter(pk=stream_id)
        if record.outcome is not None:
            final = record.outcome | {
                "finished_at": parse_datetime(record.outcome["finished_at"]),
                "updated_at": now,
            }
            ended += rows.update(**final)
        else:
            texts = outcome.texts(record.text)
            said, thought = len(texts["response"]), len(texts["reasoning"])
            ended += rows.update(
                **interrupted,
                **texts,
                output_tokens=tokens.estimate_length(said + thought),
                reasoning_tokens=tokens.estimate_length(thought) or None,
            )
    rest = [stream_id for stream_id in stream_ids if stream_id not in records]
    if rest:
        ended += (
            _stale()
            .filter(pk__in=rest)
            .update(
                **interrupted,
                output_tokens=tokens.estimate_sql("response", "reasoning"),
                reasoning_tokens=NullIf(tokens.estimate_sql("reasoning"), Value(0)),
            )
        )
    _price(stream_ids)
    return ended


def _price(stream_ids: list[int]) -> None:
    """Give the reaped rows of priced models the cost of their (estimated) usage."""
    if not settings.MODEL_PRICES:
        return
    reaped = StreamLog.objects.filter(
        pk__in=stream_ids, cost__isnull=True, status=StreamLog.Status.INTERRUPTED
    )
    for log in reaped.only(*_COUNTS):
        price = costs.price_of(log.model)
        if price is not None:
            cost = price.cost(**{name: getattr(log, name) or 0 for name in _COUNTS[1:]})
            StreamLog.objects.filter(pk=log.pk).update(cost=cost)
