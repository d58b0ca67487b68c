"""A reconnect storm: a rolling restart sends every viewer of the running streams to a
freshly started process within a second, and every one of them gets its stream."""

import asyncio
from collections import Counter

import httpx
import pytest

from streaming.models import ApiToken
from tests.helpers import (
    Relay,
    expected_answer,
    fake,
    read_events,
    register_log,
    token_text,
)

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

USERS = 100
TABS = 5  # viewers per user: 500 in all
RESUME_AT = 5  # the offset every viewer reconnects with


@pytest.fixture
def fresh_relay(redis_url, relay_env, transactional_db, tmp_path):
    """A `manage.py serve` process started for this test only: nothing warmed up."""
    log_path = tmp_path / "fresh-relay.log"
    register_log("fresh relay", log_path)
    relay = Relay(relay_env, log_path, serve=True)
    yield relay
    relay.stop()


@pytest.fixture
def tokens(django_user_model) -> list[str]:
    """One API token each for USERS users."""
    raw = []
    for number in range(USERS):
        user = django_user_model.objects.create_user(f"viewer{number}")
        token = ApiToken(user=user, name="storm")
        raw.append(token.generate())
        token.save()
    return raw


async def _start(relay: Relay, token: str, prompt: str) -> int:
    async with relay.client(token) as client:
        response = await client.post(
            "/streams/", json={"prompt": prompt, "provider": "openai"}
        )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def test_500_viewers_reconnecting_at_once_to_a_fresh_process_get_their_streams(
    start_relay, fresh_relay, tokens
):
    # The viewers were watching through the process that went (the default grace).
    owner = start_relay(instance="storm-owner", STREAM_ORPHAN_GRACE_SECONDS=30)
    options = {"tokens": 40, "delay_ms": 150, "pattern": "counter"}  # about 6 s
    streams = await asyncio.gather(
        *(_start(owner, token, f"count {fake(**options)}") for token in tokens)
    )
    await asyncio.sleep(0.5)  # the viewers had some text when their process went
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    timeout = httpx.Timeout(30, connect=10)
    clients = [
        fresh_relay.client(token, limits=limits, timeout=timeout) for token in tokens
    ]

    async def reconnect(client: httpx.AsyncClient, stream: int) -> tuple[object, str]:
        try:
            seen = await read_events(
                client,
                f"/streams/{stream}/events",
                headers={"Last-Event-ID": str(RESUME_AT)},
            )
        except httpx.HTTPError as error:
            return type(error).__name__, ""
        last = seen.events[-1].event if seen.events else seen.body
        return seen.status, token_text(seen.events) + f"|{last}"

    try:
        async with asyncio.timeout(60):
            results = await asyncio.gather(
                *(
                    reconnect(client, stream)
                    for client, stream in zip(clients, streams, strict=True)
                    for _tab in range(TABS)
                )
            )
    finally:
        for client in clients:
            await client.aclose()

    assert Counter(status for status, _ in results) == {200: USERS * TABS}
    rest = expected_answer(**options)[RESUME_AT:] + "|done"
    assert Counter(text for _, text in results) == {rest: USERS * TABS}
