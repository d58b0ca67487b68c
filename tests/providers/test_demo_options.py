"""The demo provider's options: max tokens and stop sequences shape its answer;
temperature and top_p change nothing (its answer is fixed)."""

import pytest

from streaming.providers.base import Options, TextDelta, Usage
from streaming.providers.demo import DemoProvider

MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture(autouse=True)
def _no_delay(settings):
    settings.DEMO_TOKEN_DELAY_MS = 0


async def _answer(options: Options) -> tuple[str, Usage]:
    stream = DemoProvider().stream(MESSAGES, model="demo", options=options)
    items = [item async for batch in stream for item in batch]
    text = "".join(i.text for i in items if isinstance(i, TextDelta))
    return text, items[-1]


async def test_max_tokens_limit_the_tokens():
    text, usage = await _answer(Options(max_tokens=3))
    assert (text, usage.output_tokens) == ("This answer comes", 3)


async def test_the_answer_ends_before_the_first_stop_sequence():
    full, _ = await _answer(Options())
    text, _ = await _answer(Options(stop=("relay did", "offline demo")))
    assert text == full[: full.index("offline demo")]
    assert text.endswith("the **")


async def test_a_stop_sequence_inside_a_token_cuts_it_short():
    text, usage = await _answer(Options(stop=("swer",)))
    assert (text, usage.output_tokens) == ("This an", 2)


async def test_the_smaller_limit_wins_before_a_later_stop_sequence(settings):
    settings.MAX_OUTPUT_TOKENS = 3
    text, _ = await _answer(Options(max_tokens=2, stop=("provider",)))
    assert text == "This answer"
    text, _ = await _answer(Options(max_tokens=5))
    assert text == "This answer comes"


async def test_temperature_and_top_p_change_nothing():
    assert await _answer(Options(temperature=2, top_p=0.1)) == await _answer(Options())


async def test_the_system_prompt_counts_in_the_input_tokens():
    _, plain = await _answer(Options())
    _, with_system = await _answer(Options(system="Be very brief."))
    assert with_system.input_tokens == plain.input_tokens + 3
