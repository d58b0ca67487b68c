"""Starting a stream and the task behind it: provider deltas -> normalised text -> hub.

`start()` is the whole start: it refuses while the process drains, checks the user's
limits and writes the rows in one transaction (the in-flight row is the concurrency
slot), and spawns the task, ending the row if that fails. The task belongs to the
process that started it, not to any HTTP response: viewers come and go through
`hub.follow`. It ends when the provider finishes or fails, when someone stops it, or
when nobody has watched it for STREAM_ORPHAN_GRACE_SECONDS; `outcome.finish` then
writes the row, which frees the slot.
"""

import asyncio
import logging
import math
import time
from contextlib import aclosing
from typing import Literal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from streaming import conversations, providers
from streaming.accounting import budgets, costs, limits, tokens
from streaming.conversations import Client, Turn
from streaming.errors import StreamError
from streaming.models import StreamLog
from streaming.providers.base import (
    DEFAULT_OPTIONS,
    Item,
    Message,
    Options,
    Provider,
    ProviderError,
    ReasoningDelta,
    Usage,
    retry_delay,
)
from streaming.relay import background, hub, outcome
from streaming.relay.feed import Broadcast, Ending
from streaming.relay.joined import SWITCH, Normaliser
from streaming.relay.outcome import Progress

logger = logging.getLogger(__name__)

_CANCELLED = {
    "stopped": "The answer was stopped.",
    "orphaned": "Nobody was watching the answer, so it was stopped.",
}
_SHUTDOWN = "The server restarted before the answer was complete; try again."


async def start(
    user: AbstractBaseUser,
    *,
    prompt: str,
    provider: str,
    model: str,
    conversation: int | Literal["new"] | conversations.ChatId | None,
    regenerate: bool = False,
    client: Client = Client(),
    options: Options = DEFAULT_OPTIONS,
    history: list[Message] | None = None,
) -> Turn:
    """Start generating one answer in this process; viewers may follow at once.

    `conversation` and `history` (the messages of a stateless client, for
    `conversation` None) as `conversations.begin` takes them; `options` go to the
    provider, and the row records their system prompt. Raises a `Refused`: `Draining`,
    `limits.LimitExceeded`, `conversations.NoSuchConversation` or
    `NothingToRegenerate`; nothing is written then, and a refused start does not
    count against the starts per minute.
    """
    hub_ = hub.get()
    if hub_.draining:
        raise hub.Draining()
    user_limits, turn = await _admit(
        user,
        prompt=prompt,
        provider=provider,
        model=model,
        conversation=conversation,
        regenerate=regenerate,
        client=client,
        history=history,
        system_prompt=options.system or "",
    )
    try:
        price = costs.price_of(turn.stream.model)
        progress = Progress(budgets.Spending(user.pk, user_limits, price))
        await _spawn(hub_, turn, progress, options)
    except BaseException:
        await outcome.abandon(turn.stream.pk)
        raise
    return turn


@sync_to_async
def _admit(user: AbstractBaseUser, **arguments: object) -> tuple[limits.Limits, Turn]:
    """Check the user's limits and write the stream's rows in one transaction, so
    that simultaneous starts are counted one after another."""
    with transaction.atomic():
        user_limits = limits.admit(user.pk)
        return user_limits, conversations.begin(user, **arguments)


async def _spawn(
    hub_: hub.Hub, turn: Turn, progress: Progress, options: Options
) -> None:
    """Open the stream on the hub and run it in a task of its own; from here the
    task owns the row and writes its outcome when it ends."""
    reasons: list[str] = []

    def cancel(reason: str) -> None:
        reasons.append(reason)
        task.cancel()

    broadcast = await hub_.open(turn.stream.pk, cancel)
    task = background.spawn(_run(turn, broadcast, progress, reasons, options))


async def _run(
    turn: Turn,
    broadcast: Broadcast,
    progress: Progress,
    reasons: list[str],
    options: Options,
) -> None:
    stream = turn.stream
    texts = [options.system or "", *(m["content"] for m in turn.messages)]
    progress.prompt_tokens = sum(tokens.estimate(text) for text in texts)
    ending = Ending(StreamLog.Status.COMPLETED)
    try:
        await _charge_output(stream, broadcast, progress)  # the prompt, so far
        await _generate(stream, broadcast, turn.messages, progress, options)
    except ProviderError as error:
        ending = Ending(StreamLog.Status.ERROR, error=error.error)
    except limits.LimitExceeded as exceeded:
        error = StreamError(
            exceeded.code, exceeded.message, retry_after=exceeded.retry_after
        )
        ending = Ending(StreamLog.Status.CANCELLED, error=error)
    except asyncio.CancelledError:
        ending = _cancelled(reasons[0] if reasons else "stopped")
        raise
    except Exception:
        logger.exception("stream %s failed", stream.pk)
        error = StreamError.of("internal", "Something went wrong on our side.")
        ending = Ending(StreamLog.Status.ERROR, error=error)
    finally:
        await outcome.finish(stream, broadcast, progress, ending)


