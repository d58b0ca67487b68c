"""What a stream comes to: its row's writes (checkpoints and the final one), its usage,
and its user's budget once it ends. The finished row is what frees the stream's
concurrency slot (`accounting.limits` counts rows in flight)."""

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from streaming.accounting import tokens
from streaming.accounting.budgets import Spending
from streaming.accounting.costs import Price
from streaming.models import StreamLog
from streaming.providers.base import Usage
from streaming.relay import feed, hub, joined
from streaming.relay.feed import Broadcast, Ending

logger = logging.getLogger(__name__)


@dataclass
class Progress:
    """What one stream has done so far, as its outcome counts it."""

    spending: Spending  # against the user's daily budgets
    prompt_tokens: int = 0  # estimated, until the provider reports usage
    started: float = field(default_factory=time.monotonic)
    ttft_ms: int | None = None
    usage: Usage | None = None
    attempts: int = 0

    def elapsed_ms(self) -> int:
        return round((time.monotonic() - self.started) * 1000)


async def checkpoint(stream_id: int, text: str) -> None:
    """Save the answer and the reasoning so far (`text` joins them); a database that
    is briefly away does not stop it."""
    try:
        await _save(stream_id, in_flight=True, **texts(text))
    except Exception:
        logger.warning("stream %s: checkpoint failed; will retry", stream_id)


async def finish(
    stream: StreamLog, broadcast: Broadcast, progress: Progress, ending: Ending
) -> None:
    """End the stream: viewers and the frame log first (`hub.close`), then its row
    (which frees the stream's slot), then the user's budget gets the final count."""
    usage, estimated = _usage(progress, broadcast)
    if ending.status == StreamLog.Status.COMPLETED:
        usage_dict = feed.usage_of(
            usage.input_tokens, usage.output_tokens, usage.reasoning_tokens
        )
        ending = Ending(ending.status, usage=usage_dict)
    fields = _fields(broadcast, progress, ending, usage, estimated=estimated)
    try:
        # In the frame log first: if the database stays away longer than the final
        # write retries, a reaper writes this outcome from there (`leases.reap`).
        await hub.get().close(stream.pk, ending, outcome=fields)
        await _save_final(stream.pk, fields)
    finally:
        await _settle(progress, usage, fields["cost"], stream_id=stream.pk)
    logger.info(
        "stream finished id=%s user=%s provider=%s model=%s status=%s ttft_ms=%s "
        "duration_ms=%s input_tokens=%s output_tokens=%s estimated=%s attempts=%s "
        "chars=%s cost=%s",
        stream.pk,
        stream.user_id,
        stream.provider,
        stream.model,
        ending.status,
        progress.ttft_ms,
        fields["duration_ms"],
        usage.input_tokens,
        usage.output_tokens,
        estimated,
        fields["attempts"],
        broadcast.length,
        fields["cost"],
    )


def _fields(
    broadcast: Broadcast,
    progress: Progress,
    ending: Ending,
    usage: Usage,
    *,
    estimated: bool,
) -> dict[str, Any]:
    """The columns of the stream's finished row."""
    return {
        "status": ending.status,
        **texts(str(broadcast.text)),
        "error_code": ending.error.code if ending.error else "",
        "error_message": ending.error.message if ending.error else "",
        "error_retry_after": ending.error.retry_after if ending.error else None,
        "ttft_ms": progress.ttft_ms,
        "duration_ms": progress.elapsed_ms(),
        "input_tokens": usage.input_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "output_tokens": usage.output_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "tokens_estimated": estimated,
        "cost": _cost(progress.spending.price, usage),
        "attempts": max(progress.attempts, 1),
        "finished_at": timezone.now(),
    }


def texts(text: str) -> dict[str, Any]:
    """The row's fields of a stream's joined text: the answer and the reasoning."""
    answer, reasoning, spans = joined.split(text)
    return {"response": answer, "reasoning": reasoning, "reasoning_spans": spans}


