"""Our own `openai` provider pointed at our own /v1: relay A's upstream is relay B,
which answers from the fake provider (or its demo). Both keep a row of the stream."""

import json

import pytest

from streaming.models import StreamLog
from tests.helpers import (
    expected_answer,
    fake,
    finished_log,
    prompt_tokens,
    read_events,
    stream_id,
    token_text,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def _chained(start_relay, relay_b, token_b: str, model: str):
    return start_relay(
        instance="chained",
        OPENAI_BASE_URL=f"{relay_b.url}/v1",
        OPENAI_API_KEY=token_b,
        OPENAI_MODEL=model,
        DEFAULT_PROVIDER="openai",
    )


async def _rows_of(user) -> list[StreamLog]:
    return [row async for row in StreamLog.objects.filter(user=user)]


async def test_a_relay_streams_through_another_relay_exactly(
    start_relay, relay, alice, alice_token, bob, bob_token
):
    relay_a = _chained(start_relay, relay, bob_token, "openai/gpt-4o-mini")
    options = {"pattern": "tricky", "tokens": 68, "delay_ms": 1}
    prompt = "Through two relays " + fake(**options)

    async with relay_a.client(alice_token) as client:
        params = {"prompt": prompt, "provider": "openai"}
        received = await read_events(client, "/chat/stream", params=params)

    answer = expected_answer(**options)
    assert token_text(received.events) == answer
    assert [e.event for e in received.events[-2:]] == ["usage", "done"]
    # B's usage chunk, which A asked for, is A's usage: the fake's own counts.
    usage = {"input_tokens": prompt_tokens(prompt), "output_tokens": 68}
    assert json.loads(received.events[-2].data) == usage
    row_a = await finished_log(stream_id(received))
    assert (row_a.user_id, row_a.status) == (alice.pk, "completed")
    assert (row_a.provider, row_a.model) == ("openai", "openai/gpt-4o-mini")
    assert row_a.response == answer
    [row_b] = await _rows_of(bob)
    row_b = await finished_log(row_b.pk)
    assert (row_b.status, row_b.provider, row_b.model) == (
        "completed",
        "openai",
        "gpt-4o-mini",
    )
    assert (row_b.prompt, row_b.response) == (prompt, answer)
    assert (row_b.input_tokens, row_b.output_tokens) == (row_a.input_tokens, 68)
    assert bob_token not in received.everything()


async def test_a_relay_passes_its_system_prompt_and_limit_to_another(
    start_relay, relay, alice_token, bob, bob_token
):
    relay_a = start_relay(
        instance="chained",
        OPENAI_BASE_URL=f"{relay.url}/v1",
        OPENAI_API_KEY=bob_token,
        OPENAI_MODEL="demo",
        SYSTEM_PROMPT="Be brief.",
        MAX_OUTPUT_TOKENS=6,
        OPENAI_MAX_TOKENS_PARAM="max_tokens",
    )
    async with relay_a.client(alice_token) as client:
        params = {"prompt": "Hi", "provider": "openai"}
        received = await read_events(client, "/chat/stream", params=params)

    assert token_text(received.events) == "This answer comes from the **offline"
    [row_b] = await _rows_of(bob)
    row_b = await finished_log(row_b.pk)
    assert (row_b.provider, row_b.model, row_b.system_prompt) == (
        "demo",
        "demo",
        "Be brief.",
    )
    assert row_b.output_tokens == 6
