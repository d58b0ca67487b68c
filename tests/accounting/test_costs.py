"""Cost from a configured price table, the daily cost budget, and how far past a
budget a stream may run: through a real daphne and the real SDKs against the fake
provider, then the admin and the usage view and CSV on the rows it wrote."""

import csv
import io
import json
import re
import subprocess
import sys
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from streaming.accounting import usage
from streaming.models import StreamLog
from streaming.relay import leases
from tests.helpers import (
    BASE_DIR,
    environ_without,
    fake,
    finished_log,
    prompt_tokens,
    read_events,
    token_text,
)

pytestmark = pytest.mark.timeout(90)

USAGE_URL = "/admin/streaming/streamlog/usage/"
PRICES = {
    "claude-sonnet-4-5": {
        "input": 3,
        "cached_input": 0.3,
        "cache_write": 3.75,
        "output": 15,
    },
    "gpt-4o-mini": {"input": 0.15, "output": 0.6},  # cached input at the input price
}


def fresh(**env: object) -> dict[str, object]:
    """Relay settings no other test shares, so its cache (the day's counters) starts
    empty."""
    return {"TEST_RUN": uuid.uuid4().hex, "MODEL_PRICES": json.dumps(PRICES), **env}


def price_table(settings) -> None:
    """The same prices in this process, as settings.py reads them."""
    settings.MODEL_PRICES = {
        model: {
            name: Decimal(str(value))
            for name, value in {
                "cached_input": price["input"],
                "cache_write": price["input"],
                **price,
            }.items()
        }
        for model, price in PRICES.items()
    }


async def ask(client, prompt: str, provider: str = "anthropic"):
    started = await client.post(
        "/streams/", json={"prompt": prompt, "provider": provider}
    )
    assert started.status_code == 201, started.text
    received = await read_events(client, started.json()["events_url"])
    return received, await finished_log(started.json()["id"])


async def test_the_cost_is_stored_and_shown_in_the_admin_the_usage_view_and_csv(
    start_relay, settings, alice, alice_token, admin_client
):
    price_table(settings)
    relay = start_relay(**fresh())
    prompt = "Price it " + fake(tokens=12, cached_tokens=300, cache_write_tokens=200)
    cheap = "And this " + fake(tokens=8, cached_tokens=40)
    async with relay.client(alice_token) as client:
        _, log = await ask(client, prompt)
        _, other = await ask(client, cheap, "openai")

    uncached = prompt_tokens(prompt)
    expected = (
        Decimal(uncached * 3)
        + Decimal("300") * Decimal("0.3")
        + Decimal("200") * Decimal("3.75")
        + Decimal(12 * 15)
    ) / 1_000_000
    assert (log.input_tokens, log.cached_input_tokens, log.cache_write_tokens) == (
        uncached + 500,
        300,
        200,
    )
    assert log.cost == expected
    # OpenAI's prompt_tokens count the cached ones; without a cached price they cost
    # what input does.
    other_input = prompt_tokens(cheap) + 40
    assert other.cost == (Decimal(other_input) * Decimal("0.15") + Decimal("4.8")) / (
        1_000_000
    )

    await sync_to_async(_the_admin_shows)(admin_client, log, other)


def _the_admin_shows(admin_client, log: StreamLog, other: StreamLog) -> None:
    """What the admin, the usage view and the CSV show of the two streams."""
    uncached = log.input_tokens - 500
    other_input = other.input_tokens
    expected = log.cost
    page = admin_client.get(f"/admin/streaming/streamlog/{log.pk}/change/")
    text = page.content.decode()
    for name, value in [
        ("input_tokens", uncached + 500),
        ("cached_input_tokens", 300),
        ("cache_write_tokens", 200),
        ("output_tokens", 12),
        ("reasoning_tokens", "-"),
        ("cost", f"{expected:.9f}"),
    ]:
        shown = rf'field-{name}">\s*<label[^>]*>[^<]+:</label>\s*<div class="readonly">'
        assert re.search(shown + f"{value}</div>", text), name

    report = admin_client.get(USAGE_URL)
    (row,) = report.context["rows"]
    day_cost = log.cost + other.cost
    assert (row.input_tokens, row.cached_input_tokens, row.cache_write_tokens) == (
        uncached + 500 + other_input,
        340,
        200,
    )
    assert (row.output_tokens, row.reasoning_tokens, row.cost) == (20, 0, day_cost)
    assert report.context["totals"]["cost"] == day_cost
    assert f'<td class="num">{day_cost}</td>' in report.content.decode()
    assert len(report.context["charts"]) == 3  # tokens, streams, cost

    lines = admin_client.get(USAGE_URL, {"format": "csv"}).content.decode()
    header, line = list(csv.reader(io.StringIO(lines)))
    assert dict(zip(header, line, strict=True)) == {
        "date": usage.today().isoformat(),
        "user": "alice",
        "streams": "2",
        "errors": "0",
        "input_tokens": str(uncached + 500 + other_input),
        "output_tokens": "20",
        "total_tokens": str(uncached + 500 + other_input + 20),
        "estimated_rows": "0",
        "cached_input_tokens": "340",
        "cache_write_tokens": "200",
        "reasoning_tokens": "0",
        "cost": str(day_cost),
    }


