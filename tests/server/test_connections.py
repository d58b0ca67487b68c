"""Open streams hold no database connection: 200 concurrent streams complete against a
PostgreSQL role limited to 10 connections; a burst's connections are given back."""

import asyncio
import uuid

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from streaming.models import StreamLog
from tests.helpers import database_url, fake, read_events

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]

ROLE = "relay_limited"


@pytest.fixture
def limited_database_url(transactional_db) -> str:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL")
    database = connection.settings_dict["NAME"]
    host = connection.settings_dict["HOST"] or "127.0.0.1"
    port = connection.settings_dict["PORT"] or 5432
    with connection.cursor() as cursor:
        cursor.execute(
            "DO $$ BEGIN CREATE ROLE relay_limited LOGIN; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        cursor.execute(f"ALTER ROLE {ROLE} LOGIN CONNECTION LIMIT 10")
        cursor.execute(f'GRANT CONNECT ON DATABASE "{database}" TO {ROLE}')
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
        cursor.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {ROLE}"
        )
        cursor.execute(
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {ROLE}"
        )
    return f"postgres://{ROLE}@{host}:{port}/{database}"


def _connections_in_use() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", [ROLE]
        )
        return cursor.fetchone()[0]


async def test_200_concurrent_streams_complete_with_10_database_connections(
    start_relay, limited_database_url, alice, alice_token
):
    relay = start_relay(
        instance="limited", DATABASE_URL=limited_database_url, DATABASE_POOL_SIZE=8
    )
    peak = 0

    async def watch_connections() -> None:
        nonlocal peak
        while True:
            peak = max(peak, await sync_to_async(_connections_in_use)())
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch_connections())
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=0)
    try:
        async with relay.client(alice_token, limits=limits, timeout=60) as client:
            results = await asyncio.gather(
                *(
                    read_events(
                        client,
                        "/chat/stream",
                        params={"prompt": f"n{i} " + fake(tokens=40, delay_ms=25)},
                    )
                    for i in range(200)
                )
            )
    finally:
        watcher.cancel()

    assert [r.status for r in results] == [200] * 200
    assert all(r.events[-1].event == "done" for r in results)
    assert 0 < peak <= 10
    # Viewers get `done` a moment before each row is written.
    completed = StreamLog.objects.filter(status="completed")
    for _ in range(100):
        if await completed.acount() == 200:
            break
        await asyncio.sleep(0.1)
    assert await completed.acount() == 200


def _connections_named(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        )
        return cursor.fetchone()[0]


@pytest.fixture
def application_name(transactional_db) -> str:
    """A name for one relay's connections, to count them in pg_stat_activity."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL")
    return f"relay-idle-{uuid.uuid4().hex[:8]}"


async def test_the_pool_gives_a_bursts_connections_back(
    start_relay, application_name, alice_token, alice_log
):
    name = application_name
    url = f"{database_url(connection.settings_dict)}?application_name={name}"
    relay = start_relay(
        instance=name,
        DATABASE_URL=url,
        DATABASE_POOL_SIZE=6,
        DATABASE_POOL_MAX_IDLE_SECONDS=1,
    )
    count = sync_to_async(_connections_named)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
    async with relay.client(alice_token, limits=limits) as client:
        burst = await asyncio.gather(
            *(client.get(f"/streams/{alice_log.pk}/events") for _ in range(100))
        )
    after_burst = await count(name)

    # One unused connection is closed per max_idle, down to min_size (1).
    for _ in range(100):
        if await count(name) <= 1:
            break
        await asyncio.sleep(0.2)

    assert {response.status_code for response in burst} == {200}
    assert after_burst >= 3
    assert await count(name) <= 1
