"""Two daphne processes sharing a Redis channel layer: a stream generated on one is
watched, resumed and stopped from the other, and lost fan-out messages are replayed."""

import asyncio
import os
import signal

import pytest

from streaming.models import StreamLog
from tests.helpers import (
    expected_answer,
    fake,
    finished_log,
    new_key,
    offsets,
    read_events,
    token_text,
    tokens_at_least,
)

pytestmark = [pytest.mark.redis, pytest.mark.timeout(90)]


@pytest.fixture
def relays(redis_url, start_relay):
    return start_relay(instance="a"), start_relay(instance="b")


async def _start(relay, token: str, prompt: str) -> int:
    async with relay.client(token) as client:
        response = await client.post(
            "/streams/", json={"prompt": prompt, "provider": "openai"}
        )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def test_a_stream_started_on_one_process_is_watched_live_from_another(
    relays, alice_token
):
    a, b = relays
    options = {"tokens": 80, "delay_ms": 15, "pattern": "counter"}
    stream = await _start(a, alice_token, "count " + fake(**options))

    async with a.client(alice_token) as on_a, b.client(alice_token) as on_b:
        seen_on_a, seen_on_b = await asyncio.gather(
            read_events(on_a, f"/streams/{stream}/events"),
            read_events(on_b, f"/streams/{stream}/events"),
        )

    expected = expected_answer(**options)
    assert seen_on_b.status == 200
    assert token_text(seen_on_a.events) == token_text(seen_on_b.events) == expected
    # Live frames, not one replay at the end.
    assert len(offsets(seen_on_b.events)) > 5
    assert seen_on_b.events[-1].event == "done"
    log = await finished_log(stream)
    assert (log.status, log.response) == (StreamLog.Status.COMPLETED, expected)


async def test_it_resumes_on_another_process_from_last_event_id(
    relays, alice, alice_token
):
    a, b = relays
    options = {"tokens": 60, "delay_ms": 15, "pattern": "counter"}
    stream = await _start(a, alice_token, "count " + fake(**options))

    async with a.client(alice_token) as on_a:
        first = await read_events(
            on_a, f"/streams/{stream}/events", until=tokens_at_least(5)
        )
    resume_at = offsets(first.events)[-1]
    async with b.client(alice_token) as on_b:
        rest = await read_events(
            on_b, f"/streams/{stream}/events", headers={"Last-Event-ID": str(resume_at)}
        )

    expected = expected_answer(**options)
    assert token_text(first.events) == expected[:resume_at]
    assert token_text(rest.events) == expected[resume_at:]
    assert rest.events[-1].event == "done"
    assert await StreamLog.objects.filter(user=alice).acount() == 1


async def test_stop_from_another_process_reaches_the_owner(
    relays, alice_token, upstream
):
    a, b = relays
    key = new_key()
    options = {"tokens": 500, "delay_ms": 20, "pattern": "counter", "key": key}
    stream = await _start(a, alice_token, "count " + fake(**options))

    async with b.client(alice_token) as on_b:
        watched = await read_events(
            on_b, f"/streams/{stream}/events", until=tokens_at_least(3)
        )
        stopped = await on_b.post(f"/streams/{stream}/stop")
        # From the start: the stop may land before another token, and a viewer that
        # already has the whole answer gets 204.
        after = await read_events(on_b, f"/streams/{stream}/events")

    assert stopped.status_code == 202
    assert after.events[-1].event == "error"
    assert '"stopped"' in after.events[-1].data
    log = await finished_log(stream)
    assert (log.status, log.error_code) == (StreamLog.Status.CANCELLED, "stopped")
    assert expected_answer(**options).startswith(log.response)
    assert len(log.response) >= offsets(watched.events)[-1]
    outcome = await upstream["openai"].outcome(key)
    assert outcome["outcome"] == "client_disconnected"
    assert outcome["sent"] < outcome["planned"] == 500


async def test_lost_fanout_messages_are_replayed_exactly(
    redis_url, start_relay, alice_token
):
    # The core layer drops group messages silently past a channel's capacity; pausing
    # the viewing process makes it a slow consumer, so messages are really lost.
    layer = {
        "REDIS_CHANNEL_LAYER": "core",
        "REDIS_CHANNEL_CAPACITY": 1,
        # A paused process must not be taken for a dead one.
        "STREAM_LEASE_SECONDS": 30,
    }
    a = start_relay(instance="a-core", **layer)
    b = start_relay(instance="b-core", **layer)
    options = {"tokens": 150, "delay_ms": 10, "pattern": "counter"}
    stream = await _start(a, alice_token, "count " + fake(**options))

    async with b.client(alice_token) as on_b:
        reading = asyncio.create_task(read_events(on_b, f"/streams/{stream}/events"))
        await asyncio.sleep(0.4)
        os.kill(b.process.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(0.5)
        finally:
            os.kill(b.process.pid, signal.SIGCONT)
        seen = await reading

    assert seen.events[-1].event == "done", seen.events[-1]
    assert token_text(seen.events) == expected_answer(**options)
    assert "fan-out gap" in b.log()