@pytest.mark.django_db
def test_without_prices_no_cost_is_shown(admin_client, settings, alice, make_log):
    settings.MODEL_PRICES = {}
    make_log(alice, input_tokens=10, output_tokens=5)

    report = admin_client.get(USAGE_URL)
    lines = admin_client.get(USAGE_URL, {"format": "csv"}).content.decode()

    assert report.status_code == 200
    assert ">Cost</th>" not in report.content.decode()
    assert len(report.context["charts"]) == 2
    assert lines.splitlines()[1].endswith(",0,0,0,")  # an empty cost


async def test_crossing_the_cost_budget_stops_the_stream_and_refuses_the_next(
    start_relay, alice_token
):
    # Output at $15 a million tokens: $0.003 is 200 tokens, the prompt aside.
    relay = start_relay(**fresh(LIMIT_COST_PER_DAY="0.003", LIMIT_TOKENS_PER_DAY=0))
    prompt = "Spend " + fake(tokens=3000, pattern="chars", token_chars=4)
    async with relay.client(alice_token) as client:
        received, log = await ask(client, prompt)
        refused = await client.post(
            "/streams/", json={"prompt": "more", "provider": "anthropic"}
        )

    error = json.loads(received.events[-1].data)
    assert received.events[-1].event == "error"
    assert error["code"] == "budget_exceeded"
    assert "cost budget" in error["message"]
    assert (log.status, log.error_code) == (
        StreamLog.Status.CANCELLED,
        "budget_exceeded",
    )
    assert log.response == token_text(received.events)
    # Stopped within a token of crossing: the cost of one more output token at most.
    assert Decimal("0.003") < log.cost <= Decimal("0.003") + Decimal("0.000015")
    assert refused.status_code == 429
    assert refused.json()["error"] == "budget_exceeded"
    assert "cost budget" in refused.json()["message"]
    assert int(refused.headers["Retry-After"]) > 0


async def test_a_fast_stream_stops_within_a_token_of_the_token_budget(
    start_relay, alice_token
):
    """Guards the budget check: counted once a second, a 300-token budget let a fast
    stream run to ~446 tokens; this one sends 3000 at once."""
    relay = start_relay(**fresh(LIMIT_TOKENS_PER_DAY=300, MODEL_PRICES="{}"))
    prompt = "Fast " + fake(tokens=3000, pattern="chars", token_chars=4)
    async with relay.client(alice_token) as client:
        received, log = await ask(client, prompt, "openai")

    assert json.loads(received.events[-1].data)["code"] == "budget_exceeded"
    assert (log.status, log.tokens_estimated) == (StreamLog.Status.CANCELLED, True)
    # Each 4-character token is one estimated token: the crossing one is the last.
    assert log.input_tokens + log.output_tokens == 301
    assert log.cost is None


@pytest.mark.django_db(transaction=True)
async def test_a_reaped_stream_gets_the_cost_of_its_estimate(alice, make_log, settings):
    price_table(settings)
    settings.STREAM_LEASE_SECONDS = 30
    stale = await sync_to_async(make_log)(
        alice,
        model="claude-sonnet-4-5",
        prompt="Say hello",
        response="Hello, wor",
        status=StreamLog.Status.STREAMING,
    )
    unpriced = await sync_to_async(make_log)(
        alice, model="unpriced", status=StreamLog.Status.STREAMING
    )
    await StreamLog.objects.filter(pk__in=[stale.pk, unpriced.pk]).aupdate(
        updated_at=stale.created_at - timedelta(minutes=5)
    )

    assert await leases.reap() == 2

    stale = await StreamLog.objects.aget(pk=stale.pk)
    # Three tokens of prompt at $3, three of answer at $15, a million each.
    assert (stale.input_tokens, stale.output_tokens) == (3, 3)
    assert stale.cost == Decimal("0.000054")
    assert (await StreamLog.objects.aget(pk=unpriced.pk)).cost is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MODEL_PRICES", "{not json"),
        ("MODEL_PRICES", '{"gpt-4o-mini": {"input": 0.15}}'),  # no output price
        ("MODEL_PRICES", '{"gpt-4o-mini": {"input": 1, "output": -2}}'),
        ("MODEL_PRICES", '{"gpt-4o-mini": {"input": 1, "output": 2, "cache": 1}}'),
        ("LIMIT_COST_PER_DAY", "five"),
        ("LIMIT_COST_PER_DAY", "-1"),
    ],
)
def test_a_bad_price_table_or_cost_budget_stops_the_start(name, value):
    env = environ_without("DJANGO_", "PYTEST_", "MODEL_PRICES", "LIMIT_")
    env[name] = value
    checked = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )

    assert checked.returncode != 0
    assert f"ImproperlyConfigured: {name} is" in checked.stderr
