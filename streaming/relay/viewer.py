"""One viewer of a stream: who counts as watching, how fast it is fed, and how many
viewers one user may have open in a process.

A viewer is fed only as fast as its connection takes frames: the server tells it when
the socket's send buffer is full (`Flow`, from `server.flow`), and it pulls no frame
until the buffer drains, so a viewer that stops reading holds a bounded amount beyond
the stream's shared text. One that takes nothing for STREAM_VIEWER_STALL_SECONDS is
dropped (it can resume by offset).
"""

import logging
from collections import Counter
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol

from django.conf import settings

from streaming.errors import Refused
from streaming.relay.feed import Feed

logger = logging.getLogger(__name__)

# Where the server puts a request's `Flow` in its ASGI scope.
FLOW_EXTENSION = "relay.flow"


class Flow(Protocol):
    """A connection's back pressure, as the server reports it."""

    async def writable(self, timeout: float) -> bool:
        """Wait until the connection takes more; False if `timeout` passed first."""
        ...


def flow_of(scope: Mapping[str, Any]) -> Flow | None:
    """The request's flow control, when the server offers it (`manage.py serve`)."""
    return (scope.get("extensions") or {}).get(FLOW_EXTENSION)


class TooManyViewers(Refused):
    status = 429
    code = "too_many_viewers"
    message = "You have too many streams open; close some and try again."

    def __init__(self) -> None:
        super().__init__(retry_after=5)


class Audience:
    """The open viewers of each user in this process, up to LIMIT_VIEWERS_PER_USER
    (0: no cap)."""

    def __init__(self) -> None:
        self.open: Counter[int] = Counter()

    def admit(self, user_id: int) -> None:
        """Raise `TooManyViewers` if `user_id` may open no more viewers."""
        cap = settings.LIMIT_VIEWERS_PER_USER
        if cap and self.open[user_id] >= cap:
            raise TooManyViewers()

    def enter(self, user_id: int) -> None:
        self.open[user_id] += 1

    def leave(self, user_id: int) -> None:
        self.open[user_id] -= 1
        if not self.open[user_id]:
            del self.open[user_id]


class Viewer:
    """One viewer's frames of a feed, counted among its viewers (and its user's) from
    the moment it is made until its frames end, it is closed, or it is dropped without
    being read (a response that never started must not keep an orphan alive)."""

    def __init__(
        self,
        feed: Feed,
        frames: AsyncGenerator[str, None],
        *,
        user_id: int,
        audience: Audience,
        flow: Flow | None = None,
    ) -> None:
        feed.attach()
        audience.enter(user_id)
        self._feed: Feed | None = feed
        self._frames = frames
        self._user_id = user_id
        self._audience = audience
        self._flow = flow

    def __aiter__(self) -> "Viewer":
        return self

    async def __anext__(self) -> str:
        try:
            if self._flow is not None and not await self._flow.writable(
                settings.STREAM_VIEWER_STALL_SECONDS
            ):
                self._drop()
            return await anext(self._frames)
        except BaseException:
            self._leave()
            raise

    async def aclose(self) -> None:
        self._leave()
        await self._frames.aclose()

    def _drop(self) -> None:
        logger.warning(
            "stream %s: dropped a viewer (user %s) that took nothing for %s s; "
            "it can resume from its last offset",
            self._feed.stream_id if self._feed else "?",
            self._user_id,
            settings.STREAM_VIEWER_STALL_SECONDS,
        )
        raise StopAsyncIteration

    def _leave(self) -> None:
        if self._feed is not None:
            self._feed.detach()
            self._audience.leave(self._user_id)
            self._feed = None

    def __del__(self) -> None:
        self._leave()
