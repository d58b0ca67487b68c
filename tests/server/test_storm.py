"""A reconnect storm: a rolling restart sends every viewer of the running streams to a
freshly started process within a second, and every one of them gets its stream."""

import asyncio
import json
from collections import Counter

import httpx
import pytest

from streaming.models import ApiToken
from tests.helpers import (
    Event,
    Received,
    Relay,
    fake,
    finished_log,
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
    relay = Relay(relay_env, log_path)
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


async def _stop(relay: Relay, token: str, stream: int) -> None:
    async with relay.client(token) as client:
        response = await client.post(f"/streams/{stream}/stop")
    assert response.status_code == 202, response.text


class _Storm:
    """Viewers that reconnect at once; `settled` is set once each has had live text
    (a second token frame: the stream grew while it watched) or has ended."""

    def __init__(self, total: int) -> None:
        self.remaining = total
        self.settled = asyncio.Event()

    def _settle(self) -> None:
        self.remaining -= 1
        if not self.remaining:
            self.settled.set()

    async def view(self, client: httpx.AsyncClient, stream: int) -> Received | str:
        live = False

        def watch(events: list[Event]) -> bool:
            nonlocal live
            if not live and sum(event.event == "token" for event in events) >= 2:
                live = True
                self._settle()
            return False  # read on, to the end

        try:
            return await read_events(
                client,
                f"/streams/{stream}/events",
                headers={"Last-Event-ID": str(RESUME_AT)},
                until=watch,
            )
        except httpx.HTTPError as error:
            return type(error).__name__
        finally:
            if not live:
                self._settle()


async def test_500_viewers_reconnecting_at_once_to_a_fresh_process_get_their_streams(
    start_relay, fresh_relay, tokens
):
    # The viewers were watching through the process that went (the default grace).
    owner = start_relay(instance="storm-owner", STREAM_ORPHAN_GRACE_SECONDS=30)
    prompt = "count " + fake(tokens=1000, delay_ms=100, pattern="counter")  # 100 s
    streams = await asyncio.gather(*(_start(owner, token, prompt) for token in tokens))
    async with owner.client() as client:
        owner_health = await client.get("/healthz")
    await asyncio.sleep(0.5)  # the viewers had some text when their process went
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    timeout = httpx.Timeout(30, connect=10)
    clients = [
        fresh_relay.client(token, limits=limits, timeout=timeout) for token in tokens
    ]
    storm = _Storm(USERS * TABS)
    try:
        async with asyncio.timeout(60):
            viewers = asyncio.gather(
                *(
                    storm.view(client, stream)
                    for client, stream in zip(clients, streams, strict=True)
                    for _tab in range(TABS)
                )
            )
            await storm.settled.wait()
            # Every viewer watches its stream live: end them all.
            await asyncio.gather(
                *(
                    _stop(owner, token, stream)
                    for token, stream in zip(tokens, streams, strict=True)
                )
            )
            results = await viewers
    finally:
        for client in clients:
            await client.aclose()
    async with fresh_relay.client() as client:
        health = await client.get("/healthz")

    statuses = Counter(getattr(seen, "status", seen) for seen in results)
    assert statuses == {200: USERS * TABS}
    answers = {stream: (await finished_log(stream)).response for stream in streams}
    views = zip([s for s in streams for _tab in range(TABS)], results, strict=True)
    for stream, seen in views:
        assert token_text(seen.events) == answers[stream][RESUME_AT:]
        assert seen.events[-1].event == "error"
        assert json.loads(seen.events[-1].data)["code"] == "stopped"
    # The storm is over: every pool has connections to hand out again.
    assert health.status_code == 200, health.text
    assert health.json()["checks"]["redis_pools"]["ok"] is True
    # One cache pool per process, however many streams run.
    assert owner_health.json()["checks"]["redis_pools"]["pools"]["cache"]["max"] == 50
