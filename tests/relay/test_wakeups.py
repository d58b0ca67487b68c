"""How viewers of a stream are woken: at once for a first token (or one after a
pause), at most once a window while tokens flow, each viewer on its own."""

import asyncio

from streaming.relay.feed import Broadcast, Feed, wake_due


def _broadcast(window: float = 60.0) -> tuple[Broadcast, set[Broadcast]]:
    due: set[Broadcast] = set()
    return Broadcast(1, lambda reason: None, due=due, window=window), due


async def _waiting(feed: Feed, timeout: float = 60.0) -> asyncio.Task[bool]:
    task = asyncio.create_task(feed.wait(timeout))
    await asyncio.sleep(0)  # now waiting
    return task


async def test_the_first_text_wakes_the_viewers_at_once():
    broadcast, due = _broadcast()
    viewer = await _waiting(broadcast)

    broadcast.append("Hello")

    assert await viewer is True
    assert not due


async def test_text_within_a_window_of_the_last_wake_waits_for_the_tick():
    broadcast, due = _broadcast()
    broadcast.append("Hello")  # woken now: the window starts
    viewer = await _waiting(broadcast)

    broadcast.append(" world")
    await asyncio.sleep(0)

    assert not viewer.done()
    assert due == {broadcast}
    wake_due(due)  # what the hub's tick does
    assert await viewer is True
    assert broadcast.since(0) == "Hello world"


async def test_text_a_window_after_the_last_wake_wakes_at_once():
    broadcast, due = _broadcast(window=0.0)
    broadcast.append("Hello")
    viewer = await _waiting(broadcast)

    broadcast.append(" world")

    assert await viewer is True
    assert not due


async def test_the_ending_wakes_the_viewers_at_once_whatever_the_window():
    broadcast, _ = _broadcast()
    broadcast.append("Hello")
    viewer = await _waiting(broadcast)

    broadcast.end(None)  # type: ignore[arg-type]  # any ending

    assert await viewer is True


async def test_a_cancelled_viewer_leaves_the_others_waiting():
    feed = Feed(1)
    leaving, staying = await _waiting(feed), await _waiting(feed)

    leaving.cancel()
    await asyncio.sleep(0)
    feed.append("Hello")

    assert leaving.cancelled()
    assert await staying is True


async def test_a_wait_past_its_timeout_ends_false_and_the_next_ones_still_work():
    feed = Feed(1)
    short = await _waiting(feed, timeout=0.01)
    long = await _waiting(feed, timeout=60.0)

    assert await short is False
    assert not long.done()  # the feed's one timer comes back for it
    feed.append("Hello")
    assert await long is True
    assert await feed.wait(0.01) is False  # a new wait gets its own deadline


async def test_a_shorter_wait_after_a_longer_one_still_ends_on_time():
    feed = Feed(1)
    long = await _waiting(feed, timeout=60.0)

    async with asyncio.timeout(10):  # not held to the longer wait's 60 s timer
        assert await feed.wait(0.01) is False

    assert not long.done()
    long.cancel()
