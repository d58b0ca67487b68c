"""The fake provider's reasoning (`reasoning=N`), read as each official SDK reads it
from the fake server itself: the exact text, in the order and the blocks the real
APIs send it, and nothing of it when reasoning=0."""

import base64
import hashlib
from urllib.parse import urlencode

import anthropic
import openai
import pytest

from tests.helpers import (
    expected_reasoning,
    fake,
    new_key,
    parse_sse,
    provider_reasoning,
    provider_text,
)

pytestmark = pytest.mark.timeout(60)

# Any name: the fake echoes it, and the SDK warns of none that is not real.
CLAUDE = "claude-fake"
FIELDS = ["reasoning_content", "reasoning"]
PACINGS = [
    pytest.param({}, id="at-once"),
    pytest.param({"delay_ms": 1}, id="paced"),
    # every event in two writes, cut inside a multi-byte character
    pytest.param({"split": 1}, id="split"),
]


def _openai(server, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=server.openai_base_url, api_key=key, max_retries=0
    )


def _anthropic(server, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=server.anthropic_base_url, api_key=key, max_retries=0
    )


def _signature(reasoning: str) -> str:
    return base64.b64encode(hashlib.sha256(reasoning.encode()).digest()).decode()


def _ask(options: dict) -> list[dict]:
    return [{"role": "user", "content": "Think first " + fake(**options)}]


def test_the_first_reasoning_tokens_hold_a_line_end_and_non_ascii_text():
    assert provider_reasoning("reasoning=4") == (
        "Step 1: think. Step 2: check the premise.\n"
        " Step 3: weigh the caf\u00e9's r\u00e9sum\u00e9. Step 4: so far so good \U0001f914"
    )
    assert provider_reasoning("reasoning=0") == ""
    assert expected_reasoning(reasoning=2, key=new_key()) == (
        "Step 1: think. Step 2: check the premise.\n"
    )


@pytest.mark.parametrize("pacing", PACINGS)
@pytest.mark.parametrize("field", FIELDS)
async def test_openai_chunks_carry_the_reasoning_before_the_content(
    provider_server, provider_key, field, pacing
):
    key = new_key()
    options = {"tokens": 6, "reasoning": 5, "reasoning_field": field, **pacing}

    async with _openai(provider_server, provider_key) as client:
        chunks = [
            chunk
            async for chunk in await client.chat.completions.create(
                model="deepseek-reasoner",
                messages=_ask({**options, "key": key}),
                stream=True,
            )
        ]

    deltas = [chunk.choices[0].delta for chunk in chunks]
    assert deltas[0].role == "assistant"
    assert deltas[0].content == ""
    assert deltas[0].model_extra == {}
    reasoning = [d.model_extra for d in deltas[1:6]]
    assert reasoning == [
        {field: "Step 1: think."},
        {field: " Step 2: check the premise.\n"},
        {field: " Step 3: weigh the caf\u00e9's r\u00e9sum\u00e9."},
        {field: " Step 4: so far so good \U0001f914"},
        {field: " Step 5: conclude."},
    ]
    assert all(d.content is None and d.role is None for d in deltas[1:6])
    assert "".join(d[field] for d in reasoning) == provider_reasoning(
        urlencode(options)
    )
    answer = deltas[6:-1]
    assert all(d.model_extra == {} for d in answer)
    assert "".join(d.content for d in answer) == provider_text(urlencode(options))
    assert len(answer) == 6
    assert chunks[-1].choices[0].finish_reason == "stop"
    sent = await provider_server.outcome(key)
    assert (sent["outcome"], sent["reasoning_sent"], sent["sent"]) == (
        "completed",
        5,
        6,
    )


@pytest.mark.parametrize("pacing", PACINGS)
async def test_openai_chunks_carry_no_reasoning_by_default(
    provider_server, provider_key, pacing
):
    key = new_key()

    async with _openai(provider_server, provider_key) as client:
        chunks = [
            chunk
            async for chunk in await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=_ask({"tokens": 4, "key": key, **pacing}),
                stream=True,
            )
        ]

    deltas = [chunk.choices[0].delta for chunk in chunks]
    assert [d.model_extra for d in deltas] == [{}] * 6
    assert [d.content for d in deltas] == ["", " The", " quick", " brown", " fox", None]
    sent = await provider_server.outcome(key)
    assert (sent["reasoning_sent"], sent["sent"]) == (0, 4)


@pytest.mark.parametrize("field", FIELDS)
async def test_an_openai_completion_carries_the_reasoning_in_its_message(
    provider_server, provider_key, field
):
    options = {"tokens": 3, "reasoning": 4, "reasoning_field": field}

    async with _openai(provider_server, provider_key) as client:
        completion = await client.chat.completions.create(
            model="deepseek-reasoner", messages=_ask(options)
        )

    message = completion.choices[0].message
    assert message.content == " The quick brown"
    assert message.model_extra == {field: provider_reasoning(urlencode(options))}


async def test_an_unknown_reasoning_field_is_a_bad_request(
    provider_server, provider_key
):
    async with _openai(provider_server, provider_key) as client:
        with pytest.raises(openai.BadRequestError, match="reasoning_field"):
            await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=_ask({"reasoning": 1, "reasoning_field": "thoughts"}),
            )


