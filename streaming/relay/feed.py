"""One stream's normalised text as it grows, and how it ended, for its viewers to read.

A stream has two texts, the answer and the model's reasoning (its "thinking"), which
a provider may interleave. They travel as one text in the order they arrived, with
SWITCH at each change from one to the other (the text starts with the answer): the
frame log, the fan-out and every offset they use know nothing of reasoning, and a
viewer reads both in their order. The row keeps them apart (`split`, `join`).
Offsets that clients see count in one of the two texts (`Position`).
"""

import asyncio
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streaming.errors import StreamError
from streaming.models import StreamLog

# Between the answer and the reasoning. Providers' text never holds it: the relay
# replaces U+0000 (which PostgreSQL cannot store either) on the way in.
SWITCH = "\0"

# Chunks are joined into blocks of this many, so a long answer costs about one byte
# per ASCII character rather than one small string object per token.
_BLOCK = 256


@dataclass(frozen=True)
class Ending:
    """How a stream ended: its `StreamLog.Status`, the error, or the usage."""

    status: str
    error: StreamError | None = None
    usage: dict[str, int | None] | None = None

    def as_dict(self) -> dict[str, Any]:
        """As channel messages and the frame log carry it."""
        error = self.error.as_dict() if self.error else None
        return {"status": self.status, "error": error, "usage": self.usage}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Ending":
        error = data.get("error")
        return cls(
            data["status"],
            StreamError.from_dict(error) if error else None,
            data.get("usage"),
        )


@dataclass(frozen=True, slots=True)
class Position:
    """Where a client is in a stream: `offset` characters of the answer, or of the
    reasoning; what it has of the other text is what came before that point."""

    offset: int
    reasoning: bool = False


def usage_of(
    input_tokens: int | None, output_tokens: int | None, reasoning_tokens: int | None
) -> dict[str, int | None]:
    """The usage a completed stream's viewers get (`reasoning_tokens` only when the
    model reasoned)."""
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    if reasoning_tokens:
        usage["reasoning_tokens"] = reasoning_tokens
    return usage


def ending_of(stream: StreamLog) -> Ending | None:
    """The ending a finished stream's viewers see, rebuilt from its row."""
    if not stream.is_finished:
        return None
    if stream.status == StreamLog.Status.COMPLETED:
        usage = usage_of(
            stream.input_tokens, stream.output_tokens, stream.reasoning_tokens
        )
        return Ending(stream.status, usage=usage)
    error = StreamError.of(
        stream.error_code or stream.status,
        stream.error_message or "The stream did not complete.",
        retry_after=stream.error_retry_after,
    )
    return Ending(stream.status, error=error)


TEXT_FIELDS = ("response", "reasoning", "reasoning_spans")


def recorded(stream: StreamLog) -> str:
    """The text of a stream as its row keeps it: the answer and the reasoning, joined."""
    return join(stream.response, stream.reasoning, stream.reasoning_spans)


async def load_recorded(stream: StreamLog) -> str:
    """`recorded(stream)`, read from the database if the row was loaded without its
    text (`.defer(*TEXT_FIELDS)`: a viewer needs no copy of its own)."""
    if not stream.get_deferred_fields() & set(TEXT_FIELDS):
        return recorded(stream)
    row = await StreamLog.objects.filter(pk=stream.pk).values(*TEXT_FIELDS).afirst()
    return (
        join(row["response"], row["reasoning"], row["reasoning_spans"]) if row else ""
    )


def split(text: str) -> tuple[str, str, list[list[int]]]:
    """The answer, the reasoning and the reasoning's spans of a joined text: each span
    `[at, length]` says `length` characters of reasoning came when the answer was
    `at` characters long."""
    if SWITCH not in text:
        return text, "", []
    parts = text.split(SWITCH)
    answer, reasoning = parts[0::2], parts[1::2]
    spans, at = [], 0
    for said, thought in zip(answer, reasoning, strict=False):
        at += len(said)
        spans.append([at, len(thought)])
    return "".join(answer), "".join(reasoning), spans


def join(answer: str, reasoning: str, spans: list[list[int]]) -> str:
    """The text `split` took apart."""
    if not spans:
        return answer
    parts, said, thought = [], 0, 0
    for at, length in spans:
        parts += [answer[said:at], reasoning[thought : thought + length]]
        said, thought = at, thought + length
    # A stream that ends in reasoning ends with it, not with an empty answer.
    tail = [answer[said:]] if said < len(answer) else []
    return SWITCH.join(parts + tail)


