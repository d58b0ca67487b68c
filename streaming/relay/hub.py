"""This process's streams, the ones it runs and the ones it follows, and their viewers.

A generation opens its stream here and closes it with its ending; viewers follow any
stream through `Hub.follow`, whichever process runs it. Viewers in the owning process
read the stream's `Broadcast` directly; a stream another process runs is followed
through `fanout`. Once a fan-out window the hub wakes the viewers new text is waiting
for (`feed.Broadcast`), has it logged (`framelog`) and published to watching
processes; once a watch interval it stops streams nobody has watched for
STREAM_ORPHAN_GRACE_SECONDS and tends the mirrors.
"""

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from streaming.errors import Refused
from streaming.models import StreamLog
from streaming.relay import background, dialects, framelog
from streaming.relay.dialects import Dialect
from streaming.relay.fanout import WATCH_INTERVAL, Fanout, owner_group
from streaming.relay.feed import Broadcast, Ending, Feed, wake_due
from streaming.relay.finished import Ended, Replays
from streaming.relay.joined import Position
from streaming.relay.viewer import Audience, Flow, Viewer

logger = logging.getLogger(__name__)


class Draining(Refused):
    """This process is shutting down and takes no new streams."""

    status = 503
    code = "unavailable"
    message = "This server is restarting; try again now."

    def __init__(self) -> None:
        super().__init__(retry_after=1)


class BadOffset(Refused):
    code = "bad_last_event_id"
    message = "Last-Event-ID is not an offset of this stream."


class Hub:
    """The streams of one process (one event loop)."""

    def __init__(self) -> None:
        self.owned: dict[int, Broadcast] = {}
        self.due: set[Broadcast] = set()  # streams with text their viewers await
        self.ended = Ended()
        self.replays = Replays()
        self.audience = Audience()
        layer = get_channel_layer()
        self.fanout = Fanout(layer, self.owned)
        self.writer = framelog.Writer()
        # The in-memory layer reaches no other process: owned streams need no group.
        self.local_only = isinstance(layer, InMemoryChannelLayer)
        self.draining = False  # set on shutdown: no new streams start here
        self._ticker: asyncio.Task[None] | None = None

    async def open(self, stream_id: int, cancel: Callable[[str], None]) -> Broadcast:
        """Register a stream this process starts running; `cancel(reason)` stops it."""
        window = settings.STREAM_FANOUT_WINDOW_MS / 1000
        broadcast = Broadcast(stream_id, cancel, due=self.due, window=window)
        self.owned[stream_id] = broadcast
        self._start_ticker()
        if not self.local_only:
            try:
                await self.fanout.join(owner_group(stream_id))
            except Exception:
                # The stream still works in this process; Stop from other processes
                # does not reach it until the channel layer is back.
                logger.exception(
                    "stream %s: could not join the channel layer", stream_id
                )
        return broadcast

    async def close(
        self, stream_id: int, ending: Ending, *, outcome: dict[str, Any]
    ) -> None:
        """End a stream this process runs: its viewers get `ending`; the frame log gets
        the rest of the text, the ending and `outcome` (the fields of its row) before
        the database does; watching processes get the rest."""
        broadcast = self.owned[stream_id]
        broadcast.end(ending)
        try:
            await self.writer.end(broadcast, outcome)
            if broadcast.is_watched:
                await self.fanout.publish(broadcast, broadcast.published)
            if not self.local_only:
                await self.fanout.leave(owner_group(stream_id))
        except Exception:
            logger.exception("stream %s: could not leave the channel layer", stream_id)
        finally:
            del self.owned[stream_id]
            self.ended.add(broadcast)

    async def follow(
        self,
        stream: StreamLog,
        *,
        user_id: int,
        after: Position | None = None,
        dialect: Dialect | None = None,
        flow: Flow | None = None,
    ) -> Viewer | None:
        """User `user_id`'s `viewer.Viewer` of `stream` (`dialects.frames`, written in
        `dialect`, by default the relay's own SSE), fed as fast as `flow` allows;
        raises `TooManyViewers` past the user's cap. `after`: where a reconnecting
        client is; see `_has_all` for what it may be."""
        self.audience.admit(user_id)
        feed = await self._known(stream)
        if after is not None and feed is not None and _has_all(stream, feed, after):
            return None
        if feed is None:
            self._start_ticker()
            feed = await self.fanout.mirror(stream)
        dialect = dialect or dialects.Relay()
        frames = dialects.frames(
            _meta(stream), feed, after=after or Position(0), dialect=dialect
        )
        return Viewer(feed, frames, user_id=user_id, audience=self.audience, flow=flow)

    async def stop(self, stream_id: int) -> None:
        """Stop a stream, on whichever process runs it."""
        if broadcast := self.owned.get(stream_id):
            broadcast.cancel("stopped")
        else:
            await self.fanout.stop(stream_id)

    async def drain(self, seconds: float) -> None:
        """Stop taking streams, let running ones finish for `seconds`, then end the
        rest as interrupted (their viewers get a retryable error frame)."""
        self.draining = True
        deadline = time.monotonic() + seconds
        while self.owned and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for broadcast in list(self.owned.values()):
            broadcast.cancel("shutdown")
        deadline = time.monotonic() + 10
        while self.owned and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def _known(self, stream: StreamLog) -> Feed | None:
        """The whole of `stream` so far, if this process has it: owned here, just
        ended, or finished (read from its row once for all its viewers here); None
        for a stream another process runs."""
        if feed := self.owned.get(stream.pk) or self.ended.get(stream.pk):
            return feed
        if not stream.is_finished:
            return None
        return await self.replays.get(stream)

    def _start_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = background.spawn(self._tick())

    async def _tick(self) -> None:
        """Once a window, wake viewers of new text, log it and publish it; once a
        watch interval, stop orphans and tend the mirrors, while there are any."""
        window = settings.STREAM_FANOUT_WINDOW_MS / 1000
        next_chores = 0.0
        failing = False
        while self.owned or self.fanout.mirrors:
            await asyncio.sleep(window)
            wake_due(self.due)
            failing = await self._flush(failing=failing)
            if time.monotonic() >= next_chores:
                next_chores = time.monotonic() + WATCH_INTERVAL
                _cancel_orphans(self.owned.values())  # needs no Redis: works in outages
                try:
                    await self.fanout.tend()
                except Exception:
                    logger.exception("could not follow other processes' streams")

    async def _flush(self, *, failing: bool) -> bool:
        """Log new text, then publish it to watching processes; True while failing."""
        problem, unlogged = None, ()
        try:
            await self.writer.flush(self.owned.values())
        except framelog.Unlogged as error:  # a Redis server failed; it holds up only
            problem, unlogged = error, error.stream_ids  # the streams on it
        except Exception as error:
            problem, unlogged = error, set(self.owned)
        # Published once logged, so the log covers every gap a viewer can see.
        logged = [b for b in self.owned.values() if b.stream_id not in unlogged]
        if (problem := await _publish(self.fanout, logged) or problem) is not None:
            if not failing:  # Redis is away: say so once, and keep retrying
                logger.error("stream fan-out failed; retrying", exc_info=problem)
            return True
        if failing:
            logger.warning("stream fan-out works again")
        return False


