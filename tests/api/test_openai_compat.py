"""The OpenAI-compatible API through the official `openai` SDK, against a real relay."""

import json

import httpx
import openai
import pytest

from tests.helpers import (
    expected_answer,
    fake,
    finished_log,
    new_key,
    prompt_tokens,
    read_events,
    token_text,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

MODEL = "openai/gpt-4o-mini"


def _sync(relay, token: str, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{relay.url}/v1", api_key=token, max_retries=0, **kwargs
    )


def _async(relay, token: str, **kwargs) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{relay.url}/v1", api_key=token, max_retries=0, **kwargs
    )


def _ask(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


async def test_the_sync_client_streams_the_exact_text_and_the_usage_chunk(
    relay, alice, alice_token, upstream, provider_key
):
    options = {"pattern": "tricky", "tokens": 68}
    prompt = "Say something tricky " + fake(**options, key=new_key())

    with _sync(relay, alice_token) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=_ask(prompt),
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(raw.parse())

    answer = expected_answer(**options)
    stream_id = int(raw.headers["x-stream-id"])
    assert raw.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == answer
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].id == f"chatcmpl-{stream_id}"
    assert len({c.created for c in chunks}) == 1
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert {c.model for c in chunks} == {MODEL}
    assert chunks[0].choices[0].delta.role == "assistant"
    *content, last, usage = chunks
    assert [c.choices[0].finish_reason for c in content] == [None] * len(content)
    assert last.choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in content + [last])
    assert usage.choices == []
    assert usage.usage.prompt_tokens == prompt_tokens(prompt)
    assert usage.usage.completion_tokens == 68
    assert usage.usage.total_tokens == prompt_tokens(prompt) + 68
    seen = str(raw.headers) + "".join(c.model_dump_json() for c in chunks)
    assert provider_key not in seen

    log = await finished_log(stream_id)
    assert (log.user_id, log.status) == (alice.pk, "completed")
    assert (log.provider, log.model) == ("openai", "gpt-4o-mini")
    assert (log.prompt, log.response, log.system_prompt) == (prompt, answer, "")
    assert (log.input_tokens, log.output_tokens) == (prompt_tokens(prompt), 68)


async def test_the_async_client_streams_the_exact_text(relay, alice_token):
    options = {"pattern": "words", "tokens": 40, "delay_ms": 1}
    async with _async(relay, alice_token) as client:
        stream = await client.chat.completions.create(
            model="anthropic/claude-sonnet-4-5",
            messages=_ask(fake(**options)),
            stream=True,
        )
        chunks = [chunk async for chunk in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == expected_answer(**options)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None and c.choices for c in chunks)  # no usage unasked


async def test_the_stream_helper_builds_the_final_completion(relay, alice_token):
    options = {"pattern": "counter", "tokens": 25}
    with _sync(relay, alice_token) as client:
        with client.chat.completions.stream(
            model=MODEL,
            messages=_ask(fake(**options)),
            stream_options={"include_usage": True},
        ) as stream:
            deltas = [e.delta for e in stream if e.type == "content.delta"]
            final = stream.get_final_completion()

    assert "".join(deltas) == expected_answer(**options)
    assert final.choices[0].message.content == expected_answer(**options)
    assert final.choices[0].message.role == "assistant"
    assert final.choices[0].finish_reason == "stop"
    assert final.usage.completion_tokens == 25


async def test_the_async_stream_helper_sees_the_length_finish_reason(
    relay, alice_token
):
    """As against OpenAI, the helper raises when max tokens cut the answer."""
    async with _async(relay, alice_token) as client:
        async with client.chat.completions.stream(
            model="demo", messages=_ask("Hi"), max_completion_tokens=6
        ) as stream:
            with pytest.raises(openai.LengthFinishReasonError) as raised:
                await stream.get_final_completion()

    choice = raised.value.completion.choices[0]
    assert choice.message.content == "This answer comes from the **offline"
    assert choice.finish_reason == "length"


