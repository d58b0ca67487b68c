"""A model's reasoning through a real relay: `reasoning` frames (ids `r<N>`) apart
from the answer's `token` frames, both kinds resumed live, from the row, and on
another process, and the row, the usage and the reaper keeping the two apart."""

import asyncio
import json
import math
import os
import signal
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from httpx import Headers

from streaming.models import StreamLog
from streaming.relay import framelog, hub, leases
from streaming.relay.joined import SWITCH, Position
from tests.helpers import (
    Event,
    Received,
    expected_answer,
    expected_reasoning,
    fake,
    finished_log,
    new_key,
    parse_sse,
    read_events,
    token_text,
)

pytestmark = pytest.mark.timeout(60)

# (provider, the OpenAI delta field the fake sends the reasoning in)
UPSTREAMS = [
    ("openai", "reasoning_content"),
    ("openai", "reasoning"),
    ("anthropic", None),
]
SLOW = {"pattern": "counter", "reasoning": 14, "tokens": 14, "delay_ms": 25}


def _options(field: str | None, **options: object) -> dict[str, object]:
    return {**options, "reasoning_field": field} if field else options


def reasoning_text(events: list[Event]) -> str:
    return "".join(event.data for event in events if event.event == "reasoning")


def reasonings_at_least(count: int):
    return lambda events: sum(e.event == "reasoning" for e in events) >= count


def ids(events: list[Event], kind: str) -> list[str]:
    return [event.id for event in events if event.event == kind]


def running_ends(pieces: list[str], prefix: str = "", start: int = 0) -> list[str]:
    """The ids of frames carrying `pieces`: where each ends in its own text."""
    ends, at = [], start
    for piece in pieces:
        at += len(piece)
        ends.append(f"{prefix}{at}")
    return ends


async def _start(relay, token: str, prompt: str, provider: str = "openai") -> int:
    async with relay.client(token) as client:
        response = await client.post(
            "/streams/", json={"prompt": prompt, "provider": provider}
        )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def _events(relay, token: str, stream: int, last_event_id: str | None = None):
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    async with relay.client(token) as client:
        return await read_events(client, f"/streams/{stream}/events", headers=headers)


def _check_rest(received, *, answer: str, reasoning: str, at: Position) -> None:
    """`received` is a resume from `at` of a stream whose reasoning came before its
    answer: exactly the rest of both, numbered on from `at`."""
    assert received.status == 200, received.body
    # At the answer's start a client has none of the reasoning yet; further on,
    # all of it.
    seen_reasoning = at.offset if at.reasoning else len(reasoning) * bool(at.offset)
    seen_answer = 0 if at.reasoning else at.offset
    events = received.events
    kinds = [e.event for e in events]
    tokens = kinds.count("token")
    thoughts = len(kinds) - tokens - 3
    reasoning_then_tokens = [*["reasoning"] * thoughts, *["token"] * tokens]
    assert kinds == ["meta", *reasoning_then_tokens, "usage", "done"], kinds
    assert reasoning_text(events) == reasoning[seen_reasoning:]
    assert token_text(events) == answer[seen_answer:]
    pieces = [e.data for e in events if e.event == "reasoning"]
    assert ids(events, "reasoning") == running_ends(pieces, "r", seen_reasoning)
    pieces = [e.data for e in events if e.event == "token"]
    assert ids(events, "token") == running_ends(pieces, "", seen_answer)


# --------------------------------------------------------------------------- frames


