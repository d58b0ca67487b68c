"""The cross-process protocol, driven in one process: two `Fanout`s (an owner and a
viewer, as two processes would have) on one in-memory channel layer."""

import asyncio
import time

import pytest
from channels.layers import InMemoryChannelLayer

from streaming.errors import StreamError
from streaming.models import StreamLog
from streaming.relay import fanout, framelog
from streaming.relay.feed import Broadcast, Ending

# Far past any id the session's database hands out: the frame log and the groups are
# keyed by stream id under the session's prefix, and other tests' real streams log
# there too (run after tests/properties in one session, it met a real stream 41's).
STREAM_ID = 10**9 + 41


class Owner:
    """The process that runs stream STREAM_ID, and what reached it."""

    def __init__(self, layer: InMemoryChannelLayer) -> None:
        self.cancelled: list[str] = []
        self.broadcast = Broadcast(STREAM_ID, self.cancelled.append)
        self.fanout = fanout.Fanout(layer, {STREAM_ID: self.broadcast})


@pytest.fixture
async def layer():
    return InMemoryChannelLayer()


@pytest.fixture
async def owner(layer):
    owner = Owner(layer)
    await owner.fanout.join(fanout.owner_group(STREAM_ID))
    yield owner
    _stop_receiving(owner.fanout)


@pytest.fixture
async def viewer(layer):
    viewer = fanout.Fanout(layer, {})
    yield viewer
    _stop_receiving(viewer)


def _stop_receiving(instance: fanout.Fanout) -> None:
    if instance._receiving is not None:
        instance._receiving.cancel()


def _row() -> StreamLog:
    """The viewer's copy of the stream's row: still streaming (no database needed)."""
    return StreamLog(pk=STREAM_ID, status=StreamLog.Status.STREAMING)


async def _until(condition, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.005)


def _members(layer: InMemoryChannelLayer, group: str) -> set[str]:
    return set(layer.groups.get(group, {}))


async def test_a_watch_makes_the_owner_publish_what_the_viewer_lacks(owner, viewer):
    owner.broadcast.append("Hello")

    mirror = await viewer.mirror(_row())
    await _until(lambda: mirror.length == 5)

    assert mirror.since(0) == "Hello"
    assert owner.broadcast.is_watched and owner.broadcast.published == 5


async def test_new_text_and_the_ending_reach_the_viewer(owner, viewer):
    mirror = await viewer.mirror(_row())
    await _until(lambda: owner.broadcast.is_watched)

    owner.broadcast.append("Hel")
    await owner.fanout.publish(owner.broadcast, owner.broadcast.published)
    owner.broadcast.append("lo")
    owner.broadcast.end(Ending(StreamLog.Status.COMPLETED, usage={"input_tokens": 1}))
    await owner.fanout.publish(owner.broadcast, owner.broadcast.published)
    await _until(lambda: mirror.ending is not None)

    assert mirror.since(0) == "Hello"
    assert mirror.ending == Ending("completed", usage={"input_tokens": 1})


async def test_a_gap_makes_the_viewer_catch_up_from_its_own_offset(
    owner, viewer, settings
):
    mirror = await viewer.mirror(_row())
    owner.broadcast.append("abc")
    await owner.fanout.publish(owner.broadcast, 0)
    await _until(lambda: mirror.length == 3)
    # One ask per fan-out window: let the first watch's window pass.
    await asyncio.sleep(2 * settings.STREAM_FANOUT_WINDOW_MS / 1000)

    owner.broadcast.append("def")
    owner.broadcast.published = owner.broadcast.length  # its message was lost
    owner.broadcast.append("ghi")
    await owner.fanout.publish(owner.broadcast, owner.broadcast.published)
    await _until(lambda: mirror.length == 9)

    assert mirror.since(0) == "abcdefghi"  # nothing missing, nothing twice


async def test_an_ending_after_a_gap_waits_for_the_missing_text(
    owner, viewer, settings
):
    mirror = await viewer.mirror(_row())
    await _until(lambda: owner.broadcast.is_watched)
    await asyncio.sleep(2 * settings.STREAM_FANOUT_WINDOW_MS / 1000)

    owner.broadcast.append("lost")
    owner.broadcast.published = 4  # the message that carried it was lost
    owner.broadcast.end(Ending(StreamLog.Status.COMPLETED))
    await owner.fanout.publish(owner.broadcast, 4)  # the ending, with no text
    await _until(lambda: mirror.ending is not None)

    assert mirror.since(0) == "lost"  # the ending came with the text, not before


async def test_stop_reaches_the_owner(owner, viewer):
    await viewer.stop(STREAM_ID)

    await _until(lambda: owner.cancelled)
    assert owner.cancelled == ["stopped"]


async def test_messages_for_streams_a_process_does_not_have_are_ignored(owner, viewer):
    other = Broadcast(STREAM_ID + 1, lambda reason: None)
    await viewer.join(fanout.viewers_group(other.stream_id))

    await owner.fanout.publish(other, 0)  # a stream nobody here mirrors
    await viewer.stop(STREAM_ID + 1)  # a stream nobody here owns
    await viewer.stop(STREAM_ID)

    await _until(lambda: owner.cancelled)
    assert owner.cancelled == ["stopped"] and viewer.mirrors == {}


async def test_join_and_leave_are_symmetric(layer, owner, viewer):
    group = fanout.viewers_group(STREAM_ID)
    mirror = await viewer.mirror(_row())
    assert _members(layer, group) == {viewer.channel}

    mirror.idle_since = time.monotonic() - fanout.MIRROR_LINGER - 1  # nobody reads it
    await viewer.tend()

    assert _members(layer, group) == set() and viewer.mirrors == {}
    await owner.fanout.leave(fanout.owner_group(STREAM_ID))
    assert _members(layer, fanout.owner_group(STREAM_ID)) == set()


async def test_a_mirror_that_cannot_join_ends_with_a_retryable_error(viewer):
    class Broken(InMemoryChannelLayer):
        async def group_add(self, group: str, channel: str) -> None:
            raise ConnectionError("Redis is away")

    broken = fanout.Fanout(Broken(), {})
    try:
        feed = await broken.mirror(_row())
    finally:
        _stop_receiving(broken)

    assert feed.ending.error == StreamError.of("unavailable", feed.ending.error.message)
    assert feed.ending.error.retryable and broken.mirrors == {}


@pytest.mark.redis
async def test_a_gap_is_filled_from_the_frame_log_when_the_owner_is_silent(
    layer, viewer, settings
):
    """The owner logs text before it publishes it, so the log covers every gap."""
    settings.REDIS_PREFIX = f"{settings.REDIS_PREFIX}-gap-{time.monotonic_ns()}"
    broadcast = Broadcast(STREAM_ID, lambda reason: None)
    mirror = await viewer.mirror(_row())  # no owner: nobody answers its watches

    broadcast.append("logged, ")
    broadcast.watched_until = time.monotonic() + 60
    await framelog.Writer().flush([broadcast])
    broadcast.append("published")
    publisher = fanout.Fanout(layer, {})
    await publisher.publish(broadcast, len("logged, "))  # a gap for the mirror at 0
    await _until(lambda: mirror.length == len("logged, "))

    assert mirror.since(0) == "logged, "  # from the log: the owner never answered
    await publisher.publish(broadcast, len("logged, "))  # the next window
    await _until(lambda: mirror.length == broadcast.length)
    assert mirror.since(0) == "logged, published"
