"""Concurrency slots follow the streams that hold them, and limits never lock anyone
out: a killed or drained process, a Redis restart and refused starts leave each user
exactly their limits, through real relay processes and the real SDKs.

Streams here run until stopped (a long orphan grace), so that a test decides when
they end."""

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from streaming.models import StreamLog
from tests.helpers import BASE_DIR, fake, finished_log, free_port

pytestmark = pytest.mark.timeout(120)

SLOW = fake(tokens=3000, delay_ms=20, pattern="counter")  # a minute, unless stopped
QUICK = fake(tokens=2)


def fresh(**env: object) -> dict[str, object]:
    """Relay settings no other test shares (a fresh process, its cache empty)."""
    return {"TEST_RUN": uuid.uuid4().hex, "STREAM_ORPHAN_GRACE_SECONDS": 600, **env}


@pytest.fixture
def own_relay(start_relay):
    """`own_relay(instance="a", **env)`: a relay of this test only (`fresh`), stopped
    when the test ends, so its database connections go back at once."""
    started = []

    def start(*, instance: str = "a", **env: object):
        started.append(start_relay(instance=instance, **fresh(**env)))
        return started[-1]

    yield start
    for relay in started:
        relay.stop()


async def post_stream(client: httpx.AsyncClient, prompt: str) -> httpx.Response:
    return await client.post("/streams/", json={"prompt": prompt, "provider": "openai"})


def at_once(response: httpx.Response) -> bool:
    """Refused for concurrency (not for the starts per minute)."""
    return response.status_code == 429 and "at once" in response.json()["message"]


async def stop_all(client: httpx.AsyncClient, responses: list[httpx.Response]) -> None:
    started = [r.json()["id"] for r in responses if r.status_code == 201]
    for stream in started:
        await client.post(f"/streams/{stream}/stop")
    for stream in started:
        await finished_log(stream)


async def test_streams_killed_with_their_process_free_their_slots_within_the_lease(
    own_relay, alice, alice_token
):
    lease = 3
    env = {"LIMIT_CONCURRENT_STREAMS": 2, "STREAM_LEASE_SECONDS": lease}
    doomed = own_relay(instance="slots-doomed", **env)
    survivor = own_relay(instance="slots-survivor", **env)
    async with doomed.client(alice_token) as client:
        started = [await post_stream(client, f"doomed {i} {SLOW}") for i in range(2)]
    assert [r.status_code for r in started] == [201, 201]
    # (own_relay stops the survivor, whose short lease would reap rows that later
    # tests build and leave streaming.)
    async with survivor.client(alice_token) as client:
        # The limit holds across processes.
        assert at_once(await post_stream(client, "meanwhile " + SLOW))

        os.kill(doomed.process.pid, signal.SIGKILL)
        doomed.process.wait(timeout=10)
        killed_at = time.monotonic()
        refused = []
        while not (again := await post_stream(client, "again " + SLOW)).is_success:
            # Retrying must not push the lockout back.
            assert at_once(again), again.text
            assert time.monotonic() - killed_at < lease + 5, "still locked out"
            refused.append(again)
            await asyncio.sleep(0.2)
        assert again.status_code == 201
        assert refused and all(r.headers["Retry-After"] == "5" for r in refused)
        # The reaper ends the dead process's rows; the refused starts wrote none.
        for response in started:
            log = await finished_log(response.json()["id"], timeout=15)
            assert log.status == StreamLog.Status.INTERRUPTED
        assert await StreamLog.objects.filter(user=alice).acount() == 3
        await stop_all(client, [again])


@pytest.fixture
def serve(relay_env, transactional_db, tmp_path):
    """`serve(**env)`: `manage.py serve` with a 1 s drain; returns (process, url)."""
    processes: list[subprocess.Popen] = []

    def start(**env: object) -> tuple[subprocess.Popen, str]:
        port = free_port()
        with open(tmp_path / "serve.log", "a") as log:
            process = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--port", str(port)]
                + ["--drain", "1"],
                cwd=BASE_DIR,
                env=relay_env | {name: str(value) for name, value in env.items()},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=2)
                return process, url
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "serve.log").read_text()) from None
                time.sleep(0.05)

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


