"""REDIS_URL naming two servers, in this process: every key lives on the server of its
hash tag, a stream's frame log and a user's counters each on one, and a server that
dies fails only what lives on it. (Across relay processes: tests/server/test_shards.py.)
"""

import asyncio
import time

import pytest
import redis
from django.core.cache import cache

from streaming import pools, shards
from streaming.accounting import limits
from streaming.relay import framelog
from streaming.relay.feed import Ending

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


@pytest.fixture
def sharded(settings, redis_shards) -> list[redis.Redis]:
    """Settings as REDIS_URL="<first>,<second>" makes them; a raw client of each."""
    urls = [server.url for server in redis_shards]
    settings.REDIS_URL, settings.REDIS_URLS = ",".join(urls), urls
    settings.CACHES = {
        "default": {
            "BACKEND": "streaming.shards.ShardedRedisCache",
            "LOCATION": urls,
            "KEY_PREFIX": "sharded",
        }
    }
    clients = [redis.Redis.from_url(url) for url in urls]
    yield clients
    for client in clients:
        client.close()


def ids_on_each_shard(count: int = 2) -> list[int]:
    """The first stream id (or user id) whose tag lands on each shard."""
    return [
        next(i for i in range(1, 1000) if shards.index(shards.stream_tag(i), 2) == n)
        for n in range(count)
    ]


def test_keys_spread_over_the_servers_by_their_hash_tag():
    placed = [
        shards.index(f"relay:stream:{shards.stream_tag(i)}:log", 2) for i in range(1000)
    ]

    assert 400 < placed.count(0) < 600  # an even share each
    # Only the tag counts: whatever surrounds it, a stream's keys are on one server.
    assert all(
        shards.index(f"x:{shards.stream_tag(i)}:y", 2) == placed[i] for i in range(1000)
    )
    # The same rule as Redis Cluster's (CRC16 slots), so it never changes.
    assert shards.index("{s:1}", 2) == shards.index("s:1", 2)
    assert shards.index("anything", 1) == 0


def test_the_cache_keeps_each_key_on_one_server(sharded):
    keys = [f"k{i}" for i in range(20)]
    cache.set_many({key: i for i, key in enumerate(keys)})
    cache.set("single", "value")

    where = {
        key: [bool(c.exists(cache.make_key(key))) for c in sharded] for key in keys
    }
    assert all(sum(found) == 1 for found in where.values())
    assert {found.index(True) for found in where.values()} == {0, 1}
    for key, found in where.items():
        assert found.index(True) == shards.index(cache.make_key(key), 2)
    assert cache.get_many([*keys, "missing"]) == {key: i for i, key in enumerate(keys)}
    assert cache.get("single") == "value"

    cache.delete_many(keys)
    assert cache.get_many(keys) == {}
    assert cache.get("single") == "value"


async def test_a_users_counters_live_on_one_server_and_count_exactly(sharded):
    def shard(key: str) -> int:
        return shards.index(cache.make_key(key), 2)

    now = time.time()
    for user in range(1, 21):
        home = shard(limits._limits_key(user))
        assert shard(limits._day_key("tokens", user, now)) == home
        assert shard(limits._day_key("cost", user, now)) == home
    user_id = 4242
    day = limits._day_key("tokens", user_id, now)
    cost = limits._day_key("cost", user_id, now)
    home = shard(day)

    def count() -> None:
        limits.count(user_id, tokens=5, cost=7)

    await asyncio.gather(*(asyncio.to_thread(count) for _ in range(40)))

    assert int(sharded[home].get(cache.make_key(day))) == 200
    assert int(sharded[home].get(cache.make_key(cost))) == 280
    assert not sharded[1 - home].exists(cache.make_key(day))


async def test_a_dead_server_fails_only_the_streams_logged_on_it(sharded, redis_shards):
    framelog._clients.pop(asyncio.get_running_loop(), None)
    first, second = ids_on_each_shard()
    done = Ending("completed", usage={"input_tokens": 1, "output_tokens": 2})
    await framelog.append(
        [framelog.Entry(first, 0, "Hello"), framelog.Entry(second, 0, "Hi")]
    )
    assert sharded[0].exists(framelog.key(first))
    assert not sharded[1].exists(framelog.key(first))
    assert sharded[1].exists(framelog.key(second))

    redis_shards[0].kill()
    with pytest.raises(framelog.Unlogged) as failed:
        await framelog.append(
            [
                framelog.Entry(first, 5, ", world", done, {"status": "completed"}),
                framelog.Entry(second, 2, " there", done, {"status": "completed"}),
            ]
        )

    assert failed.value.stream_ids == {first}
    assert isinstance(failed.value.__cause__, redis.ConnectionError)
    record = await framelog.read(second)
    assert (record.text, record.ending, record.outcome) == (
        "Hi there",
        done,
        {"status": "completed"},
    )
    with pytest.raises(redis.ConnectionError):
        await framelog.read(first)
    framelog._clients.pop(asyncio.get_running_loop(), None)


@pytest.mark.parametrize("layer", ["pubsub", "core"])
async def test_each_streams_channel_groups_are_on_the_server_of_its_keys(
    sharded, redis_shards, layer
):
    classes = {"pubsub": pools.RedisPubSubChannelLayer, "core": pools.RedisChannelLayer}
    channels = classes[layer](hosts=[s.url for s in redis_shards], prefix="t")
    channel = await channels.new_channel()
    for stream in range(1, 21):
        await channels.group_add(f"stream.{stream}.viewers", channel)

    for stream in range(1, 21):
        if layer == "pubsub":
            name = f"t__group__stream.{stream}.viewers"
            found = [bool(c.pubsub_channels(name)) for c in sharded]
        else:
            found = [
                bool(c.exists(f"t:group:stream.{stream}.viewers")) for c in sharded
            ]
        assert found.index(True) == shards.index(shards.stream_tag(stream), 2)
        assert sum(found) == 1
    await channels.flush()


@pytest.mark.django_db
async def test_healthz_reports_each_server_and_is_degraded_while_one_is_down(
    async_client, sharded, redis_shards
):
    healthy = await async_client.get("/healthz")
    redis_shards[1].kill()
    degraded = await async_client.get("/healthz")

    assert healthy.status_code == 200
    assert healthy.json()["status"] == "ok"
    assert [s["ok"] for s in healthy.json()["checks"]["cache"]["shards"]] == [True] * 2
    # Every process shares the servers: out of rotation, this one would help nobody.
    assert degraded.status_code == 200
    body = degraded.json()
    assert body["status"] == "degraded"
    cache_check = body["checks"]["cache"]
    assert cache_check["ok"] is False
    assert [s["ok"] for s in cache_check["shards"]] == [True, False]
    assert cache_check["shards"][1]["error"] == "ConnectionError"
    assert str(redis_shards[1].port) not in degraded.content.decode()

    redis_shards[0].kill()
    down = await async_client.get("/healthz")
    assert down.status_code == 503
    assert down.json()["status"] == "unavailable"
