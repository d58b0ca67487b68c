"""How a viewer's frames are written: the relay's own SSE dialect, and the contract any
other wire protocol (the AI SDK's UI message stream, OpenAI's chunks) implements.

`frames` walks a stream's text and ending the same way for every viewer (`hub.follow`
gives each its walk); the dialect turns each step into the bytes its clients parse.
A dialect holds no text: a stalled viewer keeps only what is already in its socket.
"""

from collections.abc import AsyncIterator
from typing import Any, Protocol

from django.conf import settings

from streaming import sse
from streaming.relay.feed import Ending, Feed
from streaming.relay.joined import SWITCH, Position

# The most characters in one frame: a viewer that is far behind (a resume, a slow
# reader) gets the text in pieces, so what waits in its socket stays small.
FRAME_CHARS = 4096


class Dialect(Protocol):
    def opening(self, meta: dict[str, Any]) -> str:
        """The first frame(s), before any text (`meta`: stream_id, provider, model)."""

    def text(self, text: str, offset: int) -> str:
        """The next piece of the answer, which ends at `offset` characters."""

    def reasoning(self, text: str, offset: int) -> str:
        """The next piece of the model's reasoning, which ends at `offset` characters
        of it."""

    def closing(self, ending: Ending) -> str:
        """The last frame(s): the answer ended as `ending` says."""

    def heartbeat(self) -> str:
        """What keeps an idle connection open (an SSE comment)."""


class Relay:
    """The relay's own SSE: `retry` + `meta`, `token` frames whose id is
    `<id_prefix><offset>` and `reasoning` frames whose id is `<id_prefix>r<offset>`,
    then `usage` + `done` or one `error`."""

    def __init__(self, id_prefix: str = "") -> None:
        self.id_prefix = id_prefix

    def opening(self, meta: dict[str, Any]) -> str:
        return sse.retry(settings.SSE_RETRY_MS) + sse.encode_json("meta", meta)

    def text(self, text: str, offset: int) -> str:
        return sse.encode("token", text, id=f"{self.id_prefix}{offset}")

    def reasoning(self, text: str, offset: int) -> str:
        return sse.encode("reasoning", text, id=f"{self.id_prefix}r{offset}")

    def closing(self, ending: Ending) -> str:
        if ending.error is not None:
            return sse.encode_json("error", ending.error.as_dict())
        usage = sse.encode_json("usage", ending.usage) if ending.usage else ""
        return usage + sse.encode("done", "[DONE]")

    def heartbeat(self) -> str:
        return sse.comment("ping")


async def frames(
    meta: dict[str, Any], feed: Feed, *, after: Position, dialect: Dialect
) -> AsyncIterator[str]:
    """The opening, the text after `after` in pieces of at most FRAME_CHARS, then
    live text, then the closing; a heartbeat whenever nothing arrived for
    SSE_HEARTBEAT_SECONDS. The answer's pieces and the reasoning's go to the
    dialect each with its own offset, in the order they came."""
    yield dialect.opening(meta)
    heartbeat = settings.SSE_HEARTBEAT_SECONDS
    # A mirror may not have reached the client's position yet.
    while (offset := feed.offset_of(after)) is None and feed.ending is None:
        if not await feed.wait(heartbeat):
            yield dialect.heartbeat()
    if offset is None:  # past the end of an answer that ended short
        offset = feed.length
    answer, reasoning, thinking = feed.lengths_at(offset)
    while True:
        if text := feed.since(offset, FRAME_CHARS):
            offset += len(text)
            frames = []
            parts = text.split(SWITCH) if SWITCH in text else (text,)
            for index, part in enumerate(parts):
                if index:  # a SWITCH came before it
                    thinking = not thinking
                if not part:
                    continue
                if thinking:
                    reasoning += len(part)
                    frames.append(dialect.reasoning(part, reasoning))
                else:
                    answer += len(part)
                    frames.append(dialect.text(part, answer))
            yield frames[0] if len(frames) == 1 else "".join(frames)
        elif feed.ending is not None:
            yield dialect.closing(feed.ending)
            return
        elif not await feed.wait(heartbeat):
            yield dialect.heartbeat()
