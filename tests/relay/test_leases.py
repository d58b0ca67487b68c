"""A process killed mid-stream leaves its streams `interrupted`, answer kept."""

import json
import os
import signal
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async

from streaming.models import StreamLog
from streaming.relay import leases
from tests.helpers import fake, finished_log, read_events, token_text, tokens_at_least

pytestmark = pytest.mark.timeout(60)


async def test_a_killed_workers_stream_ends_interrupted_with_its_answer_kept(
    start_relay, alice, alice_token
):
    lease = {"STREAM_LEASE_SECONDS": 2, "STREAM_CHECKPOINT_SECONDS": 0.2}
    doomed = start_relay(instance="doomed", **lease)
    survivor = start_relay(instance="survivor", **lease)
    async with doomed.client(alice_token) as client:
        started = await client.post(
            "/streams/",
            json={"prompt": "long " + fake(tokens=500, delay_ms=20, pattern="counter")},
        )
        seen = await read_events(
            client, started.json()["events_url"], until=tokens_at_least(20)
        )
    stream = started.json()["id"]

    os.kill(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait(timeout=10)
    try:
        async with survivor.client(alice_token) as client:
            await client.get("/healthz")  # any request starts the survivor's keeper
            log = await finished_log(stream, timeout=15)
            replay = await read_events(client, f"/streams/{stream}/events")
    finally:
        # Its 2 s lease would reap rows that later tests build and leave streaming.
        survivor.stop()

    assert log.status == StreamLog.Status.INTERRUPTED
    assert log.error_code == "interrupted"
    # The answer as of the last checkpoint (every 0.2 s here) is kept.
    seen_text = token_text(seen.events)
    assert log.response and (
        seen_text.startswith(log.response) or log.response.startswith(seen_text)
    )
    assert log.tokens_estimated and log.output_tokens == -(-len(log.response) // 4)
    error = json.loads(replay.events[-1].data)
    assert (error["code"], error["retryable"]) == ("interrupted", True)
    assert token_text(replay.events) == log.response


@pytest.mark.django_db(transaction=True)
async def test_reaping_ends_only_rows_whose_lease_ran_out(alice, make_log, settings):
    settings.STREAM_LEASE_SECONDS = 30
    stale = await sync_to_async(make_log)(
        alice, status=StreamLog.Status.STREAMING, response="Hello, wor"
    )
    fresh = await sync_to_async(make_log)(
        alice, status=StreamLog.Status.STREAMING, response="Hi"
    )
    done = await sync_to_async(make_log)(alice)
    await StreamLog.objects.filter(pk__in=[stale.pk, done.pk]).aupdate(
        updated_at=stale.created_at - timedelta(minutes=5)
    )

    assert await leases.reap() == 1
    await leases.renew([fresh.pk])

    stale = await StreamLog.objects.aget(pk=stale.pk)
    assert (stale.status, stale.response, stale.output_tokens) == (
        "interrupted",
        "Hello, wor",
        3,
    )
    assert (await StreamLog.objects.aget(pk=fresh.pk)).status == "streaming"
    assert (await StreamLog.objects.aget(pk=done.pk)).status == "completed"
