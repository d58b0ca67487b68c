"""The real OpenAI and Anthropic SDKs inside a real relay, against the fake provider."""

import asyncio
import json

import pytest

from tests.helpers import (
    expected_answer,
    fake,
    finished_log,
    free_port,
    new_key,
    offsets,
    prompt_tokens,
    read_events,
    stream_id,
    token_text,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

PROVIDERS = ["openai", "anthropic"]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5"}
WRONG_KEY = "sk-wrong-0123456789abcdef"


async def _ask(relay, token: str, provider: str, prompt: str):
    async with relay.client(token) as client:
        params = {"prompt": prompt, "provider": provider}
        return await read_events(client, "/chat/stream", params=params)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "pacing",
    [
        pytest.param({}, id="at-once"),
        pytest.param({"delay_ms": 1}, id="paced"),
        # every event in two writes, cut inside a multi-byte character
        pytest.param({"split": 1}, id="split"),
    ],
)
async def test_it_relays_the_providers_text_exactly(
    relay, alice, alice_token, upstream, provider_key, provider, pacing
):
    """Also guards reading the provider's lines: U+2028 and U+0085 inside a JSON
    string are no line ends (the SDKs' `iter_lines()` split there)."""
    key = new_key()
    options = {"pattern": "tricky", "tokens": 68, **pacing}
    prompt = "Say something tricky " + fake(**options, key=key)

    received = await _ask(relay, alice_token, provider, prompt)

    answer = expected_answer(**options)
    assert received.status == 200
    assert [e.event for e in received.events[:1]] == ["meta"]
    assert json.loads(received.events[0].data) == {
        "stream_id": stream_id(received),
        "provider": provider,
        "model": MODELS[provider],
    }
    assert token_text(received.events) == answer
    # Each id is the offset after its frame, in code points of the normalised text.
    tokens = [e for e in received.events if e.event == "token"]
    ends = [len("".join(e.data for e in tokens[: i + 1])) for i in range(len(tokens))]
    assert offsets(received.events) == ends
    assert all(e.id.startswith(f"{stream_id(received)}:") for e in tokens)
    assert [e.event for e in received.events[-2:]] == ["usage", "done"]
    assert received.events[-1].data == "[DONE]"
    usage = {"input_tokens": prompt_tokens(prompt), "output_tokens": 68}
    assert json.loads(received.events[-2].data) == usage
    assert provider_key not in received.everything()

    log = await finished_log(stream_id(received))
    assert log.status == "completed"
    assert log.provider == provider
    assert log.model == MODELS[provider]
    assert log.response == answer
    assert (log.input_tokens, log.output_tokens) == (prompt_tokens(prompt), 68)
    assert log.error_code == ""
    assert log.ttft_ms is not None
    assert log.duration_ms >= log.ttft_ms
    assert (await upstream[provider].outcome(key))["outcome"] == "completed"


ERRORS = [
    pytest.param({"status": 429, "retry_after": 7}, "rate_limited", True, 0, id="429"),
    pytest.param({"status": 500}, "unavailable", True, 0, id="500"),
    pytest.param(
        {"error_after": 5, "delay_ms": 20}, "unavailable", True, 5, id="mid-stream"
    ),
    pytest.param({"status": 403}, "auth", False, 0, id="403"),
    pytest.param({"status": 400}, "bad_request", False, 0, id="400"),
    pytest.param({"status": 502}, "unavailable", True, 0, id="502"),
    pytest.param({"status": 503}, "unavailable", True, 0, id="503"),
    pytest.param({"status": 529}, "unavailable", True, 0, id="529-overloaded"),
    pytest.param(
        {"error_after": 4, "error_type": "overloaded_error", "delay_ms": 20},
        "unavailable",
        True,
        4,
        id="overloaded-mid-stream",
    ),
    pytest.param(
        {"error_after": 4, "error_type": "malformed", "delay_ms": 20},
        "bad_upstream",
        True,
        4,
        id="malformed-chunk",
    ),
    pytest.param(
        {"abort_after": 5, "delay_ms": 20}, "incomplete", True, 5, id="truncated"
    ),
    pytest.param(
        {"stall_after": 3, "stall_ms": 3000, "delay_ms": 5},
        "timeout",
        True,
        3,
        id="stalled",
    ),
]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("options", "code", "retryable", "sent"), ERRORS)
async def test_a_provider_failure_ends_the_stream_with_an_error_frame(
    relay, alice, alice_token, provider_key, provider, options, code, retryable, sent
):
    prompt = "Count " + fake(pattern="counter", tokens=20, **options, key=new_key())

    received = await _ask(relay, alice_token, provider, prompt)

    partial = expected_answer(pattern="counter", tokens=sent) if sent else ""
    assert received.status == 200
    kinds = [e.event for e in received.events]
    assert kinds == ["meta"] + ["token"] * (len(kinds) - 2) + ["error"]
    assert token_text(received.events) == partial
    error = json.loads(received.events[-1].data)
    assert error["code"] == code
    assert error["retryable"] is retryable
    if "retry_after" in options:
        assert error["retry_after"] == options["retry_after"]
    # The provider's own words stay upstream: ours are written for the user.
    assert "fake provider" not in error["message"]
    assert "Sorry about that" not in error["message"]
    assert provider_key not in received.everything()

    log = await finished_log(stream_id(received))
    assert log.status == "error"
    assert log.error_code == code
    assert log.error_message == error["message"]
    assert log.error_retry_after == error.get("retry_after")
    assert log.response == partial
    assert log.finished_at is not None
    # Coming back replays the same answer and the same ending, retry_after included.
    async with relay.client(alice_token) as client:
        replay = await read_events(client, f"/streams/{log.pk}/events")
    assert token_text(replay.events) == partial
    assert json.loads(replay.events[-1].data) == error


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_wrong_provider_key_ends_with_an_auth_error(
    start_relay, provider_server, provider_key, alice, alice_token, provider
):
    relay = start_relay(
        OPENAI_API_KEY=WRONG_KEY,
        ANTHROPIC_API_KEY=WRONG_KEY,
        ANTHROPIC_BASE_URL=provider_server.anthropic_base_url,
    )

    received = await _ask(relay, alice_token, provider, "Hello " + fake(tokens=3))

    assert received.status == 200
    assert [e.event for e in received.events] == ["meta", "error"]
    error = json.loads(received.events[-1].data)
    assert error["code"] == "auth"
    assert error["retryable"] is False
    assert WRONG_KEY not in received.everything()
    assert provider_key not in received.everything()
    log = await finished_log(stream_id(received))
    assert (log.status, log.error_code, log.response) == ("error", "auth", "")
    assert WRONG_KEY not in log.error_message


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_it_retries_before_the_first_token_when_retries_are_allowed(
    start_relay, alice, alice_token, upstream, provider
):
    relay = start_relay(PROVIDER_MAX_RETRIES=2)
    key = new_key()
    prompt = "Retry " + fake(
        tokens=5, fail_first=1, fail_status=503, retry_after_ms=10, key=key
    )

    received = await _ask(relay, alice_token, provider, prompt)

    assert token_text(received.events) == expected_answer(tokens=5)
    assert received.events[-1].event == "done"
    # Our retry, not the SDK's (its own are off): a fresh request that completed.
    stream = await upstream[provider].outcome(key)
    assert (stream["outcome"], stream["retry_count"]) == ("completed", 0)
    log = await finished_log(stream_id(received))
    assert (log.status, log.output_tokens, log.attempts) == ("completed", 5, 2)


