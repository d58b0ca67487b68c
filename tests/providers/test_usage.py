"""Usage exactly as each provider counts it, in every place its wire format puts it:
the real SDKs inside a real relay, against the fake provider's streams."""

import json
import math

import pytest

from tests.helpers import fake, finished_log, prompt_tokens, read_events, stream_id

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

ANSWER = 12  # tokens of every answer here


async def _ask(relay, token: str, provider: str, **options: object):
    prompt = f"Count it {provider} " + fake(tokens=ANSWER, **options)
    async with relay.client(token) as client:
        params = {"prompt": prompt, "provider": provider}
        received = await read_events(client, "/chat/stream", params=params)
    assert received.status == 200
    assert received.events[-1].event == "done"
    usage = json.loads(received.events[-2].data)
    return prompt, usage, await finished_log(stream_id(received))


def _counts(log) -> tuple:
    return (
        log.input_tokens,
        log.cached_input_tokens,
        log.cache_write_tokens,
        log.output_tokens,
        log.reasoning_tokens,
        log.tokens_estimated,
    )


@pytest.mark.parametrize(
    ("options", "reported"),
    [
        # message_start and the cumulative message_delta agree.
        pytest.param({}, (0, 0, 0), id="both-places"),
        pytest.param(
            {"cached_tokens": 30, "cache_write_tokens": 20},
            (30, 20, 0),
            id="both-places-with-cache",
        ),
        # A gateway's message_start says input_tokens 0; message_delta has the counts.
        pytest.param(
            {"usage": "delta", "cached_tokens": 30, "cache_write_tokens": 20},
            (30, 20, 0),
            id="only-in-message-delta",
        ),
        # Anthropic's API before message_delta carried input counts.
        pytest.param(
            {"usage": "start", "cached_tokens": 30, "cache_write_tokens": 20},
            (30, 20, 0),
            id="only-in-message-start",
        ),
        pytest.param({"reasoning_tokens": 5}, (0, 0, 5), id="thinking-details"),
    ],
)
async def test_anthropic_usage_is_the_last_count_of_each_field(
    relay, alice_token, options, reported
):
    cached, written, thinking = reported

    prompt, usage, log = await _ask(relay, alice_token, "anthropic", **options)

    # Anthropic's input_tokens leaves the cache out; the row's input is the prompt.
    whole_prompt = prompt_tokens(prompt) + cached + written
    output = ANSWER + thinking
    assert _counts(log) == (
        whole_prompt,
        cached,
        written,
        output,
        thinking or None,
        False,
    )
    # The usage frame names the reasoning's tokens when the model reasoned.
    reasoned = {"reasoning_tokens": thinking} if thinking else {}
    assert usage == {"input_tokens": whole_prompt, "output_tokens": output, **reasoned}


@pytest.mark.parametrize(
    ("options", "cached", "reasoning"),
    [
        pytest.param({}, 0, 0, id="zero-details"),
        pytest.param(
            {"cached_tokens": 40, "reasoning_tokens": 7}, 40, 7, id="with-details"
        ),
    ],
)
async def test_openai_usage_keeps_the_cached_and_reasoning_details(
    relay, alice_token, options, cached, reasoning
):
    prompt, usage, log = await _ask(relay, alice_token, "openai", **options)

    whole_prompt = prompt_tokens(prompt) + cached
    output = ANSWER + reasoning
    # OpenAI writes to its cache for free and reports no such count.
    assert _counts(log) == (whole_prompt, cached, None, output, reasoning, False)
    reasoned = {"reasoning_tokens": reasoning} if reasoning else {}
    assert usage == {"input_tokens": whole_prompt, "output_tokens": output, **reasoned}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_stream_without_usage_gets_an_estimate_marked_as_such(
    relay, alice_token, provider
):
    """For OpenAI: a compatible server that ignores stream_options.include_usage."""
    prompt, usage, log = await _ask(relay, alice_token, provider, usage="none")

    estimate = (math.ceil(len(prompt) / 4), math.ceil(len(log.response) / 4))
    assert log.status == "completed"
    assert (log.input_tokens, log.output_tokens) == estimate
    assert (log.cached_input_tokens, log.reasoning_tokens) == (None, None)
    assert log.tokens_estimated
    assert usage == {"input_tokens": estimate[0], "output_tokens": estimate[1]}
