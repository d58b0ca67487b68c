"""The output limit each provider is sent: what real models accept, set per model."""

import subprocess
import sys

import pytest

from tests.helpers import BASE_DIR, fake, finished_log, new_key, read_events, stream_id

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

LONG = 2000  # tokens: more than the old default limit of 1,024


async def _limits_sent(relay, token, upstream, provider, *, tokens=LONG):
    """Ask `provider` for a `tokens`-token answer: the limit parameters it was sent,
    and the finished log."""
    key = new_key()
    async with relay.client(token) as client:
        params = {"prompt": fake(tokens=tokens, key=key), "provider": provider}
        received = await read_events(client, "/chat/stream", params=params)
    assert received.status == 200
    assert received.events[-1].event == "done"
    outcome = await upstream[provider].outcome(key)
    return outcome["limits"], await finished_log(stream_id(received))


async def test_by_default_a_long_answer_arrives_whole(relay, alice_token, upstream):
    """OpenAI is sent no limit (the model's own maximum); Anthropic, which requires
    one, a generous one."""
    limits, log = await _limits_sent(relay, alice_token, upstream, "openai")
    assert limits == {}
    assert log.output_tokens == LONG

    limits, log = await _limits_sent(relay, alice_token, upstream, "anthropic")
    assert limits == {"max_tokens": 16384}
    assert log.output_tokens == LONG


async def test_openai_gets_max_completion_tokens_unless_told_otherwise(
    start_relay, alice_token, upstream
):
    relay = start_relay(MAX_OUTPUT_TOKENS=50)
    limits, log = await _limits_sent(relay, alice_token, upstream, "openai")
    assert limits == {"max_completion_tokens": 50}
    assert log.output_tokens == 50

    limits, _ = await _limits_sent(relay, alice_token, upstream, "anthropic")
    assert limits == {"max_tokens": 50}

    # An OpenAI-compatible server that only knows the old name.
    relay = start_relay(MAX_OUTPUT_TOKENS=50, OPENAI_MAX_TOKENS_PARAM="max_tokens")
    limits, _ = await _limits_sent(relay, alice_token, upstream, "openai")
    assert limits == {"max_tokens": 50}


async def test_a_models_own_limit_comes_first(start_relay, alice_token, upstream):
    relay = start_relay(
        MAX_OUTPUT_TOKENS=50,
        MAX_OUTPUT_TOKENS_BY_MODEL="gpt-4o-mini=7, claude-sonnet-4-5=9",
    )
    limits, log = await _limits_sent(relay, alice_token, upstream, "openai")
    assert limits == {"max_completion_tokens": 7}
    assert log.output_tokens == 7

    limits, log = await _limits_sent(relay, alice_token, upstream, "anthropic")
    assert limits == {"max_tokens": 9}
    assert log.output_tokens == 9


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_OUTPUT_TOKENS_BY_MODEL", value, "is a list of model=tokens")
        for value in ["gpt-4o=many", "gpt-4o", "=5"]
    ]
    + [("OPENAI_MAX_TOKENS_PARAM", "max_output_tokens", "must be")],
)
def test_a_malformed_limit_setting_stops_the_process_clearly(name, value, message):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env={"PATH": "/usr/bin:/bin", name: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"{name} {message}" in result.stderr
