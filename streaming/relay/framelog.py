"""Each stream's text and ending, kept in Redis so any process can replay it exactly.

One Redis stream per answer (`<prefix>:stream:{s:<id>}:log`, on the server of its hash
tag when REDIS_URL names several: `streaming.shards`). An entry's ID is the offset
its text ends at (`<end>-0`), so the log is append-only and read by offset with one
XRANGE; the ending is the last entry (`<length>-1`). The owning process appends once
per fan-out window (`Writer`, driven by the hub); the whole log expires
STREAM_LOG_TTL_SECONDS after its last append.

Readers: a process that follows another's stream fills gaps and catches up from the
log, so a message the channel layer dropped becomes a replay; a process that reaps a
dead owner's stream keeps the text it reached; a stream whose final database write
failed keeps its outcome here until a reaper writes it (`leases`).

Without REDIS_URL there is one process and no log: every call is a no-op.
"""

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from redis import asyncio as aioredis

from streaming import pools, shards
from streaming.relay.feed import Broadcast, Ending

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """Text appended to one stream's log since `start`, and its ending if it has one."""

    stream_id: int
    start: int
    text: str
    ending: Ending | None = None
    outcome: dict[str, Any] | None = None  # the fields of the stream's final log row


@dataclass(frozen=True)
class Record:
    """What the log holds of one stream after some offset."""

    start: int
    text: str
    ending: Ending | None
    outcome: dict[str, Any] | None = None

    @property
    def length(self) -> int:
        return self.start + len(self.text)


class Unlogged(Exception):
    """Some streams' entries were not appended: their Redis server failed (the cause).
    Every other stream's were."""

    def __init__(self, stream_ids: set[int]) -> None:
        super().__init__(f"{len(stream_ids)} streams not logged")
        self.stream_ids = stream_ids


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[aioredis.Redis]] = (
    weakref.WeakKeyDictionary()
)


def enabled() -> bool:
    return bool(settings.REDIS_URL)


def _clients_here() -> list[aioredis.Redis]:
    """A client of each Redis server, for this event loop."""
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = [
            aioredis.Redis.from_pool(
                pools.asyncio_pool(
                    "frame_log",
                    url,
                    socket_timeout=5,
                    socket_connect_timeout=2,
                    health_check_interval=30,
                )
            )
            for url in settings.REDIS_URLS
        ]
    return _clients[loop]


def _client(stream_id: int) -> aioredis.Redis:
    """The client of the server that holds the stream's log."""
    return _clients_here()[shards.of(key(stream_id))]


def key(stream_id: int) -> str:
    return f"{settings.REDIS_PREFIX}:stream:{shards.stream_tag(stream_id)}:log"


async def append(entries: list[Entry]) -> None:
    """Append every entry (each with text, an ending, or both): one round trip to each
    server concerned, all at once. Raises `Unlogged` if a server failed, once the
    others have their entries."""
    if not entries or not enabled():
        return
    by_shard: dict[int, list[Entry]] = {}
    for entry in entries:
        by_shard.setdefault(shards.of(key(entry.stream_id)), []).append(entry)
    if len(by_shard) == 1:
        [(shard, some)] = by_shard.items()
        results: list[BaseException | None] = [await _try(_append(shard, some))]
    else:
        batches = (_try(_append(shard, some)) for shard, some in by_shard.items())
        results = await asyncio.gather(*batches)
    failed = {
        entry.stream_id
        for some, error in zip(by_shard.values(), results, strict=True)
        if error is not None
        for entry in some
    }
    if failed:
        raise Unlogged(failed) from next(e for e in results if e is not None)


