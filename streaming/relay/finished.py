"""Streams that ended: the ones that just ended here, and finished ones replayed from
their rows, each readable by any number of viewers in this process (`hub.Hub`)."""

import asyncio
import time
import weakref

from streaming.models import StreamLog
from streaming.relay.feed import Broadcast, Feed, ending_of
from streaming.relay.joined import load_recorded

# A stream that ended here stays readable this long, for viewers that raced its end
# (their copy of its row still says `streaming`).
ENDED_LINGER = 5.0


class Ended:
    """Streams that ended here, readable for ENDED_LINGER seconds after their end."""

    def __init__(self) -> None:
        self._ended: dict[int, tuple[float, Broadcast]] = {}

    def add(self, broadcast: Broadcast) -> None:
        now = time.monotonic()
        for stream_id, (ended_at, _) in list(self._ended.items()):
            if now - ended_at < ENDED_LINGER:
                break
            del self._ended[stream_id]
        self._ended[broadcast.stream_id] = (now, broadcast)

    def get(self, stream_id: int) -> Broadcast | None:
        entry = self._ended.get(stream_id)
        return entry[1] if entry else None


class Replays:
    """Finished streams replayed here: one copy of each, read from its row once, for
    all its viewers here; gone with the last of them."""

    def __init__(self) -> None:
        self._feeds: weakref.WeakValueDictionary[int, Feed] = (
            weakref.WeakValueDictionary()
        )
        # Each read under way: its feed, or None if it failed (a waiter reads then).
        self._reading: dict[int, asyncio.Future[Feed | None]] = {}

    async def get(self, stream: StreamLog) -> Feed:
        """Viewers that come at once wait for one read (and copy), done by the first
        with its own connection: a task would wait for one the waiters hold."""
        while (reading := self._reading.get(stream.pk)) is not None:
            if feed := await asyncio.shield(reading):
                return feed
        if feed := self._feeds.get(stream.pk):
            return feed
        reading = self._reading[stream.pk] = asyncio.get_running_loop().create_future()
        feed = None
        try:
            feed = Feed(stream.pk, await load_recorded(stream), ending_of(stream))
            self._feeds[stream.pk] = feed
            return feed
        finally:
            del self._reading[stream.pk]
            reading.set_result(feed)
