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

from streaming import background, hub, providers
from streaming.feed import Ending
from streaming.models import StreamLog
from streaming.providers import Message, ProviderError, Usage

logger = logging.getLogger(__name__)

_FINAL_WRITE_BACKOFF = (0.5, 1, 2, 4, 8)

_CANCELLED = {
    "stopped": "The answer was stopped.",
    "orphaned": "Nobody was watching the answer, so it was stopped.",
}


async def start(log: StreamLog, messages: list[Message]) -> None:
    """Start generating `log`'s answer in this process; viewers may follow at once."""
    reasons: list[str] = []

    def cancel(reason: str) -> None:
        reasons.append(reason)
        task.cancel()

    broadcast = await hub.get().open(log.pk, cancel)
    task = background.spawn(_run(log, broadcast, messages, reasons))


@dataclass
class _Progress:
    started: float = field(default_factory=time.monotonic)
    ttft_ms: int | None = None
    usage: Usage | None = None
    pending_cr: bool = False

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
) -> None:
    progress = _Progress()
    provider = providers.get(log.provider)
    ending = Ending(StreamLog.Status.COMPLETED)
    try:
        checkpoint = time.monotonic() + settings.STREAM_CHECKPOINT_SECONDS
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
                if time.monotonic() >= checkpoint:
                    checkpoint = time.monotonic() + settings.STREAM_CHECKPOINT_SECONDS
                    await _save(log.pk, response=str(broadcast.text))
    except ProviderError as error:
        ending = _error_ending(StreamLog.Status.ERROR, error.code, error.message, error)
    except asyncio.CancelledError:
        reason = reasons[0] if reasons else "stopped"
        ending = _error_ending(StreamLog.Status.CANCELLED, reason, _CANCELLED[reason])
        raise
    except Exception:
        logger.exception("stream %s failed", log.pk)
        message = "Something went wrong on our side."
        ending = _error_ending(StreamLog.Status.ERROR, "internal", message)
    finally:
        await _finish(log, broadcast, progress, ending)


def _error_ending(
    status: str, code: str, message: str, error: ProviderError | None = None
) -> Ending:
    payload = {
        "code": code,
        "message": message,
        "retryable": bool(error and error.retryable),
    }
    if error is not None and error.retry_after is not None:
        payload["retry_after"] = error.retry_after
    return Ending(status, error=payload)


async def _finish(
    log: StreamLog, broadcast: hub.Broadcast, progress: _Progress, ending: Ending
) -> None:
    usage = progress.usage or Usage(None, None)
    if ending.status == StreamLog.Status.COMPLETED:
        ending = Ending(ending.status, usage=_usage_dict(usage))
    broadcast.end(ending)
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
        "finished_at": timezone.now(),
    }
    try:
        await _save_final(log.pk, fields)
    finally:
        await hub.get().close(log.pk)
    logger.info(
        "stream finished id=%s user=%s provider=%s model=%s status=%s ttft_ms=%s "
        "duration_ms=%s input_tokens=%s output_tokens=%s chars=%s",
        log.pk,
        log.user_id,
        log.provider,
        log.model,
        ending.status,
        progress.ttft_ms,
        duration_ms,
        usage.input_tokens,
        usage.output_tokens,
        broadcast.length,
    )


def _usage_dict(usage: Usage) -> dict[str, int | None]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}


async def _save_final(stream_id: int, fields: dict[str, object]) -> None:
    """Write the outcome, retrying for a while: a database that is briefly away must
    not cost the answer (viewers already have it from the broadcast)."""
    for delay in _FINAL_WRITE_BACKOFF:
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


@sync_to_async
def _save(stream_id: int, **fields: object) -> None:
    """Update one log row from the shared worker thread, reconnecting once if the
    connection went stale (this thread keeps its connection between streams)."""
    for attempt in range(2):
        try:
            StreamLog.objects.filter(pk=stream_id).update(
                updated_at=timezone.now(), **fields
            )
            return
        except (OperationalError, InterfaceError):
            connection.close()
            if attempt:
                raise
