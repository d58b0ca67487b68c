"""How a viewer's frames are written: the relay's own SSE dialect, and the contract any
other wire protocol (the AI SDK's UI message stream, OpenAI's chunks) implements.

`hub.follow` walks a stream's text and ending the same way for every viewer; the
dialect turns each step into the bytes its clients parse. A dialect holds no text: a
stalled viewer keeps only what is already in its socket.
"""

from typing import Any, Protocol

from django.conf import settings

from streaming import sse
from streaming.relay.feed import Ending


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