async def test_a_viewer_of_a_stream_that_failed_at_once_gets_the_live_error(
    relay, alice, alice_token
):
    """Guards a race: the generation can end before its first viewer attaches, when
    the view's copy of the row still says `streaming`; the viewer then waited for
    another process and got an error frame rebuilt from the row, without retry_after.
    """
    prompt = "Fail " + fake(status=429, retry_after=7)

    received = await asyncio.gather(
        *(_ask(relay, alice_token, "openai", prompt) for _ in range(20))
    )

    for each in received:
        assert [e.event for e in each.events] == ["meta", "error"]
        error = json.loads(each.events[-1].data)
        assert (error["code"], error["retry_after"]) == ("rate_limited", 7)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_provider_that_refuses_connections_is_unavailable(
    start_relay, alice, alice_token, provider
):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    relay = start_relay(OPENAI_BASE_URL=f"{closed}/v1", ANTHROPIC_BASE_URL=closed)

    received = await _ask(relay, alice_token, provider, "Anyone there?")

    error = json.loads(received.events[-1].data)
    assert (received.events[-1].event, error["code"]) == ("error", "unavailable")
    assert error["retryable"] is True
    assert closed not in received.everything()
    log = await finished_log(stream_id(received))
    assert (log.status, log.error_code, log.response) == ("error", "unavailable", "")


async def test_the_provider_key_never_reaches_the_relays_log(
    relay, alice_token, provider_key
):
    for provider in PROVIDERS:
        await _ask(relay, alice_token, provider, "Fail " + fake(status=401))
        await _ask(relay, alice_token, provider, "Fail " + fake(status=500))
        await _ask(relay, alice_token, provider, "Fine " + fake(tokens=3))

    log = relay.log()
    assert "stream finished" in log
    assert provider_key not in log


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_next_stream_reuses_the_upstream_connection(
    start_relay, alice_token, upstream, provider, transport
):
    """The relay reads the body's end after the provider's terminator, so the SDK's
    pool keeps the connection: the next stream needs no new TCP (with a real
    provider, TLS) handshake before its first token. (httpx drops a connection whose
    body was not read to its end; aiohttp keeps it when the end is already there.)"""
    relay = start_relay(PROVIDER_HTTP_CLIENT=transport)
    server = upstream[provider]
    first, *later = [new_key() for _ in range(3)]
    received = await _ask(relay, alice_token, provider, "Hi " + fake(key=first))
    assert received.events[-1].event == "done"
    await server.outcome(first)
    # Every connection the relay has opened so far (the pool may hold several, and
    # hand out any idle one).
    seen = {stream["client_port"] for stream in server.stats()["recent"]}

    for key in later:
        received = await _ask(relay, alice_token, provider, "Hi " + fake(key=key))
        assert received.events[-1].event == "done"

    ports = [(await server.outcome(key))["client_port"] for key in later]
    assert all(ports)
    # A new connection per stream would come from a port the server never saw.
    assert set(ports) <= seen, (ports, sorted(seen))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_sdks_own_httpx_transport_works_too(
    start_relay, alice_token, provider
):
    """PROVIDER_HTTP_CLIENT=httpx: the SDKs' default transport instead of aiohttp."""
    relay = start_relay(PROVIDER_HTTP_CLIENT="httpx")
    options = {"pattern": "tricky", "tokens": 40, "delay_ms": 1}
    key = new_key()

    received = await _ask(
        relay, alice_token, provider, "Hi " + fake(**options, key=key)
    )

    assert token_text(received.events) == expected_answer(**options)
    assert received.events[-1].event == "done"
    closed = f"http://127.0.0.1:{free_port()}"
    refused = start_relay(
        PROVIDER_HTTP_CLIENT="httpx",
        OPENAI_BASE_URL=f"{closed}/v1",
        ANTHROPIC_BASE_URL=closed,
    )
    received = await _ask(refused, alice_token, provider, "Anyone there?")
    assert json.loads(received.events[-1].data)["code"] == "unavailable"