@pytest.mark.parametrize(("provider", "field"), UPSTREAMS)
async def test_the_reasoning_comes_before_the_answer_whose_ids_stay_as_they_were(
    relay, alice, alice_token, provider, field
):
    options = _options(field, pattern="tricky", tokens=20)
    plain = await _start(relay, alice_token, "Go " + fake(**options), provider)
    thinking = await _start(
        relay, alice_token, "Go " + fake(**options, reasoning=7), provider
    )

    without, received = await asyncio.gather(
        _events(relay, alice_token, plain), _events(relay, alice_token, thinking)
    )

    answer = expected_answer(**options)
    reasoning = expected_reasoning(**options, reasoning=7)
    assert reasoning.startswith("Step 1: think. Step 2: check the premise.\n")
    _check_rest(received, answer=answer, reasoning=reasoning, at=Position(0))
    # The answer's ids count the answer only, as in a stream without reasoning.
    assert ids(received.events, "token") == ids(without.events, "token")
    assert token_text(without.events) == token_text(received.events) == answer
    log = await finished_log(thinking)
    assert (log.status, log.response, log.reasoning) == (
        "completed",
        answer,
        reasoning,
    )
    assert log.reasoning_spans == [[0, len(reasoning)]]
    # The provider gave no count of the reasoning: it is estimated from its text,
    # as part of the output (which this fake counts without it), never more.
    estimated = min(math.ceil(len(reasoning) / 4), 20)
    assert json.loads(received.events[-2].data) == {
        "input_tokens": log.input_tokens,
        "output_tokens": 20,
        "reasoning_tokens": estimated,
    }
    assert (log.output_tokens, log.reasoning_tokens) == (20, estimated)
    assert not log.tokens_estimated
    plain_log = await finished_log(plain)
    assert (plain_log.reasoning, plain_log.reasoning_spans) == ("", [])
    # As reported: OpenAI's details say 0, Anthropic's say nothing.
    assert plain_log.reasoning_tokens == (0 if provider == "openai" else None)
    assert "reasoning_tokens" not in json.loads(without.events[-2].data)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_the_providers_count_of_the_reasoning_is_kept(
    relay, alice, alice_token, provider
):
    options = {"tokens": 5, "reasoning": 4, "reasoning_tokens": 33}
    stream = await _start(relay, alice_token, "Go " + fake(**options), provider)

    received = await _events(relay, alice_token, stream)

    log = await finished_log(stream)
    assert json.loads(received.events[-2].data) == {
        "input_tokens": log.input_tokens,
        "output_tokens": 5 + 33,
        "reasoning_tokens": 33,
    }
    assert (log.output_tokens, log.reasoning_tokens) == (38, 33)
    assert (
        log.reasoning
        == reasoning_text(received.events)
        == expected_reasoning(**options)
    )


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_without_usage_the_output_is_estimated_from_both_texts_characters(
    relay, alice, alice_token, provider
):
    # 100 characters of reasoning and 12 of answer: 28 tokens (29 if the SWITCH
    # between them counted).
    options = {"pattern": "fixed", "text": "abcd", "tokens": 3, "reasoning": 4}
    stream = await _start(
        relay, alice_token, "Go " + fake(**options, usage="none"), provider
    )

    received = await _events(relay, alice_token, stream)

    assert len(expected_reasoning(**options)) == 100
    log = await finished_log(stream)
    assert json.loads(received.events[-2].data) == {
        "input_tokens": log.input_tokens,
        "output_tokens": 28,
        "reasoning_tokens": 25,
    }
    assert (log.output_tokens, log.reasoning_tokens, log.tokens_estimated) == (
        28,
        25,
        True,
    )


async def test_a_provider_nul_reaches_viewers_and_the_row_as_a_replacement(
    relay, alice, alice_token
):
    """U+0000 is the relay's SWITCH, and PostgreSQL stores no U+0000: in a
    provider's text it becomes U+FFFD, and the reasoning stays whole beside it."""
    options = {"pattern": "fixed", "text": "a\0b", "tokens": 3, "reasoning": 3}
    stream = await _start(relay, alice_token, "Go " + fake(**options))

    received = await _events(relay, alice_token, stream)

    assert expected_answer(**options) == "a\0ba\0ba\0b"
    answer = "a\ufffdba\ufffdba\ufffdb"
    reasoning = expected_reasoning(**options)
    _check_rest(received, answer=answer, reasoning=reasoning, at=Position(0))
    log = await finished_log(stream)
    assert (log.status, log.response, log.reasoning) == (
        "completed",
        answer,
        reasoning,
    )
    assert log.reasoning_spans == [[0, len(reasoning)]]


# --------------------------------------------------------------------------- resumes


