"""Fan-out of streams to their viewers, in this process and across processes.

The process that runs a generation owns its `Broadcast`; viewers in that process read
it directly. Another process follows through a `Mirror`: it joins the stream's viewer
group on the channel layer and asks the owner (`stream.watch`, with the offset it has)
to publish. The owner then sends the text since that offset at once and new text in
one message per window while watches keep coming. The channel layer may drop
messages, so a mirror that sees a gap in offsets asks again from its own offset: a
lost message becomes a replay, never a missing token.

Channel messages:
    stream.watch {stream_id, offset}   viewer -> owner group "stream.<id>.owner"
    stream.stop  {stream_id}           anyone -> owner group
    stream.text  {stream_id, start, text, length, ending}   owner -> "stream.<id>.viewers"
"""

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from streaming import background, framelog, leases, sse
from streaming.feed import Ending, Feed
from streaming.models import StreamLog
from streaming.providers import ProviderError

logger = logging.getLogger(__name__)

# A viewer process renews its watch this often; the owner publishes for three times as
# long after the last one, so a lost watch costs nothing.
WATCH_INTERVAL = 1.0
# A mirror nobody has read for this long leaves its group.
MIRROR_LINGER = 5.0
# A stream that ended here stays readable this long, for viewers that raced its end
# (their copy of the log row still says `streaming`).
ENDED_LINGER = 5.0
# A replayed error frame says what the live one said.
_RETRYABLE_CODES = {e.code for e in ProviderError.__subclasses__() if e.retryable}


class Draining(Exception):
    """This process is shutting down and takes no new streams."""


def owner_group(stream_id: int) -> str:
    return f"stream.{stream_id}.owner"


def viewers_group(stream_id: int) -> str:
    return f"stream.{stream_id}.viewers"


def ending_of(log: StreamLog) -> Ending | None:
    """The ending a finished stream's viewers see, rebuilt from its log row."""
    if not log.is_finished:
        return None
    if log.status == StreamLog.Status.COMPLETED:
        usage = {"input_tokens": log.input_tokens, "output_tokens": log.output_tokens}
        return Ending(log.status, usage=usage)
    error = {
        "code": log.error_code or log.status,
        "message": log.error_message or "The stream did not complete.",
        "retryable": log.status == StreamLog.Status.INTERRUPTED
        or log.error_code in _RETRYABLE_CODES,
    }
    return Ending(log.status, error=error)


class Broadcast(Feed):
    """A stream generated in this process."""

    def __init__(self, stream_id: int, cancel: Callable[[str], None]):
        super().__init__(stream_id)
        self.cancel = cancel
        self.watched_until = 0.0  # monotonic time until which another process watches
        self.published = 0  # offset up to which text went out to watching processes
        self.logged = 0  # offset up to which the text is in the frame log
        self.logged_at = 0.0
        self.ending_logged = False

    @property
    def is_watched(self) -> bool:
        return self.watched_until > time.monotonic()


class Mirror(Feed):
    """A stream generated in another process, as far as this process has heard."""

    def __init__(self, stream_id: int):
        super().__init__(stream_id)
        self.last_heard = time.monotonic()
        self.last_watch = 0.0
        self.filling = False

    def apply(self, start: int, text: str, length: int, ending: dict | None) -> bool:
        """Take one `stream.text` message; False when it shows a gap to fill."""
        self.last_heard = time.monotonic()
        if start > self.length:
            return False
        if start + len(text) > self.length:
            self.append(text[self.length - start :])
        if ending is not None and self.ending is None:
            if self.length != length:
                return False
            self.end(Ending(**ending))
        return True


