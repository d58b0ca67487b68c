"""The task behind one stream: provider deltas -> normalised text -> hub -> stream log.

The task belongs to the process that started it, not to any HTTP response: viewers
come and go through `hub.follow`. It ends when the provider finishes or fails, when
someone stops it, or when nobody has watched it for STREAM_ORPHAN_GRACE_SECONDS.
The log row is written at the start (by the view), every STREAM_CHECKPOINT_SECONDS
and at the end, never per token.
"""

import asyncio
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from streaming import background, hub, limits, providers
from streaming.feed import Ending
from streaming.models import StreamLog
from streaming.providers import Message, ProviderError, Usage

logger = logging.getLogger(__name__)

# How often a running stream counts its tokens against the user's daily budget.
_BUDGET_CHECK_SECONDS = 1.0
_NOT_RETRYABLE = {"retryable": False}

_SHUTDOWN = "The server restarted before the answer was complete; try again."
_CANCELLED = {
    "stopped": "The answer was stopped.",
    "orphaned": "Nobody was watching the answer, so it was stopped.",
}


async def start(log: StreamLog, messages: list[Message], *, budget: int) -> None:
    """Start generating `log`'s answer in this process; viewers may follow at once.
    `budget`: the user's tokens per day (0: unlimited)."""
    reasons: list[str] = []

    def cancel(reason: str) -> None:
        reasons.append(reason)
        task.cancel()

    broadcast = await hub.get().open(log.pk, cancel)
    task = background.spawn(_run(log, broadcast, messages, reasons, budget))


@dataclass
class _Progress:
    prompt_tokens: int = 0  # estimated, until the provider reports usage
    started: float = field(default_factory=time.monotonic)
    ttft_ms: int | None = None
    usage: Usage | None = None
    attempts: int = 0
    charged: int = 0  # tokens counted against the daily budget so far
    budget: int = 0  # the user's tokens per day (0: unlimited)
    pending_cr: bool = False
    saving: asyncio.Task[None] | None = None  # the checkpoint being written

    def normalise(self, text: str) -> str:
        """`\\r\\n` and `\\r` become `\\n`, across delta boundaries too; unencodable
        lone surrogates become U+FFFD, so every offset counts what viewers receive."""
        if self.pending_cr and text.startswith("\n"):
            text = text[1:]
        self.pending_cr = text.endswith("\r")
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if not text.isascii():
            text = text.encode("utf-8", "replace").decode("utf-8")
        return text

    def elapsed_ms(self) -> int:
        return round((time.monotonic() - self.started) * 1000)


async def _run(
    log: StreamLog,
    broadcast: hub.Broadcast,
    messages: list[Message],
    reasons: list[str],
    budget: int,
) -> None:
    progress = _Progress(prompt_tokens=_estimate_messages(messages), budget=budget)
    ending = Ending(StreamLog.Status.COMPLETED)
    try:
        # charge() counts before it raises, so record the charge first.
        progress.charged = progress.prompt_tokens
        await limits.charge(log.user_id, progress.prompt_tokens, budget=progress.budget)
        await _generate(log, broadcast, messages, progress)
    except ProviderError as error:
        ending = _error_ending(StreamLog.Status.ERROR, error.code, error.message, error)
    except limits.LimitExceeded as exceeded:
        ending = Ending(
            StreamLog.Status.CANCELLED, error=exceeded.as_dict() | _NOT_RETRYABLE
        )
    except asyncio.CancelledError:
        reason = reasons[0] if reasons else "stopped"
        if reason == "shutdown":
            ending = _error_ending(
                StreamLog.Status.INTERRUPTED, "interrupted", _SHUTDOWN, retryable=True
            )
        else:
            ending = _error_ending(
                StreamLog.Status.CANCELLED, reason, _CANCELLED[reason]
            )
        raise
    except Exception:
        logger.exception("stream %s failed", log.pk)
        message = "Something went wrong on our side."
        ending = _error_ending(StreamLog.Status.ERROR, "internal", message)
    finally:
        await _finish(log, broadcast, progress, ending)


async def _generate(
    log: StreamLog,
    broadcast: hub.Broadcast,
    messages: list[Message],
    progress: _Progress,
) -> None:
    """Relay the provider's answer into the broadcast, retrying only before the first
    token (after it, a retry would repeat text)."""
    provider = providers.get(log.provider)
    while True:
        progress.attempts += 1
        try:
            await _relay(log, broadcast, provider, messages, progress)
            return
        except ProviderError as error:
            if progress.ttft_ms is not None:
                raise
            elapsed = time.monotonic() - progress.started
            delay = providers.retry_delay(progress.attempts, error, elapsed=elapsed)
            if delay is None:
                raise
            logger.info(
                "stream %s: attempt %s failed (%s); retrying in %.2fs",
                log.pk,
                progress.attempts,
                error.code,
                delay,
            )
            await asyncio.sleep(delay)