def _usage(progress: Progress, broadcast: Broadcast) -> tuple[Usage, bool]:
    """The provider's usage, with our estimate for whatever it did not report
    (stopped, failed and orphaned streams), and whether the input or the output
    was estimated. The reasoning's count, when the provider gave none (or 0, for
    reasoning it relayed), is estimated from its text (the output counts it either
    way)."""
    reported = progress.usage or Usage(None, None)
    input_tokens, output_tokens = reported.input_tokens, reported.output_tokens
    reasoning_tokens = reported.reasoning_tokens
    estimated = input_tokens is None or output_tokens is None
    if input_tokens is None:
        input_tokens = progress.prompt_tokens if progress.attempts else 0
    if output_tokens is None:
        # The characters of both texts: the SWITCHes between them are neither's.
        output_tokens = tokens.estimate_length(
            broadcast.answer_length + broadcast.reasoning_length
        )
    # Some OpenAI-compatible servers report 0 reasoning tokens beside the reasoning
    # they stream: text that came from no token is no count. An estimate is part of
    # the output, never more than all of it.
    if not reasoning_tokens and broadcast.reasoning_length:
        estimate = tokens.estimate_length(broadcast.reasoning_length)
        reasoning_tokens = min(estimate, output_tokens)
    usage = replace(
        reported,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        reasoning_tokens=reasoning_tokens,
    )
    return usage, estimated


def _cost(price: Price | None, usage: Usage) -> Decimal | None:
    if price is None:
        return None
    return price.cost(
        input_tokens=usage.input_tokens or 0,
        output_tokens=usage.output_tokens or 0,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )


async def _settle(
    progress: Progress, usage: Usage, cost: Decimal | None, *, stream_id: int
) -> None:
    """Replace the running estimate with the final count."""
    try:
        await progress.spending.charge(
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cost=cost,
            final=True,
        )
    except Exception:
        logger.exception("stream %s: could not update the daily budgets", stream_id)


async def abandon(stream_id: int) -> None:
    """End the row of a stream whose task never started (an internal error), so it
    stops counting against its user's concurrent streams at once."""
    try:
        await _save(
            stream_id,
            in_flight=True,
            status=StreamLog.Status.ERROR,
            error_code="internal",
            error_message="Something went wrong on our side.",
            input_tokens=0,
            output_tokens=0,
            finished_at=timezone.now(),
        )
    except Exception:
        # Its lease runs out in STREAM_LEASE_SECONDS: it stops counting then, and a
        # reaper ends it.
        logger.exception("stream %s: could not end its row", stream_id)


async def _save_final(stream_id: int, fields: dict[str, Any]) -> None:
    """Write the outcome, retrying for STREAM_FINAL_WRITE_SECONDS: a database that is
    briefly away must not cost the answer (viewers already have it from the broadcast,
    and with Redis the frame log keeps it for a reaper to write later)."""
    for delay in _backoff(0.5, settings.STREAM_FINAL_WRITE_SECONDS):
        try:
            await _save(stream_id, **fields)
            return
        except (OperationalError, InterfaceError):
            logger.warning(
                "stream %s: final write failed; retrying in %ss", stream_id, delay
            )
            await asyncio.sleep(delay)
    try:
        await _save(stream_id, **fields)
    except Exception:
        logger.exception("stream %s: could not record its outcome", stream_id)


def _backoff(first: float, total: float) -> list[float]:
    """Doubling delays from `first` that add up to at most `total` seconds."""
    delays: list[float] = []
    delay = first
    while sum(delays) + delay <= total:
        delays.append(delay)
        delay *= 2
    return delays


@sync_to_async
def _save(stream_id: int, *, in_flight: bool = False, **fields: object) -> None:
    """Update one row from the shared worker thread, reconnecting once if the
    connection went stale (this thread keeps its connection between streams).
    `in_flight`: only while the row is not finished (a checkpoint never overwrites
    the final answer)."""
    rows = StreamLog.objects.in_flight() if in_flight else StreamLog.objects.all()
    for attempt in range(2):
        try:
            rows.filter(pk=stream_id).update(updated_at=timezone.now(), **fields)
            return
        except (OperationalError, InterfaceError):
            connection.close()
            if attempt:
                raise