class Hub:
    """This process's streams and its one channel on the layer."""

    def __init__(self) -> None:
        self.owned: dict[int, Broadcast] = {}
        self.mirrors: dict[int, Mirror] = {}
        self.ended: dict[int, tuple[float, Broadcast]] = {}
        self.layer = get_channel_layer()
        # The in-memory layer reaches no other process: the streams this process owns
        # need no group on it (its every send and receive sweeps all groups).
        self.local_only = isinstance(self.layer, InMemoryChannelLayer)
        self.channel: str | None = None
        self._started = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None
        self.draining = False  # set on shutdown: no new streams start here

    async def open(self, stream_id: int, cancel: Callable[[str], None]) -> Broadcast:
        broadcast = self.owned[stream_id] = Broadcast(stream_id, cancel)
        if self.local_only:
            self._start_ticker()
            return broadcast
        try:
            await self._join(owner_group(stream_id))
        except Exception:
            # The stream still works in this process; Stop from other processes does
            # not reach it until the channel layer is back.
            logger.exception("stream %s: could not join the channel layer", stream_id)
        return broadcast

    async def log_ending(self, stream_id: int, outcome: dict[str, Any]) -> None:
        """Put the rest of an ended stream and its outcome (the fields of its log row)
        in the frame log, before the database hears of it."""
        if not framelog.enabled():
            return
        broadcast = self.owned[stream_id]
        entry = _unlogged(broadcast, ending=True, outcome=outcome)
        try:
            await framelog.append([entry])
        except Exception:
            logger.exception("stream %s: could not log its ending", stream_id)
        else:
            broadcast.logged = broadcast.length
            broadcast.ending_logged = True

    async def close(self, stream_id: int) -> None:
        broadcast = self.owned[stream_id]
        try:
            if not broadcast.ending_logged and framelog.enabled():
                await framelog.append([_unlogged(broadcast, ending=True)])
            if broadcast.is_watched:
                await self._publish(broadcast, broadcast.published)
            if self.channel is not None and not self.local_only:
                await self.layer.group_discard(owner_group(stream_id), self.channel)
        except Exception:
            logger.exception("stream %s: could not leave the channel layer", stream_id)
        finally:
            del self.owned[stream_id]
            self._remember_ended(broadcast)

    def _remember_ended(self, broadcast: Broadcast) -> None:
        now = time.monotonic()
        for stream_id, (ended_at, _) in list(self.ended.items()):
            if now - ended_at < ENDED_LINGER:
                break
            del self.ended[stream_id]
        self.ended[broadcast.stream_id] = (now, broadcast)

    async def feed(self, log: StreamLog) -> Feed:
        """The feed a viewer of `log` reads: owned here, mirrored, or finished."""
        if log.pk in self.owned:
            return self.owned[log.pk]
        if log.pk in self.ended:
            return self.ended[log.pk][1]
        if log.is_finished:
            return Feed(log.pk, log.response, ending_of(log))
        mirror = self.mirrors.get(log.pk)
        if mirror is None:
            mirror = self.mirrors[log.pk] = Mirror(log.pk)
            try:
                await self._join(viewers_group(log.pk))
                await self._backfill(mirror)
                await self._watch(mirror)
            except Exception:
                logger.exception(
                    "stream %s: could not follow it across processes", log.pk
                )
                del self.mirrors[log.pk]
                error = {
                    "code": "unavailable",
                    "message": "This answer is being generated elsewhere and cannot be "
                    "reached right now; try again shortly.",
                    "retryable": True,
                }
                return Feed(log.pk, log.response, Ending(log.status, error=error))
        return mirror

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

    def known_length(self, log: StreamLog) -> int | None:
        """How much of the answer exists, if this process can tell."""
        if log.pk in self.owned:
            return self.owned[log.pk].length
        if log.pk in self.ended:
            return self.ended[log.pk][1].length
        return len(log.response) if log.is_finished else None

    async def stop(self, stream_id: int) -> None:
        if stream_id in self.owned:
            self.owned[stream_id].cancel("stopped")
        else:
            message = {"type": "stream.stop", "stream_id": stream_id}
            await self.layer.group_send(owner_group(stream_id), message)

    def _start_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = background.spawn(self._tick())

    async def _join(self, group: str) -> None:
        async with self._started:
            self._start_ticker()
            if self.channel is None:
                self.channel = await self.layer.new_channel()
                background.spawn(self._receive())
        await self.layer.group_add(group, self.channel)

    async def _receive(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
                self._dispatch(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("channel layer receive failed; retrying")
                await asyncio.sleep(1)

    def _dispatch(self, message: dict[str, Any]) -> None:
        stream_id = message["stream_id"]
        match message["type"]:
            case "stream.text":
                mirror = self.mirrors.get(stream_id)
                if mirror and not mirror.apply(
                    message["start"],
                    message["text"],
                    message["length"],
                    message["ending"],
                ):
                    logger.info(
                        "stream %s: fan-out gap at offset %s; reading the log",
                        stream_id,
                        mirror.length,
                    )
                    background.spawn(self._fill_gap(mirror))
            case "stream.watch":
                if broadcast := self.owned.get(stream_id):
                    broadcast.watched_until = time.monotonic() + 3 * WATCH_INTERVAL
                    background.spawn(self._publish(broadcast, message["offset"]))
            case "stream.stop":
                if broadcast := self.owned.get(stream_id):
                    broadcast.cancel("stopped")

    async def _publish(self, broadcast: Broadcast, start: int) -> None:
        start = min(start, broadcast.length)
        ending = broadcast.ending.as_dict() if broadcast.ending else None
        message = {
            "type": "stream.text",
            "stream_id": broadcast.stream_id,
            "start": start,
            "text": broadcast.since(start),
            "length": broadcast.length,
            "ending": ending,
        }
        broadcast.published = max(broadcast.published, broadcast.length)
        await self.layer.group_send(viewers_group(broadcast.stream_id), message)

    async def _backfill(self, mirror: Mirror) -> bool:
        """Catch `mirror` up from the frame log; False if the log could not."""
        try:
            record = await framelog.read(mirror.stream_id, mirror.length)
        except Exception:
            logger.exception(
                "stream %s: could not read the frame log", mirror.stream_id
            )
            return False
        if record is None:
            return False
        ending = record.ending.as_dict() if record.ending else None
        mirror.apply(record.start, record.text, record.length, ending)
        return True

    async def _fill_gap(self, mirror: Mirror) -> None:
        if mirror.filling:
            return
        mirror.filling = True
        try:
            # The owner logs text before it publishes it, so the log covers the gap;
            # the owner is asked as well, for what it has not logged yet.
            await self._backfill(mirror)
            await self._watch(mirror, soon=True)
        finally:
            mirror.filling = False

    async def _watch(self, mirror: Mirror, *, soon: bool = False) -> None:
        now = time.monotonic()
        if soon and now - mirror.last_watch < settings.STREAM_FANOUT_WINDOW_MS / 1000:
            return  # one ask per window is enough; the answer covers all gaps
        mirror.last_watch = now
        message = {"type": "stream.watch", "stream_id": mirror.stream_id}
        await self.layer.group_send(
            owner_group(mirror.stream_id), message | {"offset": mirror.length}
        )

    async def _tick(self) -> None:
        """Publish watched streams once a window; reap orphans and silent mirrors."""
        window = settings.STREAM_FANOUT_WINDOW_MS / 1000
        next_chores = 0.0
        failing = False
        while self.owned or self.mirrors:
            await asyncio.sleep(window)
            try:
                await self._log()
                for broadcast in list(self.owned.values()):
                    if broadcast.is_watched and broadcast.published < broadcast.length:
                        await self._publish(broadcast, broadcast.published)
            except Exception:
                # Redis is away: say so once, not every window, and keep retrying.
                if not failing:
                    logger.exception("stream fan-out failed; retrying every window")
                failing = True
            else:
                if failing:
                    logger.warning("stream fan-out works again")
                failing = False
            if time.monotonic() >= next_chores:
                next_chores = time.monotonic() + WATCH_INTERVAL
                self._cancel_orphans()  # needs no Redis: runs during an outage too
                try:
                    await self._tend_mirrors()
                except Exception:
                    logger.exception("could not follow other processes' streams")

    async def _log(self) -> None:
        """Append new text to the frame log: a watched stream's before it is published
        (so the log covers every gap a viewer can see), the others' every
        STREAM_LOG_INTERVAL_MS, all in one round trip."""
        if not framelog.enabled():
            return
        now = time.monotonic()
        interval = settings.STREAM_LOG_INTERVAL_MS / 1000
        due = [
            broadcast
            for broadcast in self.owned.values()
            if broadcast.logged < broadcast.length
            and (broadcast.is_watched or now - broadcast.logged_at >= interval)
        ]
        if not due:
            return
        lengths = [broadcast.length for broadcast in due]
        await framelog.append([_unlogged(broadcast) for broadcast in due])
        for broadcast, length in zip(due, lengths, strict=True):
            broadcast.logged = max(broadcast.logged, length)
            broadcast.logged_at = now

    def _cancel_orphans(self) -> None:
        grace = settings.STREAM_ORPHAN_GRACE_SECONDS
        now = time.monotonic()
        for broadcast in list(self.owned.values()):
            orphaned = not broadcast.viewers and not broadcast.is_watched
            if (
                orphaned
                and broadcast.ending is None
                and now - broadcast.idle_since > grace
            ):
                broadcast.cancel("orphaned")

    async def _tend_mirrors(self) -> None:
        now = time.monotonic()
        for mirror in list(self.mirrors.values()):
            if not mirror.viewers and now - mirror.idle_since > MIRROR_LINGER:
                del self.mirrors[mirror.stream_id]
                await self.layer.group_discard(
                    viewers_group(mirror.stream_id), self.channel
                )
            elif mirror.ending is None:
                if now - mirror.last_heard > 2 * WATCH_INTERVAL:
                    await self._settle_if_finished(mirror)
                if mirror.ending is None:
                    await self._watch(mirror)

    async def _settle_if_finished(self, mirror: Mirror) -> None:
        """End a mirror whose owner has gone quiet: from the frame log, from the log
        row, or by giving up once its lease has surely run out."""
        if await self._backfill(mirror) and mirror.ending is not None:
            return
        log = await _load(mirror.stream_id)
        if log is not None and log.is_finished:
            mirror.apply(0, log.response, len(log.response), ending_of(log).as_dict())
        elif time.monotonic() - mirror.last_heard > settings.STREAM_LEASE_SECONDS:
            error = {
                "code": "interrupted",
                "message": "The server generating this answer stopped responding.",
                "retryable": True,
            }
            mirror.end(Ending(StreamLog.Status.INTERRUPTED, error=error))


def _unlogged(
    broadcast: Broadcast, *, ending: bool = False, outcome: dict[str, Any] | None = None
) -> framelog.Entry:
    """The broadcast's text since it was last logged, and its ending if asked."""
    return framelog.Entry(
        broadcast.stream_id,
        broadcast.logged,
        broadcast.since(broadcast.logged),
        broadcast.ending if ending else None,
        outcome,
    )


@sync_to_async
def _load(stream_id: int) -> StreamLog | None:
    return StreamLog.objects.filter(pk=stream_id).first()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = (
    weakref.WeakKeyDictionary()
)


def get() -> Hub:
    """The hub of the running event loop (one per process under daphne)."""
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        hub = _hubs[loop] = Hub()
        background.spawn(leases.keep(lambda: hub.owned.keys()))
    return _hubs[loop]


async def attach(log: StreamLog) -> Feed:
    """Count a viewer of `log` now, before its response starts (under load that can
    take longer than the orphan grace); `follow(..., feed=)` detaches it."""
    feed = await get().feed(log)
    feed.attach()
    return feed


async def follow(
    log: StreamLog, *, after: int, id_prefix: str = "", feed: Feed | None = None
) -> AsyncIterator[str]:
    """Yield the SSE frames of `log` after offset `after`: the missed text in one frame,
    then live text, then `usage` + `done` or one `error`; a `: ping` comment whenever
    nothing arrived for SSE_HEARTBEAT_SECONDS. Leaving early only detaches the viewer.
    """
    if feed is None:
        feed = await attach(log)
    try:
        offset = after
        while True:
            if text := feed.since(offset):
                offset += len(text)
                yield sse.encode("token", text, id=f"{id_prefix}{offset}")
            elif feed.ending is not None:
                yield _closing(feed.ending)
                return
            elif not await feed.wait(settings.SSE_HEARTBEAT_SECONDS):
                yield sse.comment("ping")
    finally:
        feed.detach()


def _closing(ending: Ending) -> str:
    if ending.error is not None:
        return sse.encode_json("error", ending.error)
    usage = sse.encode_json("usage", ending.usage) if ending.usage else ""
    return usage + sse.encode("done", "[DONE]")
