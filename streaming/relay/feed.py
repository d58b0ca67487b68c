"""One stream's normalised text as it grows, and how it ended, for its viewers to read.

The text is the answer and the model's reasoning joined (`relay.joined`).
"""

import asyncio
import math
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streaming.errors import StreamError
from streaming.models import StreamLog
from streaming.relay.joined import Runs

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


class Feed(Runs):
    """What viewers read: the text so far (the answer and the reasoning, joined), the
    ending once there is one, and their wake-ups.

    Each waiting viewer awaits a future of its own (cancelling one leaves the others
    alone), and one timer per feed, not one per wait, ends the waits that last
    longer than their timeout."""

    def __init__(self, stream_id: int, text: str = "", ending: Ending | None = None):
        self.stream_id = stream_id
        super().__init__()
        self.text = Text()
        self.ending = ending
        self.viewers = 0
        self.idle_since = time.monotonic()
        self._waiters: list[tuple[float, asyncio.Future[bool]]] = []
        self._timer: asyncio.TimerHandle | None = None
        if text:
            self.append(text)

    @property
    def length(self) -> int:
        """Of the joined text: the offset the frame log and the fan-out use."""
        return self.text.length

    def since(self, offset: int, limit: int | None = None) -> str:
        return self.text.since(offset, limit)

    def append(self, text: str) -> None:
        self.count(text, self.text.length)
        self.text.append(text)
        self._on_text()

    def end(self, ending: Ending) -> None:
        self.ending = ending
        self.wake()

    async def wait(self, timeout: float) -> bool:
        """Wait for more text or the ending; False if `timeout` seconds passed first."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        deadline = loop.time() + timeout
        self._waiters.append((deadline, waiter))
        if self._timer is None or deadline < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(deadline, self._expire)
        return await waiter

    def attach(self) -> None:
        self.viewers += 1

    def detach(self) -> None:
        self.viewers -= 1
        if not self.viewers:
            self.idle_since = time.monotonic()

    def _on_text(self) -> None:
        self.wake()

    def wake(self) -> None:
        """Wake every waiting viewer: there is more to read."""
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for _, waiter in waiters:
                if not waiter.done():  # a cancelled viewer's is
                    waiter.set_result(True)

    def _expire(self) -> None:
        """End the waits past their deadline; the timer comes back for the next."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now, waiting = loop.time(), []
        for deadline, waiter in self._waiters:
            if waiter.done():
                continue
            if deadline <= now:
                waiter.set_result(False)
            else:
                waiting.append((deadline, waiter))
        self._waiters = waiting
        if waiting:
            self._timer = loop.call_at(min(d for d, _ in waiting), self._expire)


class Broadcast(Feed):
    """A stream generated in this process, and how far its text has gone out.

    New text wakes its viewers at once if they were last woken a window ago or more
    (a first token, a token after a pause); otherwise the stream goes into `due`,
    whose streams the hub wakes once a window: one wake-up and one write per viewer
    per window however fast tokens come."""

    def __init__(
        self,
        stream_id: int,
        cancel: Callable[[str], None],
        *,
        due: set["Broadcast"] | None = None,
        window: float = 0.0,
    ):
        super().__init__(stream_id)
        self.cancel = cancel  # cancel(reason): "stopped", "orphaned" or "shutdown"
        self.watched_until = 0.0  # monotonic time until which another process watches
        self.published = 0  # offset up to which text went out to watching processes
        self.logged = 0  # offset up to which the text is in the frame log
        self.logged_at = 0.0
        self.ending_logged = False
        self._due = due
        self._window = window
        self._woken_at = -math.inf

    @property
    def is_watched(self) -> bool:
        return self.watched_until > time.monotonic()

    def _on_text(self) -> None:
        if self._due is None or time.monotonic() - self._woken_at >= self._window:
            self.wake()
        else:
            self._due.add(self)

    def wake(self) -> None:
        self._woken_at = time.monotonic()
        super().wake()


def wake_due(due: set[Broadcast]) -> None:
    """Wake the viewers of the streams in `due` (text came since their last wake-up),
    as the hub does once a window, and empty it."""
    for broadcast in due:
        broadcast.wake()
    due.clear()
