"""Per-user limits, retries before the first token, and usage accounting, through a
real daphne and the real SDKs against the fake provider.

A relay caches each user's limits and counts their tokens of the day in its cache,
keyed by user id (which SQLite hands out again), so each test starts a relay with its
own settings (a fresh process) rather than share them.
"""

import asyncio
import json
import uuid

import pytest

from streaming.models import StreamLog, UsageLimit
from tests.helpers import (
    fake,
    finished_log,
    new_key,
    read_events,
    token_text,
    tokens_at_least,
)

pytestmark = pytest.mark.timeout(90)


def fresh(**env: object) -> dict[str, object]:
    """Relay settings no other test shares, so its cache starts empty."""
    return {"TEST_RUN": uuid.uuid4().hex, **env}


async def post_stream(client, prompt: str) -> object:
    return await client.post("/streams/", json={"prompt": prompt, "provider": "openai"})


async def test_twenty_simultaneous_starts_with_a_limit_of_three_start_exactly_three(
    start_relay, alice, alice_token
):
    relay = start_relay(**fresh(LIMIT_CONCURRENT_STREAMS=3))
    slow = fake(tokens=200, delay_ms=50, pattern="counter")
    async with relay.client(alice_token) as client:
        responses = await asyncio.gather(
            *(post_stream(client, f"race {i} {slow}") for i in range(20))
        )
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201] * 3 + [429] * 17
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.json()["error"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) > 0
        assert await StreamLog.objects.filter(user=alice).acount() == 3

        # A finished stream gives its slot back.
        started = [r.json()["id"] for r in responses if r.status_code == 201]
        for stream in started:
            await client.post(f"/streams/{stream}/stop")
        for stream in started:
            await finished_log(stream)
        again = await post_stream(client, "after " + fake(tokens=3))
        assert again.status_code == 201


async def test_starts_per_minute_are_limited_with_retry_after(start_relay, alice_token):
    relay = start_relay(**fresh(LIMIT_STARTS_PER_MINUTE=2))
    async with relay.client(alice_token) as client:
        first = await post_stream(client, "one " + fake(tokens=2))
        second = await post_stream(client, "two " + fake(tokens=2))
        third = await post_stream(client, "three " + fake(tokens=2))
        seed = await client.get("/chat/stream", params={"prompt": "four"})

    assert (first.status_code, second.status_code) == (201, 201)
    assert third.status_code == 429
    assert third.json()["error"] == "rate_limited"
    assert 0 < int(third.headers["Retry-After"]) <= 60
    assert third.json()["retry_after"] == int(third.headers["Retry-After"])
    assert seed.status_code == 429


async def test_a_user_override_in_the_admin_beats_the_default(
    start_relay, alice, alice_token, bob_token
):
    await UsageLimit.objects.acreate(user=alice, concurrent_streams=1)
    relay = start_relay(**fresh(LIMIT_CONCURRENT_STREAMS=5))
    slow = fake(tokens=100, delay_ms=50)
    async with relay.client(alice_token) as as_alice, relay.client(bob_token) as as_bob:
        assert (await post_stream(as_alice, "a1 " + slow)).status_code == 201
        assert (await post_stream(as_alice, "a2 " + slow)).status_code == 429
        assert (await post_stream(as_bob, "b1 " + slow)).status_code == 201
        assert (await post_stream(as_bob, "b2 " + slow)).status_code == 201


async def test_crossing_the_token_budget_stops_the_stream_and_keeps_the_answer(
    start_relay, alice, alice_token
):
    relay = start_relay(**fresh(LIMIT_TOKENS_PER_DAY=60))
    async with relay.client(alice_token) as client:
        started = await post_stream(
            client, "long " + fake(tokens=400, delay_ms=10, pattern="counter")
        )
        received = await read_events(client, started.json()["events_url"])
        refused = await post_stream(client, "more " + fake(tokens=3))

    last = received.events[-1]
    assert last.event == "error"
    assert json.loads(last.data)["code"] == "budget_exceeded"
    log = await finished_log(started.json()["id"])
    assert (log.status, log.error_code) == (
        StreamLog.Status.CANCELLED,
        "budget_exceeded",
    )
    assert log.response and log.response == token_text(received.events)
    assert log.output_tokens and log.tokens_estimated
    assert refused.status_code == 429
    assert refused.json()["error"] == "budget_exceeded"