class Text:
    """Append-only text that can be read from any offset (code points)."""

    def __init__(self, initial: str = "") -> None:
        self._blocks: list[str] = []
        self._block_ends: list[int] = []
        self._tail: list[str] = []
        self._tail_ends: list[int] = []
        self.length = 0
        if initial:
            self.append(initial)

    def append(self, text: str) -> None:
        self.length += len(text)
        self._tail.append(text)
        self._tail_ends.append(self.length)
        if len(self._tail) >= _BLOCK:
            self._blocks.append("".join(self._tail))
            self._block_ends.append(self.length)
            self._tail, self._tail_ends = [], []

    def since(self, offset: int, limit: int | None = None) -> str:
        """The text after `offset` characters, at most `limit` of them ("" when there
        is none yet)."""
        if offset >= self.length:
            return ""
        end = self.length if limit is None else min(self.length, offset + limit)
        blocks_end = self._block_ends[-1] if self._block_ends else 0
        if offset >= blocks_end:  # the live case: only the tail
            return _slice(self._tail, self._tail_ends, offset, end, blocks_end)
        if end <= blocks_end:
            return _slice(self._blocks, self._block_ends, offset, end, 0)
        head = _slice(self._blocks, self._block_ends, offset, blocks_end, 0)
        return head + _slice(self._tail, self._tail_ends, blocks_end, end, blocks_end)

    def __str__(self) -> str:
        return self.since(0)


def _slice(parts: list[str], ends: list[int], offset: int, end: int, base: int) -> str:
    """The text from `offset` to `end` of `parts`, whose ends are `ends` and whose
    first part starts at `base`; joins only the parts it needs."""
    first = bisect_right(ends, offset)
    last = bisect_left(ends, end, lo=first)
    start = ends[first - 1] if first else base
    return "".join(parts[first : last + 1])[offset - start : end - start]


class Feed:
    """What viewers read: the text so far (the answer and the reasoning, joined), the
    ending once there is one, and a wake-up."""

    def __init__(self, stream_id: int, text: str = "", ending: Ending | None = None):
        self.stream_id = stream_id
        self.text = Text()
        # Where each SWITCH is, and how long the answer and the reasoning were there.
        self._switches: list[tuple[int, int, int]] = []
        self.answer_length = 0
        self.reasoning_length = 0
        self.ending = ending
        self.viewers = 0
        self.idle_since = time.monotonic()
        self._waiter: asyncio.Future[None] | None = None
        if text:
            self.append(text)

    @property
    def length(self) -> int:
        """Of the joined text: the offset the frame log and the fan-out use."""
        return self.text.length

    @property
    def in_reasoning(self) -> bool:
        """Whether the text so far ends in reasoning."""
        return len(self._switches) % 2 == 1

    def since(self, offset: int, limit: int | None = None) -> str:
        return self.text.since(offset, limit)

    def append(self, text: str) -> None:
        if SWITCH in text:
            self._count_runs(text)
        elif self.in_reasoning:
            self.reasoning_length += len(text)
        else:
            self.answer_length += len(text)
        self.text.append(text)
        self._wake()

    def _count_runs(self, text: str) -> None:
        end = self.text.length
        for index, part in enumerate(text.split(SWITCH)):
            if index:
                end += 1
                self._switches.append((end, self.answer_length, self.reasoning_length))
            if self.in_reasoning:
                self.reasoning_length += len(part)
            else:
                self.answer_length += len(part)
            end += len(part)

    def offset_of(self, position: Position) -> int | None:
        """The offset in the joined text right after `position`; None while the text
        does not reach it."""
        wanted = position.offset
        # Each switch ends a run: of answer (the even ones), of reasoning (the odd
        # ones). The position is in the first run of its kind that reaches it.
        for index, (end, answer, reasoning) in enumerate(self._switches):
            if index % 2 == position.reasoning:
                reached = reasoning if position.reasoning else answer
                if reached >= wanted:
                    return end - 1 - (reached - wanted)
        if self.in_reasoning == position.reasoning:
            reached = (
                self.reasoning_length if position.reasoning else self.answer_length
            )
            if reached >= wanted:
                return self.text.length - (reached - wanted)
        return None

    def lengths_at(self, offset: int) -> tuple[int, int, bool]:
        """How much of the answer and of the reasoning the joined text holds before
        `offset`, and whether what follows it is reasoning."""
        answer = reasoning = start = switched = 0
        for end, said, thought in self._switches:
            if end > offset:
                break
            answer, reasoning, start = said, thought, end
            switched += 1
        in_reasoning = switched % 2 == 1
        if in_reasoning:
            return answer, reasoning + offset - start, True
        return answer + offset - start, reasoning, False

    def end(self, ending: Ending) -> None:
        self.ending = ending
        self._wake()

    async def wait(self, timeout: float) -> bool:
        """Wait for more text or the ending; False if `timeout` seconds passed first."""
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        # asyncio.wait leaves the shared future alone when this viewer is cancelled.
        done, _ = await asyncio.wait((self._waiter,), timeout=timeout)
        return bool(done)

    def attach(self) -> None:
        self.viewers += 1

    def detach(self) -> None:
        self.viewers -= 1
        if not self.viewers:
            self.idle_since = time.monotonic()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set_result(None)
            self._waiter = None


class Broadcast(Feed):
    """A stream generated in this process, and how far its text has gone out."""

    def __init__(self, stream_id: int, cancel: Callable[[str], None]):
        super().__init__(stream_id)
        self.cancel = cancel  # cancel(reason): "stopped", "orphaned" or "shutdown"
        self.watched_until = 0.0  # monotonic time until which another process watches
        self.published = 0  # offset up to which text went out to watching processes
        self.logged = 0  # offset up to which the text is in the frame log
        self.logged_at = 0.0
        self.ending_logged = False

    @property
    def is_watched(self) -> bool:
        return self.watched_until > time.monotonic()