@pytest.mark.parametrize("model", [MODEL, "anthropic/claude-sonnet-4-5"])
async def test_a_call_without_stream_gets_one_completion(
    relay, alice, alice_token, model
):
    options = {"pattern": "tricky", "tokens": 34}
    prompt = fake(**options)
    async with _async(relay, alice_token) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=model, messages=_ask(prompt)
        )
    completion = raw.parse()

    stream_id = int(raw.headers["x-stream-id"])
    assert completion.id == f"chatcmpl-{stream_id}"
    assert completion.object == "chat.completion"
    assert completion.model == model
    choice = completion.choices[0]
    assert choice.message.content == expected_answer(**options)
    assert (choice.message.role, choice.finish_reason) == ("assistant", "stop")
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (prompt_tokens(prompt), 34)
    log = await finished_log(stream_id)
    assert (log.user_id, log.status, log.output_tokens) == (alice.pk, "completed", 34)


async def test_max_tokens_cut_the_answer_with_finish_reason_length(relay, alice_token):
    options = {"pattern": "counter", "tokens": 20}
    async with _async(relay, alice_token) as client:
        completion = await client.chat.completions.create(
            model=MODEL, messages=_ask(fake(**options)), max_tokens=5
        )
    assert completion.choices[0].message.content == " t0 t1 t2 t3 t4"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5


async def test_the_demo_stops_at_a_stop_sequence(relay, alice_token):
    async with _async(relay, alice_token) as client:
        completion = await client.chat.completions.create(
            model="demo", messages=_ask("Hi"), stop=["offline", "answer"]
        )
    assert completion.choices[0].message.content == "This "
    assert completion.choices[0].finish_reason == "stop"


async def test_it_lists_the_configured_models(relay, alice_token):
    with _sync(relay, alice_token) as client:
        models = list(client.models.list())
        one = client.models.retrieve("anthropic/claude-sonnet-4-5")
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("openai/gpt-5")

    assert [m.id for m in models] == [MODEL, "anthropic/claude-sonnet-4-5", "demo"]
    assert {m.object for m in models} == {"model"}
    assert [m.owned_by for m in models] == ["openai", "anthropic", "demo"]
    assert (one.id, one.owned_by) == ("anthropic/claude-sonnet-4-5", "anthropic")


async def test_a_limit_is_a_rate_limit_error(start_relay, alice, alice_token):
    relay = start_relay(LIMIT_STARTS_PER_MINUTE=1)
    async with _async(relay, alice_token) as client:
        await client.chat.completions.create(model="demo", messages=_ask("Hi"))
        with pytest.raises(openai.RateLimitError) as raised:
            await client.chat.completions.create(
                model="demo", messages=_ask("Hi"), stream=True
            )

    error = raised.value
    assert error.status_code == 429
    assert int(error.response.headers["retry-after"]) >= 1
    assert error.code == "rate_limited"
    assert error.type == "rate_limit_error"
    assert "1 stream" in error.message or "per minute" in error.message


async def test_a_bad_token_is_an_authentication_error(relay, alice_token):
    async with _async(relay, "relay_not-a-token") as client:
        with pytest.raises(openai.AuthenticationError) as raised:
            await client.chat.completions.create(model="demo", messages=_ask("Hi"))
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
    assert raised.value.code == "unauthorized"
    assert raised.value.type == "authentication_error"

    async with httpx.AsyncClient(base_url=relay.url) as client:
        response = await client.get("/v1/models")  # no token at all
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_an_unknown_model_is_not_found(relay, alice_token):
    async with _async(relay, alice_token) as client:
        with pytest.raises(openai.NotFoundError) as raised:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=_ask("Hi"), stream=True
            )
    assert raised.value.code == "model_not_found"
    assert raised.value.param == "model"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"n": 2}, "n"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"extra_body": {"top_k": 5}}, "top_k"),
    ],
)
async def test_an_unsupported_parameter_is_a_bad_request_naming_it(
    relay, alice, alice_token, extra, param
):
    async with _async(relay, alice_token) as client:
        with pytest.raises(openai.BadRequestError) as raised:
            await client.chat.completions.create(
                model="demo", messages=_ask("Hi"), **extra
            )
    assert raised.value.param == param
    assert param in raised.value.message
    assert not await alice.streamlog_set.aexists()


