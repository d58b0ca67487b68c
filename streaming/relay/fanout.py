"""The cross-process protocol: streams followed from another process than their own.

The process that runs a generation owns its `Broadcast`. Another process follows it
through a `Mirror`: it joins the stream's viewer group on the channel layer and asks
the owner (`stream.watch`, with the offset it has) to publish. The owner then sends
the text since that offset at once, and new text once a window while watches keep
coming. The channel layer may drop messages, so a mirror that sees a gap in offsets
catches up from the frame log and asks again from its own offset: a lost message
becomes a replay, never a missing token.

Channel messages, each handled by the `_on_<type>` method of its name:
    stream.watch {stream_id, offset}   viewer -> owner group "stream.<id>.owner"
    stream.stop  {stream_id}           anyone -> owner group
    stream.text  {stream_id, start, text, length, ending}   owner -> "stream.<id>.viewers"
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from streaming.errors import StreamError
from streaming.models import StreamLog
from streaming.relay import background, framelog
from streaming.relay.feed import Broadcast, Ending, Feed, ending_of
from streaming.relay.joined import load_recorded, recorded

logger = logging.getLogger(__name__)

# A viewer process renews its watch this often; the owner publishes for three times as
# long after the last one, so a lost watch costs nothing.
WATCH_INTERVAL = 1.0
# A mirror nobody has read for this long leaves its group.
MIRROR_LINGER = 5.0


def owner_group(stream_id: int) -> str:
    return f"stream.{stream_id}.owner"


def viewers_group(stream_id: int) -> str:
    return f"stream.{stream_id}.viewers"


class Mirror(Feed):
    """A stream generated in another process, as far as this process has heard."""

    def __init__(self, stream_id: int):
        super().__init__(stream_id)
        self.last_heard = time.monotonic()
        self.last_watch = 0.0
        self.filling = False

    def apply(self, start: int, text: str, length: int, ending: Ending | None) -> bool:
        """Take text that starts at offset `start`; False when it shows a gap."""
        self.last_heard = time.monotonic()
        if start > self.length:
            return False
        if start + len(text) > self.length:
            self.append(text[self.length - start :])
        if ending is not None and self.ending is None:
            if self.length != length:
                return False
            self.end(ending)
        return True


class Fanout:
    """This process's one channel on the layer, and the mirrors it keeps."""

    def __init__(self, layer: Any, owned: Mapping[int, Broadcast]) -> None:
        self.layer = layer
        self.owned = owned  # the hub's registry: the streams this process runs
        self.mirrors: dict[int, Mirror] = {}
        self.channel: str | None = None
        self._receiving: asyncio.Task[None] | None = None
        self._started = asyncio.Lock()

    # -- joining and leaving

    async def join(self, group: str) -> None:
        async with self._started:
            if self.channel is None:
                self.channel = await self.layer.new_channel()
                self._receiving = background.spawn(self._receive())
        await self.layer.group_add(group, self.channel)

    async def leave(self, group: str) -> None:
        if self.channel is not None:
            await self.layer.group_discard(group, self.channel)

    # -- the owner's side

    async def publish(self, broadcast: Broadcast, start: int) -> None:
        """Send watching processes the broadcast's text from `start`, and its ending."""
        start = min(start, broadcast.length)
        message = {
            "type": "stream.text",
            "stream_id": broadcast.stream_id,
            "start": start,
            "text": broadcast.since(start),
            "length": broadcast.length,
            "ending": broadcast.ending.as_dict() if broadcast.ending else None,
        }
        broadcast.published = max(broadcast.published, broadcast.length)
        await self.layer.group_send(viewers_group(broadcast.stream_id), message)

    async def stop(self, stream_id: int) -> None:
        """Ask whichever process owns the stream to stop it."""
        message = {"type": "stream.stop", "stream_id": stream_id}
        await self.layer.group_send(owner_group(stream_id), message)

    # -- the viewer's side

    async def mirror(self, stream: StreamLog) -> Feed:
        """The mirror of a stream another process runs; joins it on first use."""
        if mirror := self.mirrors.get(stream.pk):
            return mirror
        mirror = self.mirrors[stream.pk] = Mirror(stream.pk)
        try:
            await self.join(viewers_group(stream.pk))
            await backfill(mirror)
            await self._watch(mirror)
        except Exception:
            logger.exception(
                "stream %s: could not follow it across processes", stream.pk
            )
            del self.mirrors[stream.pk]
            text = await load_recorded(stream)
            return Feed(stream.pk, text, _unreachable(stream.status))
        return mirror

    async def tend(self) -> None:
        """Once a watch interval: leave mirrors nobody reads, renew the others' watch,
        and settle those whose owner went quiet; each on its own, so a Redis server
        that fails holds up only the streams on it. Raises the last failure."""
        now, failed = time.monotonic(), None
        for mirror in list(self.mirrors.values()):
            try:
                await _tend(self, mirror, now)
            except Exception as error:
                failed = error
        if failed is not None:
            raise failed

    async def _watch(self, mirror: Mirror, *, soon: bool = False) -> None:
        now = time.monotonic()
        if soon and now - mirror.last_watch < settings.STREAM_FANOUT_WINDOW_MS / 1000:
            return  # one ask per window is enough; the answer covers all gaps
        mirror.last_watch = now
        message = {
            "type": "stream.watch",
            "stream_id": mirror.stream_id,
            "offset": mirror.length,
        }
        await self.layer.group_send(owner_group(mirror.stream_id), message)

    async def _fill_gap(self, mirror: Mirror) -> None:
        if mirror.filling:
            return
        mirror.filling = True
        try:
            # The owner logs text before it publishes it, so the log covers the gap;
            # the owner is asked as well, for what it has not logged yet.
            await backfill(mirror)
            await self._watch(mirror, soon=True)
        finally:
            mirror.filling = False

    # -- receiving

    async def _receive(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
                if handle := self._handlers.get(message.get("type")):
                    handle(self, message)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("channel layer receive failed; retrying")
                await asyncio.sleep(1)

    def _on_text(self, message: dict[str, Any]) -> None:
        mirror = self.mirrors.get(message["stream_id"])
        if mirror is None:
            return
        ending = Ending.from_dict(message["ending"]) if message["ending"] else None
        if not mirror.apply(
            message["start"], message["text"], message["length"], ending
        ):
            logger.info(
                "stream %s: fan-out gap at offset %s; reading the log",
                mirror.stream_id,
                mirror.length,
            )
            background.spawn(self._fill_gap(mirror))

    def _on_watch(self, message: dict[str, Any]) -> None:
        if broadcast := self.owned.get(message["stream_id"]):
            broadcast.watched_until = time.monotonic() + 3 * WATCH_INTERVAL
            background.spawn(self.publish(broadcast, message["offset"]))

    def _on_stop(self, message: dict[str, Any]) -> None:
        if broadcast := self.owned.get(message["stream_id"]):
            broadcast.cancel("stopped")

    _handlers: dict[str, Callable[["Fanout", dict[str, Any]], None]] = {
        "stream.text": _on_text,
        "stream.watch": _on_watch,
        "stream.stop": _on_stop,
    }


async def _tend(fanout: Fanout, mirror: Mirror, now: float) -> None:
    if not mirror.viewers and now - mirror.idle_since > MIRROR_LINGER:
        del fanout.mirrors[mirror.stream_id]
        await fanout.leave(viewers_group(mirror.stream_id))
        return
    if mirror.ending is not None:
        return
    quiet = now - mirror.last_heard > 2 * WATCH_INTERVAL
    if quiet:
        await _settle_if_finished(mirror)
        if mirror.ending is not None:
            return
    try:
        await fanout._watch(mirror)
    except Exception:
        if quiet:
            # The owner is out of reach (its Redis server is away): viewers get a
            # retryable error, and come back to a fresh mirror.
            del fanout.mirrors[mirror.stream_id]
            mirror.end(_unreachable(StreamLog.Status.STREAMING))
            with contextlib.suppress(Exception):
                await fanout.leave(viewers_group(mirror.stream_id))
        raise


def _unreachable(status: str) -> Ending:
    error = StreamError.of(
        "unavailable",
        "This answer is being generated elsewhere and cannot be reached right "
        "now; try again shortly.",
    )
    return Ending(status, error=error)


async def backfill(mirror: Mirror) -> bool:
    """Catch `mirror` up from the frame log; False if the log could not."""
    try:
        record = await framelog.read(mirror.stream_id, mirror.length)
    except Exception:
        logger.exception("stream %s: could not read the frame log", mirror.stream_id)
        return False
    if record is None:
        return False
    mirror.apply(record.start, record.text, record.length, record.ending)
    return True


async def _settle_if_finished(mirror: Mirror) -> None:
    """End a mirror whose owner has gone quiet: from the frame log, from the row,
    or by giving up once the owner's lease has surely run out."""
    if await backfill(mirror) and mirror.ending is not None:
        return
    stream = await _load(mirror.stream_id)
    if stream is not None and stream.is_finished:
        text = recorded(stream)
        mirror.apply(0, text, len(text), ending_of(stream))
    elif time.monotonic() - mirror.last_heard > settings.STREAM_LEASE_SECONDS:
        error = StreamError.of(
            "interrupted", "The server generating this answer stopped responding."
        )
        mirror.end(Ending(StreamLog.Status.INTERRUPTED, error=error))


@sync_to_async
def _load(stream_id: int) -> StreamLog | None:
    return StreamLog.objects.filter(pk=stream_id).first()
