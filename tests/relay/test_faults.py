"""Faults of the production stack: the frame log in Redis, a database that goes away at
the end of a stream, and a Redis that restarts mid-stream."""

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.utils import timezone

from streaming.models import StreamLog
from streaming.relay import framelog, leases
from streaming.relay.feed import Ending
from tests.helpers import (
    TcpProxy,
    expected_answer,
    fake,
    finished_log,
    read_events,
    token_text,
    tokens_at_least,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def log_prefix(settings, redis_url) -> str:
    settings.REDIS_PREFIX = f"test-{uuid.uuid4().hex[:8]}"
    return settings.REDIS_PREFIX


# --------------------------------------------------------------------------- the log

TRICKY = ["Hé", "llo 🌍", "\n", "", "wörld ", "👩‍💻", " done"]


async def _log_pieces(stream_id: int, pieces: list[str], ending=None, outcome=None):
    start = 0
    for piece in pieces:
        await framelog.append([framelog.Entry(stream_id, start, piece)])
        start += len(piece)
    if ending is not None:
        await framelog.append([framelog.Entry(stream_id, start, "", ending, outcome)])


@pytest.mark.redis
async def test_the_frame_log_reads_back_exactly_from_every_offset(log_prefix, settings):
    text = "".join(TRICKY)
    ending = Ending("completed", usage={"input_tokens": 3, "output_tokens": 9})
    await _log_pieces(7, TRICKY, ending, {"status": "completed"})

    for offset in range(len(text) + 1):
        record = await framelog.read(7, offset)
        assert (record.start, record.text, record.length) == (
            offset,
            text[offset:],
            len(text),
        )
        assert record.ending == ending and record.outcome == {"status": "completed"}

    client = framelog._client(7)
    ttl = await client.ttl(framelog.key(7))
    assert 0 < ttl <= settings.STREAM_LOG_TTL_SECONDS
    assert await framelog.read(8) is None  # never logged


@pytest.mark.redis
async def test_a_repeated_append_changes_nothing(log_prefix):
    await _log_pieces(9, ["Hello, ", "world"])
    await framelog.append([framelog.Entry(9, 7, "world")])  # e.g. retried after a blip

    record = await framelog.read(9)
    assert (record.text, record.ending) == ("Hello, world", None)


@pytest.mark.redis
async def test_a_log_missing_its_beginning_is_not_read_as_the_answer(log_prefix):
    await _log_pieces(10, ["Hello, ", "world", "!"])
    client = framelog._client(10)
    first_id = (await client.xrange(framelog.key(10)))[0][0]
    await client.xdel(framelog.key(10), first_id)  # as if Redis lost it

    assert await framelog.read(10) is None
    assert (await framelog.read(10, 7)).text == "world!"


async def test_the_frame_log_is_off_without_redis(settings):
    settings.REDIS_URL = ""
    await framelog.append([framelog.Entry(11, 0, "Hello")])
    assert await framelog.read(11) is None


# --------------------------------------------------------------------------- reaping


@pytest.fixture
def stale_log(alice, make_log):
    def make(**fields) -> StreamLog:
        log = make_log(alice, status=StreamLog.Status.STREAMING, **fields)
        StreamLog.objects.filter(pk=log.pk).update(
            updated_at=timezone.now() - timedelta(minutes=5)
        )
        return log

    return sync_to_async(make)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_reaping_writes_the_outcome_its_owner_could_not(
    log_prefix, stale_log, settings
):
    settings.STREAM_LEASE_SECONDS = 30
    log = await stale_log(response="Hel")
    finished_at = timezone.now()
    outcome = {
        "status": "completed",
        "response": "Hello, world",
        "error_code": "",
        "error_message": "",
        "ttft_ms": 12,
        "duration_ms": 340,
        "input_tokens": 5,
        "output_tokens": 4,
        "tokens_estimated": False,
        "attempts": 1,
        "finished_at": finished_at,
    }
    ending = Ending("completed", usage={"input_tokens": 5, "output_tokens": 4})
    await _log_pieces(log.pk, ["Hello, ", "world"], ending, outcome)

    assert await leases.reap() == 1

    log = await StreamLog.objects.aget(pk=log.pk)
    assert (log.status, log.response, log.error_code) == (
        "completed",
        "Hello, world",
        "",
    )
    assert (log.ttft_ms, log.duration_ms, log.input_tokens, log.output_tokens) == (
        12,
        340,
        5,
        4,
    )
    assert log.finished_at == finished_at and not log.tokens_estimated


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_reaping_keeps_the_text_the_log_has_beyond_the_checkpoint(
    log_prefix, stale_log, settings
):
    settings.STREAM_LEASE_SECONDS = 30
    behind = await stale_log(response="Hel")
    ahead = await stale_log(response="Hello, world, and more")
    await _log_pieces(behind.pk, ["Hello, ", "wor"])
    await _log_pieces(ahead.pk, ["Hello"])  # the log fell behind the checkpoint

    assert await leases.reap() == 2

    behind = await StreamLog.objects.aget(pk=behind.pk)
    assert (behind.status, behind.response, behind.output_tokens) == (
        "interrupted",
        "Hello, wor",
        3,
    )
    ahead = await StreamLog.objects.aget(pk=ahead.pk)
    assert (ahead.status, ahead.response) == ("interrupted", "Hello, world, and more")


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def database_proxy(transactional_db):
    """A proxy in front of the test database that the test can cut."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL (e.g. postgres://...)")
    proxy = TcpProxy(connection.settings_dict["HOST"] or "127.0.0.1", 5432)
    settings_dict = connection.settings_dict
    proxy.url = (
        f"postgres://{settings_dict['USER']}@127.0.0.1:{proxy.port}/"
        f"{settings_dict['NAME']}"
    )
    yield proxy
    proxy.close()


def _cut_after(proxy: TcpProxy, tokens: int):
    """An `until` for read_events that cuts the database after `tokens` tokens and
    reads on to the end."""

    def until(events) -> bool:
        if proxy.accepting and tokens_at_least(tokens)(events):
            proxy.cut()
        return False

    return until


@pytest.mark.postgres
async def test_an_answer_survives_the_database_going_away_before_its_end(
    start_relay, database_proxy, alice_token
):
    relay = start_relay(
        instance="db-proxy",
        DATABASE_URL=database_proxy.url,
        DATABASE_POOL_TIMEOUT_SECONDS=2,
    )
    options = {"tokens": 60, "delay_ms": 20, "pattern": "counter"}
    async with relay.client(alice_token) as client:
        started = await client.post("/streams/", json={"prompt": fake(**options)})
        assert started.status_code == 201
        received = await read_events(
            client,
            started.json()["events_url"],
            until=_cut_after(database_proxy, tokens=5),
        )
        # While it is away, new work gets a clear 503, not a 500.
        refused = await client.post("/streams/", json={"prompt": "hello"})
        await asyncio.sleep(1)
        while_away = await StreamLog.objects.aget(pk=started.json()["id"])
        database_proxy.restore()
        log = await finished_log(started.json()["id"], timeout=30)
        after = await client.post("/streams/", json={"prompt": "hello"})

    assert [e.event for e in received.events][-2:] == ["usage", "done"]
    assert token_text(received.events) == expected_answer(**options)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert refused.json()["error"] == "unavailable"
    assert (log.status, log.response) == ("completed", expected_answer(**options))
    assert log.output_tokens == 60 and not log.tokens_estimated
    assert after.status_code == 201
    # The stream ended while the database was away; its row was written after.
    assert while_away.status == "streaming"


@pytest.mark.postgres
@pytest.mark.redis
async def test_an_outcome_the_database_missed_is_written_from_the_frame_log(
    start_relay, database_proxy, alice_token
):
    relay = start_relay(
        instance="db-proxy-log",
        DATABASE_URL=database_proxy.url,
        DATABASE_POOL_TIMEOUT_SECONDS=1,
        STREAM_FINAL_WRITE_SECONDS=0.5,  # gives up long before the database is back
        STREAM_LEASE_SECONDS=2,
    )
    options = {"tokens": 40, "delay_ms": 20, "pattern": "counter"}
    try:
        async with relay.client(alice_token) as client:
            started = await client.post("/streams/", json={"prompt": fake(**options)})
            received = await read_events(
                client,
                started.json()["events_url"],
                until=_cut_after(database_proxy, tokens=5),
            )
            await _logged(relay, "could not record its outcome")
            database_proxy.restore()
            log = await finished_log(started.json()["id"], timeout=30)
    finally:
        relay.stop()  # its 2 s lease would reap rows that later tests build

    assert [e.event for e in received.events][-1] == "done"
    assert (log.status, log.response) == ("completed", expected_answer(**options))
    assert log.output_tokens == 40 and log.attempts == 1


async def _logged(relay, text: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while text not in relay.log():
        assert asyncio.get_running_loop().time() < deadline, f"never logged: {text}"
        await asyncio.sleep(0.1)


# --------------------------------------------------------------------------- Redis


@pytest.mark.redis
async def test_streams_and_workers_come_through_a_redis_restart(
    start_relay, private_redis, alice_token
):
    env = {"REDIS_URL": private_redis.url, "REDIS_PREFIX": "restart"}
    owner = start_relay(instance="restart-a", **env)
    other = start_relay(instance="restart-b", **env)
    options = {"tokens": 150, "delay_ms": 20, "pattern": "counter"}
    answer = expected_answer(**options)
    killed = asyncio.Event()

    async def watch(relay, stream: dict, *, kill: bool = False):
        def until(events) -> bool:
            if kill and not killed.is_set() and tokens_at_least(10)(events):
                private_redis.kill()
                killed.set()
            return False

        async with relay.client(alice_token, timeout=30) as client:
            return await read_events(client, stream["events_url"], until=until)

    async with owner.client(alice_token) as client:
        streams = [
            (await client.post("/streams/", json={"prompt": fake(**options)})).json()
            for _ in range(3)
        ]
    viewers = [
        asyncio.create_task(watch(owner, stream, kill=i == 0))
        for i, stream in enumerate(streams)
    ]
    viewers.append(asyncio.create_task(watch(other, streams[0])))
    await killed.wait()
    await asyncio.sleep(1)
    private_redis.start()
    results = await asyncio.gather(*viewers)

    # Every viewer got an ending; what ended `done` is exact, an error is retryable.
    print("endings after the restart:", [r.events[-1].event for r in results])
    for received in results:
        last = received.events[-1]
        assert last.event in ("done", "error"), received.events[-3:]
        if last.event == "done":
            assert token_text(received.events) == answer
        else:
            assert json.loads(last.data)["retryable"] is True
    # The owner's viewers do not need Redis at all.
    assert all(r.events[-1].event == "done" for r in results[:3])
    for stream in streams:
        log = await finished_log(stream["id"], timeout=15)
        assert (log.status, log.response) == ("completed", answer)

    # Both workers recovered without a restart: a new stream crosses processes again.
    await asyncio.sleep(1)
    async with owner.client(alice_token) as client:
        fresh = await client.post("/streams/", json={"prompt": fake(**options)})
        assert fresh.status_code == 201
    async with other.client(alice_token) as client:
        across = await read_events(client, fresh.json()["events_url"])
        health = await client.get("/healthz")
    assert token_text(across.events) == answer and across.events[-1].event == "done"
    assert health.status_code == 200, health.text