async def _append(shard: int, entries: list[Entry]) -> None:
    ttl = int(settings.STREAM_LOG_TTL_SECONDS)
    async with _clients_here()[shard].pipeline(transaction=False) as pipe:
        for entry in entries:
            end = entry.start + len(entry.text)
            name = key(entry.stream_id)
            if entry.text:
                pipe.xadd(name, {"t": entry.text}, id=f"{end}-0")
            if entry.ending is not None:
                fields = {"e": json.dumps(entry.ending.as_dict())}
                if entry.outcome is not None:
                    fields["o"] = json.dumps(entry.outcome, default=_isoformat)
                pipe.xadd(name, fields, id=f"{end}-1")
            pipe.expire(name, ttl)
        # An entry Redis already has (a retried append) is refused; the rest stand.
        await pipe.execute(raise_on_error=False)


async def _try(work: Awaitable[None]) -> BaseException | None:
    try:
        await work
    except Exception as error:
        return error
    return None


async def read(stream_id: int, after: int = 0) -> Record | None:
    """The logged text after offset `after`, and the ending if logged; None if the log
    does not reach back to `after` (expired, never written, or lost with Redis)."""
    if not enabled():
        return None
    client = _client(stream_id)
    entries = await client.xrange(key(stream_id), min=f"({after}-0", max="+")
    if not entries:
        return Record(after, "", None) if await client.exists(key(stream_id)) else None
    parts: list[str] = []
    offset = after
    ending = outcome = None
    for entry_id, fields in entries:
        end = int(entry_id.split(b"-")[0])
        if b"e" in fields:
            if end == offset:
                ending = Ending.from_dict(json.loads(fields[b"e"]))
                outcome = json.loads(fields[b"o"]) if b"o" in fields else None
            break
        text = fields[b"t"].decode()
        if end - len(text) > offset:
            break  # a hole: Redis lost the entries before this one
        parts.append(text[len(text) - (end - offset) :])
        offset = end
    if offset == after and ending is None:
        return None
    return Record(after, "".join(parts), ending, outcome)


def _isoformat(value: datetime | Decimal) -> str:
    if isinstance(value, Decimal):  # a cost, exactly
        return str(value)
    return value.isoformat()  # to the microsecond, unlike DjangoJSONEncoder


class Writer:
    """Appends the new text of this process's streams to the log, in batches."""

    async def flush(self, broadcasts: Iterable[Broadcast]) -> None:
        """Log new text: a watched stream's before it is published (so the log covers
        every gap a viewer can see), the others' every STREAM_LOG_INTERVAL_MS, in one
        round trip per server. Raises `Unlogged` naming the streams whose server
        failed (the others' text is logged), or what Redis raised; the text that
        was not logged is logged next time."""
        if not enabled():
            return
        now = time.monotonic()
        interval = settings.STREAM_LOG_INTERVAL_MS / 1000
        due = [
            broadcast
            for broadcast in broadcasts
            if broadcast.logged < broadcast.length
            and (broadcast.is_watched or now - broadcast.logged_at >= interval)
        ]
        if not due:
            return
        lengths = [broadcast.length for broadcast in due]
        failed: Unlogged | None = None
        try:
            await append([_unlogged(broadcast) for broadcast in due])
        except Unlogged as error:
            failed = error
        for broadcast, length in zip(due, lengths, strict=True):
            if failed is None or broadcast.stream_id not in failed.stream_ids:
                broadcast.logged = max(broadcast.logged, length)
                broadcast.logged_at = now
        if failed is not None:
            raise failed

    async def end(self, broadcast: Broadcast, outcome: dict[str, Any]) -> None:
        """Log the rest of an ended stream, its ending and its outcome (the fields of
        its row), before the database hears of them."""
        if not enabled() or broadcast.ending_logged:
            return
        try:
            await append([_unlogged(broadcast, outcome=outcome)])
        except Exception:
            logger.exception("stream %s: could not log its ending", broadcast.stream_id)
        else:
            broadcast.logged = broadcast.length
            broadcast.ending_logged = True


def _unlogged(broadcast: Broadcast, *, outcome: dict[str, Any] | None = None) -> Entry:
    """The broadcast's text since it was last logged; with `outcome`, its ending too."""
    return Entry(
        broadcast.stream_id,
        broadcast.logged,
        broadcast.since(broadcast.logged),
        broadcast.ending if outcome is not None else None,
        outcome,
    )