async def test_a_live_stream_resumes_from_a_reasoning_id_and_from_a_token_id(
    relay, alice, alice_token, upstream
):
    answer, reasoning = expected_answer(**SLOW), expected_reasoning(**SLOW)
    key = new_key()
    stream = await _start(relay, alice_token, "Go " + fake(**SLOW, key=key))

    async with relay.client(alice_token) as client:
        url = f"/streams/{stream}/events"
        first = await read_events(client, url, until=reasonings_at_least(3))
        mid_reasoning = first.events[-1].id
        from_reasoning = await read_events(
            client, url, headers={"Last-Event-ID": mid_reasoning}
        )
    async with relay.client(alice_token) as client:
        # A new stream of the same kind, read into its answer.
        other = await _start(relay, alice_token, "Go " + fake(**SLOW))
        url = f"/streams/{other}/events"
        into_answer = await read_events(
            client, url, until=lambda events: events[-1].event == "token"
        )
        after_switch = into_answer.events[-1].id
        from_token = await read_events(
            client, url, headers={"Last-Event-ID": after_switch}
        )

    # Read live: stopped at a reasoning frame, and then at a token frame.
    assert first.events[-1].event == "reasoning"
    assert into_answer.events[-1].event == "token"
    assert reasoning_text(first.events) == reasoning[: int(mid_reasoning[1:])]
    assert token_text(first.events) == ""
    _check_rest(
        from_reasoning,
        answer=answer,
        reasoning=reasoning,
        at=Position(int(mid_reasoning[1:]), reasoning=True),
    )
    assert reasoning_text(into_answer.events) == reasoning
    assert token_text(into_answer.events) == answer[: int(after_switch)]
    _check_rest(
        from_token, answer=answer, reasoning=reasoning, at=Position(int(after_switch))
    )
    for pk in (stream, other):
        log = await finished_log(pk)
        assert (log.response, log.reasoning) == (answer, reasoning)
    assert len(upstream["openai"].streams(key)) == 1


async def test_a_finished_stream_resumes_from_every_id_it_sent(
    relay, alice, alice_token
):
    options = {"pattern": "tricky", "tokens": 12, "reasoning": 6}
    stream = await _start(relay, alice_token, "Go " + fake(**options))
    whole = await _events(relay, alice_token, stream)
    await finished_log(stream)
    answer, reasoning = expected_answer(**options), expected_reasoning(**options)
    sent = [e.id for e in whole.events if e.event in ("reasoning", "token")]

    resumed = await asyncio.gather(
        *(_events(relay, alice_token, stream, last_id) for last_id in sent[:-1])
    )

    for last_id, received in zip(sent, resumed, strict=False):
        _check_rest(received, answer=answer, reasoning=reasoning, at=_at(last_id))
    # The last id has everything: 204 tells EventSource to stop.
    assert (await _events(relay, alice_token, stream, sent[-1])).status == 204
    # The relay still has the stream in memory; a process that has only the row
    # replays it the same.
    log = await finished_log(stream)
    for last_id in sent[:-1]:
        frames = await hub.get().follow(log, user_id=alice.pk, after=_at(last_id))
        text = "".join([frame async for frame in frames])
        replayed = Received(200, Headers(), parse_sse(text)[0])
        _check_rest(replayed, answer=answer, reasoning=reasoning, at=_at(last_id))
    assert await hub.get().follow(log, user_id=alice.pk, after=_at(sent[-1])) is None


def _at(last_event_id: str) -> Position:
    reasoning = last_event_id.startswith("r")
    return Position(int(last_event_id.removeprefix("r")), reasoning=reasoning)


# --------------------------------------------------------------------------- rows


def _thinking_log(make_log, user, **fields) -> StreamLog:
    """A finished row whose reasoning and answer interleave:
    `hmm` `Hello, ` `wait...` `world!`."""
    fields.setdefault("response", "Hello, world!")
    fields.setdefault("reasoning", "hmmwait...")
    fields.setdefault("reasoning_spans", [[0, 3], [7, 7]])
    fields.setdefault("input_tokens", 3)
    fields.setdefault("output_tokens", 9)
    fields.setdefault("reasoning_tokens", 4)
    return make_log(user, **fields)


RECORDED = [
    ("reasoning", "hmm", "r3"),
    ("token", "Hello, ", "7"),
    ("reasoning", "wait...", "r10"),
    ("token", "world!", "13"),
]


def _frames(events: list[Event]) -> list[tuple[str, str, str]]:
    return [tuple(e) for e in events if e.event in ("reasoning", "token")]