def _shape(event) -> tuple:
    """An Anthropic SDK event as (type, index, block or delta type)."""
    if event.type == "content_block_start":
        return (event.type, event.index, event.content_block.type)
    if event.type == "content_block_delta":
        return (event.type, event.index, event.delta.type)
    if event.type == "content_block_stop":
        return (event.type, event.index)
    return (event.type,)


@pytest.mark.parametrize("pacing", PACINGS)
async def test_anthropic_events_carry_a_thinking_block_before_the_text_block(
    anthropic_server, provider_key, pacing
):
    key = new_key()
    options = {"tokens": 6, "reasoning": 5, **pacing}

    async with _anthropic(anthropic_server, provider_key) as client:
        events = [
            event
            async for event in await client.messages.create(
                model=CLAUDE,
                max_tokens=100,
                messages=_ask({**options, "key": key}),
                stream=True,
            )
        ]

    reasoning = provider_reasoning(urlencode(options))
    assert [_shape(e) for e in events] == [
        ("message_start",),
        ("content_block_start", 0, "thinking"),
        *[("content_block_delta", 0, "thinking_delta")] * 5,
        ("content_block_delta", 0, "signature_delta"),
        ("content_block_stop", 0),
        ("content_block_start", 1, "text"),
        *[("content_block_delta", 1, "text_delta")] * 6,
        ("content_block_stop", 1),
        ("message_delta",),
        ("message_stop",),
    ]
    start = events[1].content_block
    assert (start.thinking, start.signature) == ("", "")
    assert [e.delta.thinking for e in events[2:7]] == [
        "Step 1: think.",
        " Step 2: check the premise.\n",
        " Step 3: weigh the caf\u00e9's r\u00e9sum\u00e9.",
        " Step 4: so far so good \U0001f914",
        " Step 5: conclude.",
    ]
    assert "".join(e.delta.thinking for e in events[2:7]) == reasoning
    assert events[7].delta.signature == _signature(reasoning)
    answer = "".join(e.delta.text for e in events[10:16])
    assert answer == provider_text(urlencode(options))
    sent = await anthropic_server.outcome(key)
    assert (sent["outcome"], sent["reasoning_sent"], sent["sent"]) == (
        "completed",
        5,
        6,
    )


async def test_anthropic_stream_helper_builds_the_thinking_and_text_blocks(
    anthropic_server, provider_key
):
    options = {"tokens": 3, "reasoning": 4}

    async with _anthropic(anthropic_server, provider_key) as client:
        async with client.messages.stream(
            model=CLAUDE, max_tokens=100, messages=_ask(options)
        ) as stream:
            thinking = [e.thinking async for e in stream if e.type == "thinking"]
            message = await stream.get_final_message()

    reasoning = provider_reasoning(urlencode(options))
    assert "".join(thinking) == reasoning
    assert [block.model_dump() for block in message.content] == [
        {"type": "thinking", "thinking": reasoning, "signature": _signature(reasoning)},
        {"type": "text", "text": " The quick brown", "citations": None},
    ]


async def test_anthropic_wire_has_the_ping_after_the_first_block_start(
    anthropic_server, provider_key
):
    """The SDK hides pings; the raw events show where the thinking block sits."""
    async with _anthropic(anthropic_server, provider_key) as client:
        async with client.messages.with_streaming_response.create(
            model=CLAUDE,
            max_tokens=100,
            messages=_ask({"tokens": 1, "reasoning": 2}),
            stream=True,
        ) as response:
            events, _, _ = parse_sse(await response.text())

    assert [e.event for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


@pytest.mark.parametrize("pacing", PACINGS)
async def test_anthropic_events_carry_only_the_text_block_by_default(
    anthropic_server, provider_key, pacing
):
    key = new_key()

    async with _anthropic(anthropic_server, provider_key) as client:
        events = [
            event
            async for event in await client.messages.create(
                model=CLAUDE,
                max_tokens=100,
                messages=_ask({"tokens": 4, "key": key, **pacing}),
                stream=True,
            )
        ]

    assert [_shape(e) for e in events] == [
        ("message_start",),
        ("content_block_start", 0, "text"),
        *[("content_block_delta", 0, "text_delta")] * 4,
        ("content_block_stop", 0),
        ("message_delta",),
        ("message_stop",),
    ]
    assert "".join(e.delta.text for e in events[2:6]) == " The quick brown fox"
    sent = await anthropic_server.outcome(key)
    assert (sent["reasoning_sent"], sent["sent"]) == (0, 4)


async def test_an_anthropic_message_has_the_thinking_block_first(
    anthropic_server, provider_key
):
    options = {"tokens": 3, "reasoning": 4}

    async with _anthropic(anthropic_server, provider_key) as client:
        message = await client.messages.create(
            model=CLAUDE, max_tokens=100, messages=_ask(options)
        )

    reasoning = provider_reasoning(urlencode(options))
    assert [block.model_dump() for block in message.content] == [
        {"type": "thinking", "thinking": reasoning, "signature": _signature(reasoning)},
        {"type": "text", "text": " The quick brown", "citations": None},
    ]