async def _publish(fanout: Fanout, broadcasts: list[Broadcast]) -> Exception | None:
    """Publish the watched ones' new text, each on its own; the last failure."""
    failed = None
    for broadcast in broadcasts:
        if broadcast.is_watched and broadcast.published < broadcast.length:
            try:
                await fanout.publish(broadcast, broadcast.published)
            except Exception as error:
                failed = error
    return failed


def _cancel_orphans(broadcasts: Iterable[Broadcast]) -> None:
    """Stop the streams nobody has watched for STREAM_ORPHAN_GRACE_SECONDS."""
    grace = settings.STREAM_ORPHAN_GRACE_SECONDS
    now = time.monotonic()
    for broadcast in list(broadcasts):
        orphaned = not broadcast.viewers and not broadcast.is_watched
        if orphaned and broadcast.ending is None and now - broadcast.idle_since > grace:
            broadcast.cancel("orphaned")


def _has_all(stream: StreamLog, feed: Feed, after: Position) -> bool:
    """Whether a client at `after` has all of a finished stream (answer 204, so
    EventSource stops). Raises `BadOffset` past the end of a complete answer; past an
    incomplete one, which a crash may leave shorter than what was seen, the viewer
    gets its ending."""
    offset = feed.offset_of(after)
    incomplete = stream.is_finished and stream.status != StreamLog.Status.COMPLETED
    if offset is None and not incomplete:
        raise BadOffset()
    return offset == feed.length and stream.is_finished


def _meta(stream: StreamLog) -> dict[str, Any]:
    """The `meta` frame's fields: what viewers keep of the row, never the row itself
    (its copy of the answer would stay with every viewer)."""
    return {"stream_id": stream.pk, "provider": stream.provider, "model": stream.model}


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = (
    weakref.WeakKeyDictionary()
)


def get() -> Hub:
    """The hub of the running event loop (one per process under daphne)."""
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = Hub()
    return _hubs[loop]
