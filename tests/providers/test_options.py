"""What each provider is sent of a request's options, through the real SDKs to the
fake upstream: the system prompt, temperature, top_p, stop sequences, max tokens."""

import openai
import pytest

from tests.helpers import (
    expected_answer,
    fake,
    finished_log,
    new_key,
    read_events,
    stream_id,
    token_text,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

MODELS = {"openai": "openai/gpt-4o-mini", "anthropic": "anthropic/claude-sonnet-4-5"}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_every_option_reaches_the_upstream(
    relay, alice_token, upstream, provider
):
    key = new_key()
    async with openai.AsyncOpenAI(
        base_url=f"{relay.url}/v1", api_key=alice_token, max_retries=0
    ) as client:
        await client.chat.completions.create(
            model=MODELS[provider],
            messages=[
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": fake(key=key)},
            ],
            temperature=0.25,
            top_p=0.5,
            stop=["END", "STOP"],
            max_completion_tokens=7,
        )

    sent = await upstream[provider].outcome(key)
    assert sent["received"] == {
        "system": "Answer in French.",
        "temperature": 0.25,
        "top_p": 0.5,
        "stop": ["END", "STOP"],
        "messages": [{"role": "user", "content": fake(key=key)}],
    }
    name = "max_completion_tokens" if provider == "openai" else "max_tokens"
    assert sent["limits"] == {name: 7}


async def test_anthropic_gets_the_system_prompt_as_system_never_as_a_message(
    relay, alice_token, upstream
):
    """The fake records Anthropic's top-level `system` apart from its messages; a
    system message among them would be a 400 from the real API."""
    key = new_key()
    async with openai.AsyncOpenAI(
        base_url=f"{relay.url}/v1", api_key=alice_token, max_retries=0
    ) as client:
        await client.chat.completions.create(
            model=MODELS["anthropic"],
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": fake(key=key)},
            ],
        )
    sent = await upstream["anthropic"].outcome(key)
    assert sent["received"]["system"] == "Be brief."
    assert [m["role"] for m in sent["received"]["messages"]] == ["user"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_no_options_send_nothing_but_the_prompt(
    relay, alice_token, upstream, provider
):
    key = new_key()
    async with relay.client(alice_token) as client:
        params = {"prompt": fake(key=key), "provider": provider}
        received = await read_events(client, "/chat/stream", params=params)
    assert received.events[-1].event == "done"

    sent = (await upstream[provider].outcome(key))["received"]
    assert sent == {
        "system": None,
        "temperature": None,
        "top_p": None,
        "stop": None,
        "messages": [{"role": "user", "content": fake(key=key)}],
    }


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_system_prompt_is_given_to_our_own_endpoints_streams(
    start_relay, alice_token, upstream, provider
):
    relay = start_relay(SYSTEM_PROMPT="You are the relay's assistant.")
    keys = new_key(), new_key()
    async with relay.client(alice_token) as client:
        params = {"prompt": fake(key=keys[0]), "provider": provider}
        first = await read_events(client, "/chat/stream", params=params)
        started = await client.post(
            "/streams/", json={"prompt": fake(key=keys[1]), "provider": provider}
        )
        second = await read_events(client, started.json()["events_url"])

    for key in keys:
        sent = (await upstream[provider].outcome(key))["received"]
        assert sent["system"] == "You are the relay's assistant."
        assert [m["role"] for m in sent["messages"]] == ["user"]
    assert token_text(first.events) == token_text(second.events) == expected_answer()
    for received in (first, second):
        log = await finished_log(stream_id(received))
        assert log.system_prompt == "You are the relay's assistant."


async def test_the_system_prompt_does_not_reach_the_openai_compatible_api(
    start_relay, alice_token, upstream
):
    """A gateway sends what its client sent: SYSTEM_PROMPT is for our own pages."""
    relay = start_relay(SYSTEM_PROMPT="You are the relay's assistant.")
    key = new_key()
    async with openai.AsyncOpenAI(
        base_url=f"{relay.url}/v1", api_key=alice_token, max_retries=0
    ) as client:
        await client.chat.completions.create(
            model=MODELS["openai"],
            messages=[{"role": "user", "content": fake(key=key)}],
        )
    assert (await upstream["openai"].outcome(key))["received"]["system"] is None
