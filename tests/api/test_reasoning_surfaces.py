"""A model's reasoning on every surface that is not `/streams/<id>/events`: the
seed's `/chat/stream` (ids `<stream>:r<N>`), OpenAI's chat completions as the
official SDK reads them (`reasoning_content`), and the AI SDK's reasoning parts."""

import json

import openai
import pytest

from tests.api.test_aisdk import chat_body, new_chat, parts, post_chat, text_of, user
from tests.helpers import (
    Event,
    expected_answer,
    expected_reasoning,
    fake,
    finished_log,
    new_key,
    read_events,
    stream_id,
    token_text,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

UPSTREAMS = [
    ("openai", "reasoning_content"),
    ("openai", "reasoning"),
    ("anthropic", None),
]
# The relay's model names on /v1, by provider.
MODELS = {"openai": "openai/gpt-4o-mini", "anthropic": "anthropic/claude-sonnet-4-5"}
SLOW = {"pattern": "counter", "reasoning": 14, "tokens": 14, "delay_ms": 25}


def _options(field: str | None, **options: object) -> dict[str, object]:
    return {**options, "reasoning_field": field} if field else options


def reasoning_text(events: list[Event]) -> str:
    return "".join(event.data for event in events if event.event == "reasoning")


def _ids(events: list[Event], kind: str) -> list[str]:
    return [event.id for event in events if event.event == kind]


def _ends(events: list[Event], kind: str, prefix: str, start: int = 0) -> list[str]:
    """The ids the frames of `kind` must have: where each ends in its own text."""
    ends, at = [], start
    for event in events:
        if event.event == kind:
            at += len(event.data)
            ends.append(f"{prefix}{at}")
    return ends


# --------------------------------------------------------------------------- chat/stream


@pytest.mark.parametrize(("provider", "field"), UPSTREAMS)
async def test_chat_stream_ids_name_the_stream_and_the_text_of_each_frame(
    relay, alice, alice_token, provider, field
):
    options = _options(field, pattern="tricky", tokens=16, reasoning=5)
    params = {"prompt": "Go " + fake(**options), "provider": provider}

    async with relay.client(alice_token) as client:
        received = await read_events(client, "/chat/stream", params=params)

    stream = stream_id(received)
    events = received.events
    kinds = [e.event for e in events]
    thoughts, tokens = kinds.count("reasoning"), kinds.count("token")
    assert kinds == ["meta"] + ["reasoning"] * thoughts + ["token"] * tokens + [
        "usage",
        "done",
    ]
    reasoning, answer = expected_reasoning(**options), expected_answer(**options)
    assert (reasoning_text(events), token_text(events)) == (reasoning, answer)
    assert _ids(events, "reasoning") == _ends(events, "reasoning", f"{stream}:r")
    assert _ids(events, "token") == _ends(events, "token", f"{stream}:")
    assert _ids(events, "token")[-1] == f"{stream}:{len(answer)}"
    log = await finished_log(stream)
    assert (log.response, log.reasoning) == (answer, reasoning)
    assert json.loads(events[-2].data)["reasoning_tokens"] == log.reasoning_tokens


async def test_chat_stream_resumes_from_a_reasoning_id_and_a_token_id(
    relay, alice, alice_token, upstream
):
    answer, reasoning = expected_answer(**SLOW), expected_reasoning(**SLOW)
    key = new_key()
    params = {"prompt": "Go " + fake(**SLOW, key=key)}

    async with relay.client(alice_token) as client:
        first = await read_events(
            client,
            "/chat/stream",
            params=params,
            until=lambda events: sum(e.event == "reasoning" for e in events) >= 3,
        )
        mid_reasoning = first.events[-1].id
        # As a new EventSource would: the id in the query, no header.
        from_reasoning = await read_events(
            client, "/chat/stream", params={**params, "last_event_id": mid_reasoning}
        )
        stream = stream_id(first)
        await finished_log(stream)
        at_token = from_reasoning.events[-4].id  # the answer's last token but one
        from_token = await read_events(
            client,
            "/chat/stream",
            params=params,
            headers={"Last-Event-ID": at_token},
        )
        at_end = from_reasoning.events[-3].id
        done = await read_events(
            client, "/chat/stream", params={**params, "last_event_id": at_end}
        )

    assert first.events[-1].event == "reasoning"  # read live, stopped there
    seen = int(mid_reasoning.removeprefix(f"{stream}:r"))
    assert reasoning_text(first.events) == reasoning[:seen]
    assert stream_id(from_reasoning) == stream
    assert reasoning_text(from_reasoning.events) == reasoning[seen:]
    assert token_text(from_reasoning.events) == answer
    assert _ids(from_reasoning.events, "reasoning") == _ends(
        from_reasoning.events, "reasoning", f"{stream}:r", seen
    )
    assert _ids(from_reasoning.events, "token") == _ends(
        from_reasoning.events, "token", f"{stream}:"
    )
    assert from_reasoning.events[-1].event == "done"
    # After the switch, from the record: the rest of the answer only.
    assert from_reasoning.events[-4].event == from_reasoning.events[-3].event == "token"
    offset = int(at_token.removeprefix(f"{stream}:"))
    assert [e.event for e in from_token.events] == ["meta", "token", "usage", "done"]
    assert from_token.events[1] == ("token", answer[offset:], f"{stream}:{len(answer)}")
    assert (done.status, done.body) == (204, "")
    assert len(upstream["openai"].streams(key)) == 1


# --------------------------------------------------------------------------- /v1


def _client(relay, token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{relay.url}/v1", api_key=token, max_retries=0)


@pytest.mark.parametrize(("provider", "field"), UPSTREAMS)
async def test_the_openai_sdk_streams_reasoning_content_then_the_content(
    relay, alice, alice_token, provider, field
):
    options = _options(field, pattern="tricky", tokens=16, reasoning=5)
    async with _client(relay, alice_token) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=MODELS[provider],
            messages=[{"role": "user", "content": fake(**options)}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in raw.parse()]

    *texts, last, usage = chunks
    deltas = [chunk.choices[0].delta for chunk in texts]
    # The SDK has no field for it: it keeps it among the extras, as the name says.
    thinking = [(d.model_extra or {}).get("reasoning_content") for d in deltas]
    said = [d.content for d in deltas]
    thoughts = sum(t is not None for t in thinking)
    assert thoughts and thinking[1 : thoughts + 1] == [t for t in thinking if t]
    assert said[1 : thoughts + 1] == [None] * thoughts  # no content beside it
    assert all(t is None for t in thinking[thoughts + 1 :])
    assert "".join(t for t in thinking if t) == expected_reasoning(**options)
    assert "".join(s or "" for s in said) == expected_answer(**options)
    assert last.choices[0].finish_reason == "stop"
    log = await finished_log(int(raw.headers["x-stream-id"]))
    assert usage.usage.completion_tokens == log.output_tokens == 16
    assert log.reasoning == expected_reasoning(**options)


@pytest.mark.parametrize(("provider", "field"), UPSTREAMS)
async def test_an_openai_completion_carries_the_reasoning_in_its_message(
    relay, alice, alice_token, provider, field
):
    options = _options(field, pattern="tricky", tokens=16, reasoning=5)
    async with _client(relay, alice_token) as client:
        completion = await client.chat.completions.create(
            model=MODELS[provider],
            messages=[{"role": "user", "content": fake(**options)}],
        )

    message = completion.choices[0].message
    assert message.content == expected_answer(**options)
    assert message.model_extra == {"reasoning_content": expected_reasoning(**options)}
    assert completion.choices[0].finish_reason == "stop"


async def test_an_openai_completion_without_reasoning_has_no_reasoning_content(
    relay, alice_token
):
    async with _client(relay, alice_token) as client:
        completion = await client.chat.completions.create(
            model=MODELS["openai"],
            messages=[{"role": "user", "content": fake(tokens=3)}],
        )

    assert completion.choices[0].message.model_extra == {}


# --------------------------------------------------------------------------- AI SDK


@pytest.mark.parametrize(("provider", "field"), UPSTREAMS)
async def test_the_ui_message_stream_closes_the_reasoning_before_the_text(
    relay, alice, alice_token, provider, field
):
    options = _options(field, pattern="tricky", tokens=16, reasoning=5)
    body = chat_body(new_chat(), user("Go " + fake(**options)), provider=provider)

    chunks = parts(await post_chat(relay, alice_token, body))

    kinds = [c["type"] for c in chunks]
    thoughts = kinds.count("reasoning-delta")
    words = kinds.count("text-delta")
    assert kinds == [
        "start",
        "start-step",
        "reasoning-start",
        *["reasoning-delta"] * thoughts,
        "reasoning-end",
        "text-start",
        *["text-delta"] * words,
        "text-end",
        "finish-step",
        "finish",
    ]
    blocks = {c["id"] for c in chunks if c["type"].startswith("reasoning-")}
    assert blocks == {"reasoning-0"}
    reasoning = "".join(c["delta"] for c in chunks if c["type"] == "reasoning-delta")
    assert reasoning == expected_reasoning(**options)
    assert text_of(chunks) == expected_answer(**options)
    log = await finished_log(chunks[0]["messageMetadata"]["stream_id"])
    assert chunks[-1]["messageMetadata"]["usage"] == {
        "input_tokens": log.input_tokens,
        "output_tokens": 16,
        "reasoning_tokens": log.reasoning_tokens,
    }
    assert log.reasoning_tokens == min(-(-len(reasoning) // 4), 16)