def _cancelled(reason: str) -> Ending:
    if reason == "shutdown":
        error = StreamError.of("interrupted", _SHUTDOWN)
        return Ending(StreamLog.Status.INTERRUPTED, error=error)
    return Ending(
        StreamLog.Status.CANCELLED, error=StreamError.of(reason, _CANCELLED[reason])
    )


async def _generate(
    stream: StreamLog,
    broadcast: Broadcast,
    messages: list[Message],
    progress: Progress,
    options: Options,
) -> None:
    """Relay the provider's answer into the broadcast, retrying only before the first
    token, of the answer or of the reasoning (after it, a retry would repeat text)."""
    provider = providers.get(stream.provider)
    while True:
        progress.attempts += 1
        try:
            await _relay(stream, broadcast, provider, messages, progress, options)
            return
        except ProviderError as error:
            if progress.ttft_ms is not None:
                raise
            elapsed = time.monotonic() - progress.started
            delay = retry_delay(progress.attempts, error, elapsed=elapsed)
            if delay is None:
                raise
            logger.info(
                "stream %s: attempt %s failed (%s); retrying in %.2fs",
                stream.pk,
                progress.attempts,
                error.code,
                delay,
            )
            await asyncio.sleep(delay)


async def _relay(
    stream: StreamLog,
    broadcast: Broadcast,
    provider: Provider,
    messages: list[Message],
    progress: Progress,
    options: Options,
) -> None:
    now = time.monotonic()
    next_checkpoint = now + settings.STREAM_CHECKPOINT_SECONDS
    spending = progress.spending
    next_budget_check = now + budgets.CHECK_SECONDS if spending.applies else math.inf
    saving: asyncio.Task[None] | None = None  # the checkpoint being written
    incoming = _Incoming(in_reasoning=broadcast.in_reasoning)
    batches = provider.stream(messages, model=stream.model, options=options)
    # Closing it closes the upstream connection even when a cancel lands while this
    # task awaits something else (a budget check), with the stream paused at a yield.
    async with aclosing(batches):
        async for items in batches:
            if not (pieces := incoming.pieces(items, progress)):
                continue
            if not spending.crosses(broadcast.length + sum(map(len, pieces))):
                # What arrived together goes out together: one append, one wake-up.
                broadcast.append(pieces[0] if len(pieces) == 1 else "".join(pieces))
            else:  # count as it crosses: a stream stops within a token of its budget
                for piece in pieces:
                    broadcast.append(piece)
                    if spending.crosses(broadcast.length):
                        next_budget_check = time.monotonic() + budgets.CHECK_SECONDS
                        await _charge_output(stream, broadcast, progress)
            if progress.ttft_ms is None:
                progress.ttft_ms = progress.elapsed_ms()
                await _let_out()
            now = time.monotonic()
            if now >= next_budget_check:
                next_budget_check = now + budgets.CHECK_SECONDS
                await _charge_output(stream, broadcast, progress)
            if now >= next_checkpoint:
                next_checkpoint = now + settings.STREAM_CHECKPOINT_SECONDS
                # Beside the token flow: a slow database must not hold tokens back.
                if saving is None or saving.done():
                    text = str(broadcast.text)
                    saving = background.spawn(outcome.checkpoint(stream.pk, text))


class _Incoming:
    """A provider's items as pieces of the joined text: the answer and the reasoning
    each normalised on its own (a CR that ends a piece of one is not followed by the
    LF that starts a piece of the other), a SWITCH before each change between them."""

    def __init__(self, *, in_reasoning: bool) -> None:
        self._answer, self._reasoning = Normaliser(), Normaliser()
        self._in_reasoning = in_reasoning

    def pieces(self, items: list[Item], progress: Progress) -> list[str]:
        """The non-empty pieces of `items`; a `Usage` goes to `progress`."""
        pieces = []
        for item in items:
            if isinstance(item, Usage):
                progress.usage = item
                continue
            reasoning = isinstance(item, ReasoningDelta)
            text = (self._reasoning if reasoning else self._answer)(item.text)
            if not text:
                continue
            if reasoning != self._in_reasoning:
                self._in_reasoning = reasoning
                text = SWITCH + text
            pieces.append(text)
        return pieces


async def _let_out() -> None:
    """Let the first token reach the viewers' sockets before reading on, so it does
    not wait behind the rest of an answer that arrived at once: woken viewers write on
    the loop's next pass, and Twisted sends what they wrote on the pass after, once
    the selector reports the socket writable."""
    for _ in range(3):
        await asyncio.sleep(0)


async def _charge_output(
    stream: StreamLog, broadcast: Broadcast, progress: Progress
) -> None:
    """Count the prompt and the answer so far against the user's daily budgets
    (raises when spent).

    A cache that is briefly away does not stop the answer: the tokens are counted at
    the next check, or at the end."""
    try:
        await progress.spending.charge(
            input_tokens=progress.prompt_tokens,
            output_tokens=tokens.estimate_length(broadcast.length),
        )
    except limits.LimitExceeded:
        raise
    except Exception:
        logger.warning("stream %s: could not count tokens; will retry", stream.pk)