async def test_an_error_after_the_first_byte_is_an_api_error(
    relay, alice_token, provider_key
):
    options = {"pattern": "counter", "tokens": 20, "error_after": 3}
    received = []
    async with _async(relay, alice_token) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=_ask(fake(**options)), stream=True
        )
        with pytest.raises(openai.APIError) as raised:
            async for chunk in raw.parse():
                received.append(chunk.choices[0].delta.content or "")

    assert "".join(received) == " t0 t1 t2"
    assert not isinstance(raised.value, openai.APIStatusError)
    assert raised.value.code == "unavailable"
    assert provider_key not in str(raised.value.body)
    log = await finished_log(int(raw.headers["x-stream-id"]))
    assert (log.status, log.error_code, log.response) == (
        "error",
        "unavailable",
        " t0 t1 t2",
    )


@pytest.mark.parametrize(
    ("status", "error_class", "ours"),
    [
        (429, openai.RateLimitError, 429),
        (503, openai.InternalServerError, 503),
        (401, openai.APIStatusError, 502),
    ],
)
async def test_a_provider_failure_without_stream_is_an_error_status(
    relay, alice_token, status, error_class, ours
):
    async with _async(relay, alice_token) as client:
        with pytest.raises(error_class) as raised:
            await client.chat.completions.create(
                model=MODEL, messages=_ask(fake(status=status, retry_after=3))
            )
    error = raised.value
    assert error.status_code == ours
    if status == 429:
        assert error.response.headers["retry-after"] == "3"
        assert error.code == "rate_limited"
    if status == 401:  # our key, not the client's: a gateway error, not retried
        assert error.response.headers["x-should-retry"] == "false"
        assert error.code == "auth"


async def test_a_client_that_drops_reads_the_rest_from_the_events(relay, alice_token):
    options = {"pattern": "counter", "tokens": 60, "delay_ms": 20}
    body = {"model": MODEL, "messages": _ask(fake(**options)), "stream": True}
    got = ""
    async with relay.client(alice_token) as client:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            stream_id = response.headers["x-stream-id"]
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    got += json.loads(line[6:])["choices"][0]["delta"]["content"]
                if len(got) > 20:
                    break  # the client drops
        rest = await read_events(
            client,
            f"/streams/{stream_id}/events",
            headers={"Last-Event-ID": str(len(got))},
        )
    assert got + token_text(rest.events) == expected_answer(**options)
    assert rest.events[-1].event == "done"


async def test_a_system_prompt_and_history_reach_the_provider_as_sent(
    relay, alice_token, upstream
):
    key = new_key()
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hi there."}]},
        {"role": "system", "content": "Use English."},
        {"role": "user", "content": [{"type": "text", "text": fake(key=key)}]},
    ]
    async with _async(relay, alice_token) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="anthropic/claude-sonnet-4-5", messages=messages
        )

    received = (await upstream["anthropic"].outcome(key))["received"]
    assert received["system"] == "Be brief.\n\nUse English."
    assert received["messages"] == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there."},
        {"role": "user", "content": fake(key=key)},
    ]
    log = await finished_log(int(raw.headers["x-stream-id"]))
    assert (log.prompt, log.system_prompt) == (
        fake(key=key),
        "Be brief.\n\nUse English.",
    )


async def test_a_bad_body_gets_the_envelope(relay, alice_token):
    async with relay.client(alice_token) as client:
        bad_json = await client.post(
            "/v1/chat/completions",
            content=b"{nope",
            headers={"Content-Type": "application/json"},
        )
        too_large = await client.post(
            "/v1/chat/completions",
            json={"model": "demo", "messages": _ask("x" * 3_000_000)},
        )
        no_route = await client.get("/v1/embeddings")
        wrong_method = await client.get("/v1/chat/completions")

    for response, status in [
        (bad_json, 400),
        (too_large, 413),
        (no_route, 404),
        (wrong_method, 405),
    ]:
        assert response.status_code == status
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
    assert wrong_method.headers["allow"] == "POST"