@pytest.mark.django_db(transaction=True)
async def test_a_row_is_replayed_in_the_order_its_texts_came(alice, make_log):
    log = await sync_to_async(_thinking_log)(make_log, alice)
    viewers = hub.get()

    async def replay(after: Position | None) -> list[Event]:
        frames = await viewers.follow(log, user_id=alice.pk, after=after)
        events, _, _ = parse_sse("".join([frame async for frame in frames]))
        return events

    events = await replay(None)
    assert _frames(events) == RECORDED
    assert json.loads(events[-2].data) == {
        "input_tokens": 3,
        "output_tokens": 9,
        "reasoning_tokens": 4,
    }
    # From every place a client can have got to, and mid-run.
    starts = {
        Position(0): RECORDED,
        Position(2, reasoning=True): [("reasoning", "m", "r3"), *RECORDED[1:]],
        Position(3, reasoning=True): RECORDED[1:],
        Position(4): [("token", "o, ", "7"), *RECORDED[2:]],
        Position(7): RECORDED[2:],
        Position(9, reasoning=True): [("reasoning", ".", "r10"), RECORDED[3]],
        Position(10, reasoning=True): RECORDED[3:],
        Position(12): [("token", "!", "13")],
    }
    for after, expected in starts.items():
        assert _frames(await replay(after)) == expected, after
    assert await viewers.follow(log, user_id=alice.pk, after=Position(13)) is None


@pytest.mark.parametrize(
    ("last_event_id", "status", "expected"),
    [
        ("r3", 200, RECORDED[1:]),
        ("r10", 200, RECORDED[3:]),
        ("7", 200, RECORDED[2:]),
        ("13", 204, None),
        ("r11", 400, None),
        ("14", 400, None),
        ("rr1", 400, None),
        ("r", 400, None),
    ],
)
async def test_over_http_a_finished_rows_reasoning_ids_resume_or_are_refused(
    relay, alice, alice_token, make_log, last_event_id, status, expected
):
    log = await sync_to_async(_thinking_log)(make_log, alice)

    received = await _events(relay, alice_token, log.pk, last_event_id)

    assert received.status == status, received.body
    if status == 200:
        assert _frames(received.events) == expected
        assert [e.event for e in received.events][-2:] == ["usage", "done"]
    elif status == 400:
        assert json.loads(received.body)["error"] == "bad_last_event_id"
    else:
        assert received.body == ""


async def test_a_stream_that_only_reasoned_is_done_at_the_end_of_its_reasoning(
    relay, alice, alice_token, make_log
):
    log = await sync_to_async(make_log)(
        alice, response="", reasoning="only thoughts", reasoning_spans=[[0, 13]]
    )

    whole = await _events(relay, alice_token, log.pk)
    mid = await _events(relay, alice_token, log.pk, "r5")
    end = await _events(relay, alice_token, log.pk, "r13")
    answer_start = await _events(relay, alice_token, log.pk, "0")

    assert _frames(whole.events) == [("reasoning", "only thoughts", "r13")]
    assert _frames(mid.events) == [("reasoning", "thoughts", "r13")]
    assert (end.status, end.body) == (204, "")
    # Nothing of the answer yet, which comes before the reasoning began.
    assert _frames(answer_start.events) == _frames(whole.events)


async def test_past_the_reasoning_an_interrupted_row_gives_its_ending(
    relay, alice, alice_token, make_log
):
    log = await sync_to_async(_thinking_log)(
        make_log,
        alice,
        status=StreamLog.Status.INTERRUPTED,
        error_code="interrupted",
        error_message="The server restarted before this answer finished.",
    )

    received = await _events(relay, alice_token, log.pk, "r40")

    assert [e.event for e in received.events] == ["meta", "error"]
    error = json.loads(received.events[-1].data)
    assert (error["code"], error["retryable"]) == ("interrupted", True)


# --------------------------------------------------------------------------- processes


