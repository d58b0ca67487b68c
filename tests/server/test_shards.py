"""Two relay processes on two Redis servers (REDIS_URL names both): streams on either
server are watched, resumed and stopped across processes and the limits hold exactly,
as on one; killing one server ends only the cross-process views of the streams that
live on it (with a retryable error), and the others go on."""

import asyncio
import json

import httpx
import pytest
import redis
from asgiref.sync import sync_to_async
from django.core.cache import caches

from streaming import shards
from streaming.models import ApiToken, StreamLog, UsageLimit
from streaming.relay import framelog
from tests.helpers import (
    RedisServer,
    expected_answer,
    fake,
    finished_log,
    offsets,
    read_events,
    token_text,
    tokens_at_least,
)

pytestmark = [pytest.mark.redis, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def servers(tmp_path_factory, redis_url):
    """Two redis-servers for this module's relays (`relays` stops them first)."""
    directory = tmp_path_factory.mktemp("shards")
    pair = [RedisServer(directory), RedisServer(directory)]
    started: list = []
    yield pair, started
    for relay in started:
        relay.stop()
    for server in pair:
        server.stop()


@pytest.fixture
def relays(start_relay, servers):
    pair, started = servers
    env = {"REDIS_URL": ",".join(server.url for server in pair)}
    if not started:
        started += [start_relay(instance=f"shard-{n}", **env) for n in "ab"]
    return started


def shard_of(stream_id: int) -> int:
    return shards.index(shards.stream_tag(stream_id), 2)


async def start_on_each_shard(client: httpx.AsyncClient, prompt: str) -> list[int]:
    """Start streams until one lives on each server: [on the first, on the second]."""
    found: dict[int, int] = {}
    while len(found) < 2:
        response = await client.post("/streams/", json={"prompt": prompt})
        assert response.status_code == 201, response.text
        found.setdefault(shard_of(response.json()["id"]), response.json()["id"])
    return [found[0], found[1]]


async def test_streams_on_either_server_are_watched_and_resumed_across_processes(
    relays, servers, alice_token
):
    a, b = relays
    options = {"tokens": 80, "delay_ms": 15, "pattern": "counter"}
    expected = expected_answer(**options)
    async with a.client(alice_token) as on_a, b.client(alice_token) as on_b:
        streams = await start_on_each_shard(on_a, fake(**options))

        async def resume(stream: int) -> tuple:
            url = f"/streams/{stream}/events"
            first = await read_events(on_a, url, until=tokens_at_least(5))
            at = offsets(first.events)[-1]
            rest = await read_events(on_b, url, headers={"Last-Event-ID": str(at)})
            return first, rest

        watched = [read_events(on_b, f"/streams/{s}/events") for s in streams]
        results = await asyncio.gather(*watched, *map(resume, streams))

    for seen in results[:2]:
        assert token_text(seen.events) == expected
        assert len(offsets(seen.events)) > 5  # live, not one replay at the end
        assert seen.events[-1].event == "done"
    for first, rest in results[2:]:
        assert token_text(first.events) + token_text(rest.events) == expected
        assert rest.events[-1].event == "done"
    raw = [redis.Redis.from_url(server.url) for server in servers[0]]
    for stream in streams:
        log = await finished_log(stream)
        assert (log.status, log.response) == (StreamLog.Status.COMPLETED, expected)
        # The stream's frame log is on its server, and only there.
        on = [bool(client.exists(framelog.key(stream))) for client in raw]
        assert on == [shard_of(stream) == 0, shard_of(stream) == 1]


async def test_stop_from_the_other_process_reaches_streams_on_either_server(
    relays, servers, alice_token
):
    a, b = relays
    raw = [redis.Redis.from_url(server.url) for server in servers[0]]
    async with a.client(alice_token) as on_a, b.client(alice_token) as on_b:
        streams = await start_on_each_shard(on_a, fake(tokens=500, delay_ms=20))
        for stream in streams:
            await read_events(
                on_b, f"/streams/{stream}/events", until=tokens_at_least(3)
            )
            # The owner's channel group is on the stream's server, and only there.
            pattern = f"*__group__stream.{stream}.owner"
            subscribed = [bool(client.pubsub_channels(pattern)) for client in raw]
            assert subscribed == [shard_of(stream) == 0, shard_of(stream) == 1]
            assert (await on_b.post(f"/streams/{stream}/stop")).status_code == 202

    for stream in streams:
        log = await finished_log(stream)
        assert (log.status, log.error_code) == (StreamLog.Status.CANCELLED, "stopped")


async def test_the_limits_hold_exactly_across_processes_and_servers(
    relays, alice, alice_token, bob, bob_token
):
    a, b = relays
    await UsageLimit.objects.acreate(user=alice, concurrent_streams=2)
    await UsageLimit.objects.acreate(user=bob, starts_per_minute=3)
    slow = {"json": {"prompt": fake(tokens=3000, delay_ms=20)}}
    async with a.client(alice_token) as alice_a, b.client(alice_token) as alice_b:
        raced = await asyncio.gather(
            *(client.post("/streams/", **slow) for client in [alice_a, alice_b] * 5)
        )
        started = [r.json()["id"] for r in raced if r.status_code == 201]
        for stream in started:
            await alice_b.post(f"/streams/{stream}/stop")
    quick = {"json": {"prompt": fake(tokens=2)}}
    async with a.client(bob_token) as bob_a, b.client(bob_token) as bob_b:
        starts = [
            await client.post("/streams/", **quick) for client in [bob_a, bob_b] * 3
        ]

    assert sorted(r.status_code for r in raced) == [201] * 2 + [429] * 8
    assert all("at once" in r.json()["message"] for r in raced if r.status_code == 429)
    assert [r.status_code for r in starts] == [201] * 3 + [429] * 3
    assert "a minute" in starts[-1].json()["message"]
    assert await StreamLog.objects.filter(user=alice).acount() == 2
    assert await StreamLog.objects.filter(user=bob).acount() == 3


async def _token_on(shard: int, make_token, user) -> str:
    """A token of `user` whose cached lookup lives on `shard`."""
    while True:
        raw = await sync_to_async(make_token)(user)
        key = caches["default"].make_key(f"token:{ApiToken.hash(raw)}")
        if shards.index(key, 2) == shard:
            return raw


async def test_a_dead_server_ends_only_the_cross_process_views_of_its_streams(
    start_relay, redis_shards, alice, make_token
):
    dead = 0
    token = await _token_on(dead, make_token, alice)
    env = {"REDIS_URL": ",".join(s.url for s in redis_shards), "TEST_RUN": "kill"}
    a = start_relay(instance="kill-a", **env)
    b = start_relay(instance="kill-b", **env)
    options = {"tokens": 300, "delay_ms": 20, "pattern": "counter"}
    expected = expected_answer(**options)
    try:
        async with a.client(token) as on_a, b.client(token) as on_b:
            streams = await start_on_each_shard(on_a, fake(**options))
            url = "/streams/{}/events".format
            # Once the far viewers are live, the first server dies.
            far = [asyncio.create_task(read_events(on_b, url(s))) for s in streams]
            near = [asyncio.create_task(read_events(on_a, url(s))) for s in streams]
            await read_events(on_b, url(streams[dead]), until=tokens_at_least(10))
            redis_shards[dead].kill()
            health = await on_b.get("/healthz")
            # A start after the loss: its token's cached lookup was on the dead one.
            after = await on_a.post("/streams/", json={"prompt": fake(tokens=3)})
            far, near = await asyncio.gather(*far), await asyncio.gather(*near)
            await finished_log(streams[dead])
            resume_at = str(offsets(far[dead].events)[-1])
            resumed = await read_events(
                on_b, url(streams[dead]), headers={"Last-Event-ID": resume_at}
            )
    finally:
        a.stop()
        b.stop()

    # The owner's viewers need no Redis: both answers arrive whole.
    assert [token_text(r.events) for r in near] == [expected] * 2
    assert [r.events[-1].event for r in near] == ["done"] * 2
    # Across processes, the stream on the live server goes on to its end...
    alive = far[1 - dead]
    assert token_text(alive.events) == expected and alive.events[-1].event == "done"
    # Live all along (about one frame a fan-out window; 199 in a run here), not
    # caught up from the frame log once the owner's publishing gave up (19).
    assert len(offsets(alive.events)) > 60
    # ...and the one on the dead server ends with a retryable error, whose resume
    # (once its owner has finished) has the rest, exactly.
    error = far[dead].events[-1]
    assert error.event == "error" and json.loads(error.data)["retryable"] is True
    assert json.loads(error.data)["code"] == "unavailable"
    assert token_text(far[dead].events) + token_text(resumed.events) == expected
    assert resumed.events[-1].event == "done"
    for stream in streams:
        log = await finished_log(stream)
        assert (log.status, log.response) == (StreamLog.Status.COMPLETED, expected)
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    assert after.status_code == 201, after.text