async def test_it_retries_before_the_first_token_and_records_the_attempts(
    start_relay, alice_token, upstream
):
    relay = start_relay(
        **fresh(PROVIDER_MAX_RETRIES=2, PROVIDER_RETRY_BASE_SECONDS=0.01)
    )
    key = new_key()
    prompt = "retry " + fake(
        tokens=5, fail_first=2, fail_status=429, retry_after=0, key=key
    )
    refused_before = upstream["openai"].stats()["statuses"].get("429", 0)
    async with relay.client(alice_token) as client:
        started = await post_stream(client, prompt)
        received = await read_events(client, started.json()["events_url"])

    assert received.events[-1].event == "done"
    log = await finished_log(started.json()["id"])
    assert (log.status, log.attempts) == (StreamLog.Status.COMPLETED, 3)
    assert upstream["openai"].stats()["statuses"]["429"] - refused_before == 2
    # Our retries, not the SDK's: each attempt is a first request to the provider.
    assert (await upstream["openai"].outcome(key))["retry_count"] == 0


async def test_it_gives_up_after_the_retries_with_the_providers_error(
    start_relay, alice_token
):
    relay = start_relay(
        **fresh(PROVIDER_MAX_RETRIES=2, PROVIDER_RETRY_BASE_SECONDS=0.01)
    )
    prompt = "down " + fake(tokens=5, status=503, key=new_key())
    async with relay.client(alice_token) as client:
        started = await post_stream(client, prompt)
        received = await read_events(client, started.json()["events_url"])

    error = json.loads(received.events[-1].data)
    assert (error["code"], error["retryable"]) == ("unavailable", True)
    log = await finished_log(started.json()["id"])
    assert (log.status, log.error_code, log.attempts) == ("error", "unavailable", 3)


async def test_it_never_retries_after_the_first_token(start_relay, alice_token):
    relay = start_relay(
        **fresh(PROVIDER_MAX_RETRIES=2, PROVIDER_RETRY_BASE_SECONDS=0.01)
    )
    prompt = "midway " + fake(tokens=20, error_after=3, pattern="counter")
    async with relay.client(alice_token) as client:
        started = await post_stream(client, prompt)
        received = await read_events(client, started.json()["events_url"])

    assert token_text(received.events) == " t0 t1 t2"
    log = await finished_log(started.json()["id"])
    assert (log.status, log.attempts, log.response) == ("error", 1, " t0 t1 t2")


async def test_a_stopped_stream_records_an_estimate_of_what_it_spent(
    start_relay, alice_token
):
    relay = start_relay(**fresh())
    async with relay.client(alice_token) as client:
        started = await post_stream(
            client, "stop me " + fake(tokens=300, delay_ms=20, pattern="counter")
        )
        await read_events(
            client, started.json()["events_url"], until=tokens_at_least(5)
        )
        await client.post(started.json()["stop_url"])

    log = await finished_log(started.json()["id"])
    assert log.status == StreamLog.Status.CANCELLED
    assert log.tokens_estimated
    assert log.output_tokens == -(-len(log.response) // 4)
    assert log.input_tokens and log.input_tokens > 0


async def test_a_completed_stream_records_the_providers_own_counts(
    start_relay, alice_token
):
    relay = start_relay(**fresh())
    async with relay.client(alice_token) as client:
        started = await post_stream(
            client, "count " + fake(tokens=7, pattern="counter")
        )
        received = await read_events(client, started.json()["events_url"])

    usage = json.loads(next(e.data for e in received.events if e.event == "usage"))
    log = await finished_log(started.json()["id"])
    assert (log.output_tokens, log.tokens_estimated) == (7, False)
    assert usage == {"input_tokens": log.input_tokens, "output_tokens": 7}


@pytest.mark.redis
async def test_the_concurrency_limit_holds_across_two_workers(
    redis_url, start_relay, alice, alice_token
):
    env = fresh(LIMIT_CONCURRENT_STREAMS=3)
    relays = [
        start_relay(instance="limit-a", **env),
        start_relay(instance="limit-b", **env),
    ]
    slow = fake(tokens=200, delay_ms=50, pattern="counter")
    async with relays[0].client(alice_token) as a, relays[1].client(alice_token) as b:
        responses = await asyncio.gather(
            *(post_stream((a, b)[i % 2], f"split {i} {slow}") for i in range(20))
        )
        started = [r.json()["id"] for r in responses if r.status_code == 201]
        for stream in started:
            await a.post(f"/streams/{stream}/stop")

    assert sorted(r.status_code for r in responses) == [201] * 3 + [429] * 17
    assert await StreamLog.objects.filter(user=alice).acount() == 3