@pytest.mark.redis
async def test_a_viewer_on_another_process_joins_mid_reasoning_and_resumes_there(
    redis_url, start_relay, alice, alice_token
):
    a, b = start_relay(instance="a"), start_relay(instance="b")
    answer, reasoning = expected_answer(**SLOW), expected_reasoning(**SLOW)
    stream = await _start(a, alice_token, "Go " + fake(**SLOW))

    async with b.client(alice_token) as on_b:
        url = f"/streams/{stream}/events"
        first = await read_events(on_b, url, until=reasonings_at_least(4))
        last_id = first.events[-1].id
        rest = await read_events(on_b, url, headers={"Last-Event-ID": last_id})

    assert first.events[-1].event == "reasoning"  # read live, stopped there
    assert reasoning_text(first.events) == reasoning[: int(last_id[1:])]
    at = Position(int(last_id[1:]), reasoning=True)
    _check_rest(rest, answer=answer, reasoning=reasoning, at=at)
    log = await finished_log(stream)
    assert (log.response, log.reasoning, log.reasoning_spans) == (
        answer,
        reasoning,
        [[0, len(reasoning)]],
    )


# --------------------------------------------------------------------------- anthropic


@pytest.mark.parametrize(
    ("model", "thinking", "max_tokens"),
    [
        (
            "claude-sonnet-4-5",
            {"type": "enabled", "budget_tokens": 2048},
            16384 + 2048,
        ),
        ("claude-haiku-4-5", None, 16384),
    ],
)
async def test_a_model_with_a_thinking_budget_asks_for_thinking_beyond_its_limit(
    start_relay, alice, alice_token, upstream, model, thinking, max_tokens
):
    relay = start_relay(
        ANTHROPIC_MODELS="claude-sonnet-4-5,claude-haiku-4-5",
        ANTHROPIC_THINKING_BUDGET_BY_MODEL="claude-sonnet-4-5=2048",
        ANTHROPIC_MAX_TOKENS=16384,
    )
    key = new_key()
    options = {"tokens": 4, "reasoning": 3, "key": key}
    async with relay.client(alice_token) as client:
        started = await client.post(
            "/streams/",
            json={"prompt": fake(**options), "provider": "anthropic", "model": model},
        )
        assert started.status_code == 201, started.text
        received = await read_events(client, started.json()["events_url"])

    sent = await upstream["anthropic"].outcome(key)
    assert (sent["thinking"], sent["limits"]) == (thinking, {"max_tokens": max_tokens})
    assert reasoning_text(received.events) == expected_reasoning(**options)


# --------------------------------------------------------------------------- leases


