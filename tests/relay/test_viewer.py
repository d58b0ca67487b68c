"""A viewer in this process: frames of bounded size, fed only as fast as its
connection takes them, dropped when it takes nothing, and capped per user."""

import asyncio
import logging

import hypothesis
import pytest
from asgiref.sync import sync_to_async
from hypothesis import strategies as st

from streaming.models import StreamLog
from streaming.relay import dialects, hub, viewer
from streaming.relay.feed import Text
from tests.helpers import parse_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


class Valve:
    """A connection whose send buffer is full until `open()`."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self.waits = 0

    def open(self) -> None:
        self._open.set()

    async def writable(self, timeout: float) -> bool:
        self.waits += 1
        try:
            await asyncio.wait_for(self._open.wait(), timeout)
        except TimeoutError:
            return False
        return True


async def _log(make_log, user, response: str) -> StreamLog:
    return await sync_to_async(make_log)(user, response=response)


async def test_a_long_answer_goes_out_in_frames_of_bounded_size(alice, make_log):
    answer = "".join(f"word{i} " for i in range(12_000))  # about 83,000 characters
    log = await _log(make_log, alice, answer)

    frames = await hub.get().follow(log, user_id=alice.pk)
    events, _, _ = parse_sse("".join([frame async for frame in frames]))

    tokens = [e for e in events if e.event == "token"]
    assert len(tokens) == -(-len(answer) // dialects.FRAME_CHARS)
    assert all(len(e.data) <= dialects.FRAME_CHARS for e in tokens)
    assert "".join(e.data for e in tokens) == answer
    ends = [int(e.id) for e in tokens]
    assert ends == [
        len("".join(e.data for e in tokens[: i + 1])) for i in range(len(ends))
    ]


async def test_a_viewer_whose_connection_is_full_pulls_nothing_until_it_drains(
    alice, make_log
):
    log = await _log(make_log, alice, "Hello, Alice!")
    valve = Valve()
    frames = await hub.get().follow(log, user_id=alice.pk, flow=valve)

    pending = asyncio.ensure_future(anext(frames))
    await asyncio.sleep(0.2)
    assert not pending.done() and valve.waits == 1

    valve.open()
    first = await pending
    rest = "".join([frame async for frame in frames])
    events, _, _ = parse_sse(first + rest)
    assert "".join(e.data for e in events if e.event == "token") == "Hello, Alice!"
    assert events[-1].event == "done"


async def test_a_viewer_that_takes_nothing_is_dropped_with_a_log_line(
    alice, make_log, settings, caplog
):
    settings.STREAM_VIEWER_STALL_SECONDS = 0.2
    log = await _log(make_log, alice, "Hello, Alice!")
    owner = hub.get()
    frames = await owner.follow(log, user_id=alice.pk, flow=Valve())
    assert owner.audience.open[alice.pk] == 1

    with caplog.at_level(logging.WARNING, logger="streaming.relay.viewer"):
        assert [frame async for frame in frames] == []

    assert owner.audience.open[alice.pk] == 0
    assert f"stream {log.pk}: dropped a viewer (user {alice.pk})" in caplog.text
    assert "resume" in caplog.text


async def test_a_user_has_at_most_the_viewers_the_cap_allows(
    alice, bob, make_log, settings
):
    settings.LIMIT_VIEWERS_PER_USER = 2
    log = await _log(make_log, alice, "Hello, Alice!")
    owner = hub.get()
    first = await owner.follow(log, user_id=alice.pk)
    second = await owner.follow(log, user_id=alice.pk)

    with pytest.raises(viewer.TooManyViewers) as refused:
        await owner.follow(log, user_id=alice.pk)
    assert (refused.value.status, refused.value.retry_after) == (429, 5)
    # Someone else (staff following alice's stream) is not counted as alice.
    other = await owner.follow(log, user_id=bob.pk)

    await first.aclose()
    third = await owner.follow(log, user_id=alice.pk)
    for frames in (second, third, other):
        await frames.aclose()
    assert not owner.audience.open


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(
    pieces=st.lists(st.text(max_size=5), max_size=700),
    offset=st.integers(0, 2000),
    limit=st.none() | st.integers(0, 2000),
)
def test_reading_text_from_any_offset_with_any_limit(pieces, offset, limit):
    text = Text()
    for piece in pieces:
        text.append(piece)
    whole = "".join(pieces)
    end = None if limit is None else offset + limit
    assert text.since(offset, limit) == whole[offset:end]