async def _relay(
    log: StreamLog,
    broadcast: hub.Broadcast,
    provider: providers.Provider,
    messages: list[Message],
    progress: _Progress,
) -> None:
    now = time.monotonic()
    checkpoint = now + settings.STREAM_CHECKPOINT_SECONDS
    budget_check = now + _BUDGET_CHECK_SECONDS
    deltas = provider.stream(
        messages, model=log.model, max_tokens=settings.MAX_OUTPUT_TOKENS
    )
    # Closing it closes the upstream connection even when a cancel lands while this
    # task awaits something else (a checkpoint), with the stream paused at a yield.
    async with aclosing(deltas):
        async for item in deltas:
            if isinstance(item, Usage):
                progress.usage = item
                continue
            text = progress.normalise(item.text)
            if not text:
                continue
            if progress.ttft_ms is None:
                progress.ttft_ms = progress.elapsed_ms()
            broadcast.append(text)
            now = time.monotonic()
            if now >= budget_check:
                budget_check = now + _BUDGET_CHECK_SECONDS
                await _charge_output(log, broadcast, progress)
            if now >= checkpoint:
                checkpoint = now + settings.STREAM_CHECKPOINT_SECONDS
                # Beside the token flow: a slow database must not hold tokens back.
                if progress.saving is None or progress.saving.done():
                    text = str(broadcast.text)
                    progress.saving = background.spawn(_checkpoint(log.pk, text))


async def _charge_output(
    log: StreamLog, broadcast: hub.Broadcast, progress: _Progress
) -> None:
    """Count the answer so far against the user's daily budget (raises when spent).

    A cache that is briefly away does not stop the answer: the tokens are counted at
    the next check, or at the end."""
    spent = progress.prompt_tokens + limits.estimate_tokens_for_length(broadcast.length)
    try:
        await limits.charge(
            log.user_id, spent - progress.charged, budget=progress.budget
        )
    except limits.LimitExceeded:
        progress.charged = spent  # charge() counted them before it raised
        raise
    except Exception:
        logger.warning("stream %s: could not count tokens; will retry", log.pk)
    else:
        progress.charged = spent


async def _checkpoint(stream_id: int, text: str) -> None:
    """Save the answer so far; a database that is briefly away does not stop it."""
    try:
        await _save(stream_id, in_flight=True, response=text)
    except Exception:
        logger.warning("stream %s: checkpoint failed; will retry", stream_id)


def _estimate_messages(messages: list[Message]) -> int:
    return sum(limits.estimate_tokens(message["content"]) for message in messages)


def _error_ending(
    status: str,
    code: str,
    message: str,
    error: ProviderError | None = None,
    *,
    retryable: bool = False,
) -> Ending:
    payload = {
        "code": code,
        "message": message,
        "retryable": retryable or bool(error and error.retryable),
    }
    if error is not None and error.retry_after is not None:
        payload["retry_after"] = error.retry_after
    return Ending(status, error=payload)


async def _finish(
    log: StreamLog, broadcast: hub.Broadcast, progress: _Progress, ending: Ending
) -> None:
    usage, estimated = _usage(progress, broadcast)
    if ending.status == StreamLog.Status.COMPLETED:
        ending = Ending(ending.status, usage=_usage_dict(usage))
    broadcast.end(ending)
    hub_ = hub.get()
    duration_ms = progress.elapsed_ms()
    error = ending.error or {}
    fields = {
        "status": ending.status,
        "response": str(broadcast.text),
        "error_code": error.get("code", ""),
        "error_message": error.get("message", ""),
        "ttft_ms": progress.ttft_ms,
        "duration_ms": duration_ms,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "tokens_estimated": estimated,
        "attempts": max(progress.attempts, 1),
        "finished_at": timezone.now(),
    }
    try:
        # In the frame log first: if the database stays away longer than the final
        # write retries, a reaper writes this outcome from there (`leases.reap`).
        await hub_.log_ending(log.pk, fields)
        await _save_final(log.pk, fields)
    finally:
        await hub_.close(log.pk)
        await _settle_budget(log, progress, usage)
    logger.info(
        "stream finished id=%s user=%s provider=%s model=%s status=%s ttft_ms=%s "
        "duration_ms=%s input_tokens=%s output_tokens=%s estimated=%s attempts=%s "
        "chars=%s",
        log.pk,
        log.user_id,
        log.provider,
        log.model,
        ending.status,
        progress.ttft_ms,
        duration_ms,
        usage.input_tokens,
        usage.output_tokens,
        estimated,
        fields["attempts"],
        broadcast.length,
    )


def _usage(progress: _Progress, broadcast: hub.Broadcast) -> tuple[Usage, bool]:
    """The provider's usage, with our estimate for whatever it did not report
    (stopped, failed and orphaned streams), and whether anything was estimated."""
    reported = progress.usage or Usage(None, None)
    input_tokens, output_tokens = reported.input_tokens, reported.output_tokens
    estimated = input_tokens is None or output_tokens is None
    if input_tokens is None:
        input_tokens = progress.prompt_tokens if progress.attempts else 0
    if output_tokens is None:
        output_tokens = limits.estimate_tokens_for_length(broadcast.length)
    return Usage(input_tokens, output_tokens), estimated


async def _settle_budget(log: StreamLog, progress: _Progress, usage: Usage) -> None:
    """Replace the running estimate with the final count, and free the stream's slot."""
    try:
        spent = (usage.input_tokens or 0) + (usage.output_tokens or 0)
        await limits.charge(
            log.user_id, spent - progress.charged, budget=progress.budget
        )
    except limits.LimitExceeded:
        pass  # the answer is over; the next start will be refused
    except Exception:
        logger.exception("stream %s: could not update the token budget", log.pk)
    try:
        await limits.release(log.user_id)
    except Exception:
        logger.exception("stream %s: could not free its concurrency slot", log.pk)


def _usage_dict(usage: Usage) -> dict[str, int | None]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}


async def _save_final(stream_id: int, fields: dict[str, object]) -> None:
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
    """Update one log row from the shared worker thread, reconnecting once if the
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