async def test_a_drained_stream_frees_its_slot(serve, own_relay, alice, alice_token):
    env = fresh(LIMIT_CONCURRENT_STREAMS=1)
    draining, url = serve(**env)
    other = own_relay(**env)
    headers = {"Authorization": f"Bearer {alice_token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=15) as client:
        running = await post_stream(client, "drained " + SLOW)
    assert running.status_code == 201
    async with other.client(alice_token) as client:
        assert at_once(await post_stream(client, "meanwhile " + SLOW))

        draining.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(draining.wait, 20) == 0
        log = await finished_log(running.json()["id"])
        assert log.status == StreamLog.Status.INTERRUPTED

        again = await post_stream(client, "after the drain " + SLOW)
        assert again.status_code == 201
        await stop_all(client, [again])


@pytest.mark.redis
async def test_the_limit_holds_exactly_through_a_redis_restart(
    own_relay, private_redis, alice, alice_token
):
    env = {"REDIS_URL": private_redis.url, "REDIS_PREFIX": "slots-restart"}
    relay = own_relay(LIMIT_CONCURRENT_STREAMS=3, **env)

    async def race(client: httpx.AsyncClient, name: str) -> list[httpx.Response]:
        return await asyncio.gather(
            *(post_stream(client, f"{name} {i} {SLOW}") for i in range(20))
        )

    async with relay.client(alice_token) as client:
        running = [await post_stream(client, f"before {i} {SLOW}") for i in range(3)]
        assert [r.status_code for r in running] == [201] * 3

        private_redis.kill()  # every key is gone
        private_redis.start()
        during = await race(client, "during")
        await stop_all(client, running)  # the streams that ran through the restart
        after = await race(client, "after")
        await stop_all(client, after)
        last = await post_stream(client, "and then " + QUICK)

    assert all(at_once(r) for r in during), [r.status_code for r in during]
    assert sorted(r.status_code for r in after) == [201] * 3 + [429] * 17
    assert last.status_code == 201  # nobody is locked out
    assert await StreamLog.objects.filter(user=alice).acount() == 7


async def test_a_start_refused_for_concurrency_costs_no_start(
    own_relay, alice, alice_token
):
    relay = own_relay(LIMIT_CONCURRENT_STREAMS=1, LIMIT_STARTS_PER_MINUTE=3)
    async with relay.client(alice_token) as client:
        first = await post_stream(client, "first " + SLOW)
        refused = [await post_stream(client, f"refused {i} {SLOW}") for i in range(20)]
        await stop_all(client, [first])
        second = await post_stream(client, "second " + SLOW)
        await stop_all(client, [second])
        third = await post_stream(client, "third " + SLOW)
        await stop_all(client, [third])
        fourth = await post_stream(client, "fourth " + SLOW)

    assert first.status_code == 201 and all(at_once(r) for r in refused)
    assert (second.status_code, third.status_code) == (201, 201)
    # Three starts in the minute, refused ones not counted: the fourth is one too many.
    assert fourth.status_code == 429 and "a minute" in fourth.json()["message"]
    assert await StreamLog.objects.filter(user=alice).acount() == 3


async def test_the_per_minute_retry_after_says_when_a_start_works(
    own_relay, alice, alice_token
):
    relay = own_relay(LIMIT_STARTS_PER_MINUTE=2)
    rows = StreamLog.objects.filter(user=alice)

    async def age(**earlier: float) -> None:
        """Move time: make the rows named by prompt this much older."""
        for prompt, seconds in earlier.items():
            row = await rows.aget(prompt__startswith=prompt)
            await rows.filter(pk=row.pk).aupdate(
                created_at=row.created_at - timedelta(seconds=seconds)
            )

    def wait_of(response: httpx.Response) -> int:
        """Retry-After, once it agrees with the body and the message."""
        wait = int(response.headers["Retry-After"])
        body = response.json()
        assert (body["error"], body["retry_after"]) == ("rate_limited", wait)
        assert body["message"].endswith(f"try again in {wait} s.")
        return wait

    async with relay.client(alice_token) as client:
        for name in ("older", "newer"):
            started = await post_stream(client, f"{name} {QUICK}")
            await finished_log(started.json()["id"])
        # Started 45.1 and 40.1 s ago: the older one leaves the minute in 14.9 s (the
        # requests below may take up to 0.9 s in all).
        now = timezone.now()
        for name, seconds in (("older", 45.1), ("newer", 40.1)):
            await rows.filter(prompt__startswith=name).aupdate(
                created_at=now - timedelta(seconds=seconds)
            )
        refused = await post_stream(client, "third " + QUICK)
        wait = wait_of(refused)
        assert wait == 15

        await age(older=wait - 1, newer=wait - 1)  # one second too early
        too_early = await post_stream(client, "third " + QUICK)
        assert too_early.status_code == 429 and wait_of(too_early) == 1

        await age(older=1, newer=1)  # `wait` seconds after the refusal
        works = await post_stream(client, "third " + QUICK)
        assert works.status_code == 201, works.text
        await finished_log(works.json()["id"])