@pytest.mark.redis
async def test_a_killed_workers_stream_is_reaped_from_the_frame_log_apart(
    start_relay, alice, alice_token
):
    """No checkpoint reached the row: all it ends with came from the frame log."""
    # Logged every 25 ms, so the log holds the reasoning well before the kill.
    lease = {
        "STREAM_LEASE_SECONDS": 2,
        "STREAM_CHECKPOINT_SECONDS": 3600,
        "STREAM_LOG_INTERVAL_MS": 25,
    }
    doomed = start_relay(instance="doomed-reasoning", **lease)
    survivor = start_relay(instance="survivor-reasoning", **lease)
    options = {"pattern": "counter", "reasoning": 8, "tokens": 500, "delay_ms": 20}
    stream = await _start(doomed, alice_token, "Go " + fake(**options))
    async with doomed.client(alice_token) as client:
        seen = await read_events(
            client,
            f"/streams/{stream}/events",
            until=lambda events: sum(e.event == "token" for e in events) >= 20,
        )
    row = await StreamLog.objects.aget(pk=stream)
    assert (row.response, row.reasoning) == ("", "")  # never checkpointed

    os.kill(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait(timeout=10)
    try:
        async with survivor.client(alice_token) as client:
            await client.get("/healthz")  # any request starts the survivor's keeper
            log = await finished_log(stream, timeout=15)
            replay = await read_events(client, f"/streams/{stream}/events")
    finally:
        # Its 2 s lease would reap rows that later tests build and leave streaming.
        survivor.stop()

    reasoning = expected_reasoning(**options)
    assert (log.status, log.error_code) == ("interrupted", "interrupted")
    assert (log.reasoning, log.reasoning_spans) == (reasoning, [[0, len(reasoning)]])
    # The log may be a window behind what the viewer saw, or ahead of it.
    seen_answer = token_text(seen.events)
    assert log.response and (
        seen_answer.startswith(log.response) or log.response.startswith(seen_answer)
    )
    assert expected_answer(**options).startswith(log.response)
    assert SWITCH not in log.response + log.reasoning
    assert log.tokens_estimated
    assert log.output_tokens == math.ceil((len(log.response) + len(reasoning)) / 4)
    assert reasoning_text(replay.events) == reasoning
    assert token_text(replay.events) == log.response
    assert replay.events[-1].event == "error"


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_the_reaper_keeps_a_checkpoint_longer_than_the_frame_log(
    alice, make_log, settings
):
    """The frame log lags the checkpoint when Redis was away: its joined text counts
    a SWITCH between runs, which is no character of either text."""
    settings.STREAM_LEASE_SECONDS = 30
    log = await sync_to_async(make_log)(
        alice,
        status=StreamLog.Status.STREAMING,
        response="wxyz",
        reasoning="abcd",
        reasoning_spans=[[0, 4]],
    )
    await StreamLog.objects.filter(pk=log.pk).aupdate(
        updated_at=log.created_at - timedelta(minutes=5)
    )
    assert await framelog.read(log.pk) is None  # no log left by another test
    # Seven characters of the eight checkpointed, nine with its SWITCHes.
    await framelog.append([framelog.Entry(log.pk, 0, f"{SWITCH}abcd{SWITCH}wxy")])

    assert await leases.reap() == 1

    log = await StreamLog.objects.aget(pk=log.pk)
    assert (log.status, log.response, log.reasoning) == ("interrupted", "wxyz", "abcd")
    assert log.reasoning_spans == [[0, 4]]


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_the_reaper_estimates_what_the_frame_log_kept_by_its_characters(
    alice, make_log, settings
):
    settings.STREAM_LEASE_SECONDS = 30
    log = await sync_to_async(make_log)(
        alice, status=StreamLog.Status.STREAMING, response=""
    )
    await StreamLog.objects.filter(pk=log.pk).aupdate(
        updated_at=log.created_at - timedelta(minutes=5)
    )
    assert await framelog.read(log.pk) is None  # no log left by another test
    await framelog.append([framelog.Entry(log.pk, 0, f"{SWITCH}abcd{SWITCH}wxyz")])

    assert await leases.reap() == 1

    log = await StreamLog.objects.aget(pk=log.pk)
    assert (log.status, log.response, log.reasoning) == ("interrupted", "wxyz", "abcd")
    assert log.reasoning_spans == [[0, 4]]
    # Eight characters of text, two tokens; the SWITCHes are no text.
    assert (log.output_tokens, log.reasoning_tokens, log.tokens_estimated) == (
        2,
        1,
        True,
    )


@pytest.mark.django_db(transaction=True)
async def test_a_row_reaped_from_its_checkpoint_counts_its_reasoning(
    alice, make_log, settings
):
    """Without a frame log (no Redis, or it lost the stream) the checkpoint is all
    there is: its reasoning is output as the answer is, and estimated apart."""
    settings.STREAM_LEASE_SECONDS = 30
    thought = await sync_to_async(make_log)(
        alice,
        status=StreamLog.Status.STREAMING,
        response="Hello",
        reasoning="hmm, a greeting",
        reasoning_spans=[[0, 15]],
    )
    plain = await sync_to_async(make_log)(
        alice, status=StreamLog.Status.STREAMING, response="Hello"
    )
    await StreamLog.objects.filter(pk__in=[thought.pk, plain.pk]).aupdate(
        updated_at=thought.created_at - timedelta(minutes=5)
    )
    for log in (thought, plain):
        assert await framelog.read(log.pk) is None

    assert await leases.reap() == 2

    thought = await StreamLog.objects.aget(pk=thought.pk)
    assert (thought.status, thought.response, thought.reasoning) == (
        "interrupted",
        "Hello",
        "hmm, a greeting",
    )
    assert thought.reasoning_spans == [[0, 15]]
    # 20 characters, 5 tokens; 15 of reasoning, 4.
    assert (thought.output_tokens, thought.reasoning_tokens) == (5, 4)
    plain = await StreamLog.objects.aget(pk=plain.pk)
    assert (plain.output_tokens, plain.reasoning_tokens) == (2, None)
