"""What a viewer is told from the record a stream left, a crashed process's included,
and who counts as watching."""

import gc
import json

import pytest
from asgiref.sync import sync_to_async

from streaming.models import StreamLog
from streaming.relay import hub
from streaming.relay.joined import Position
from tests.helpers import parse_sse, read_events

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def _interrupted(make_log, user) -> StreamLog:
    """What the reaper leaves of a stream whose process died: the last checkpoint."""
    return make_log(
        user,
        status=StreamLog.Status.INTERRUPTED,
        response="Hello, wor",
        error_code="interrupted",
        error_message="The server restarted before this answer finished.",
    )


async def _events(frames) -> list:
    events, _, _ = parse_sse("".join([frame async for frame in frames]))
    return events


async def test_past_what_a_crashed_process_kept_the_viewer_is_told_it_broke(
    alice, make_log
):
    """The client saw more than the last checkpoint: it gets the retryable ending, as
    a client without an offset does, not a refusal."""
    log = await sync_to_async(_interrupted)(make_log, alice)

    events = await _events(
        await hub.get().follow(
            log, user_id=log.user_id, after=Position(len(log.response) + 40)
        )
    )

    assert [e.event for e in events] == ["meta", "error"]
    error = json.loads(events[-1].data)
    assert (error["code"], error["retryable"]) == ("interrupted", True)
    # Past the end of a completed answer is still not an offset of it.
    completed = await sync_to_async(make_log)(alice, response="Hello!")
    with pytest.raises(hub.BadOffset):
        await hub.get().follow(completed, user_id=completed.user_id, after=Position(7))


async def test_over_http_the_resume_past_the_record_gets_the_ending(
    relay, alice, alice_token, make_log
):
    log = await sync_to_async(_interrupted)(make_log, alice)

    async with relay.client(alice_token) as client:
        received = await read_events(
            client, f"/streams/{log.pk}/events", headers={"Last-Event-ID": "50"}
        )

    assert received.status == 200
    assert [e.event for e in received.events] == ["meta", "error"]
    assert json.loads(received.events[-1].data)["code"] == "interrupted"


async def test_an_error_replayed_from_the_record_keeps_its_retry_after(alice, make_log):
    log = await sync_to_async(make_log)(
        alice,
        status=StreamLog.Status.ERROR,
        response="",
        error_code="rate_limited",
        error_message="The model provider is busy.",
        error_retry_after=7.0,
    )

    events = await _events(await hub.get().follow(log, user_id=log.user_id))

    assert json.loads(events[-1].data) == {
        "code": "rate_limited",
        "message": "The model provider is busy.",
        "retryable": True,
        "retry_after": 7.0,
    }


async def test_a_viewer_whose_response_never_started_is_not_watching(alice):
    """Counted from `follow` on (a response may take longer to start than the orphan
    grace), but a response dropped before its first frame leaves at once."""
    owner = hub.get()
    broadcast = await owner.open(10**9, cancel=lambda reason: None)
    stream = StreamLog(pk=10**9, user=alice, provider="demo", model="demo")
    try:
        frames = await owner.follow(stream, user_id=stream.user_id)
        assert broadcast.viewers == 1

        del frames
        gc.collect()
        assert broadcast.viewers == 0

        read = await owner.follow(stream, user_id=stream.user_id)
        assert (await anext(read)).startswith("retry:")
        await read.aclose()
        assert broadcast.viewers == 0
    finally:
        owner.owned.pop(10**9, None)
