"""The AI SDK's UI message stream dialect, called as `hub.follow` calls it: the parts
of each step, reasoning blocks closed before the text, and every ending."""

import json

from streaming.api.ui_message_stream import UIMessageStream
from streaming.errors import StreamError
from streaming.relay.feed import Ending
from tests.helpers import parse_sse

META = {"stream_id": 7, "provider": "demo", "model": "demo"}


def read(frames: str) -> list[dict | str]:
    """The parts as a spec-compliant SSE parser hands them over ([DONE] as is)."""
    events, comments, retry = parse_sse(frames)
    assert (comments, retry) == ([], None)
    assert all((e.event, e.id) == ("message", "") for e in events)
    return [e.data if e.data == "[DONE]" else json.loads(e.data) for e in events]


def test_a_completed_answer_is_one_text_block_then_finish():
    dialect = UIMessageStream()
    usage = {"input_tokens": 3, "output_tokens": 2}

    frames = (
        dialect.opening(META)
        + dialect.text("Hel", 3)
        + dialect.text('lo,\n "world"\r', 16)
        + dialect.closing(Ending("completed", usage=usage))
    )

    assert read(frames) == [
        {"type": "start", "messageId": "msg-7", "messageMetadata": META},
        {"type": "start-step"},
        {"type": "text-start", "id": "text-0"},
        {"type": "text-delta", "id": "text-0", "delta": "Hel"},
        {"type": "text-delta", "id": "text-0", "delta": 'lo,\n "world"\r'},
        {"type": "text-end", "id": "text-0"},
        {"type": "finish-step"},
        {
            "type": "finish",
            "finishReason": "stop",
            "messageMetadata": {**META, "status": "completed", "usage": usage},
        },
        "[DONE]",
    ]


def test_reasoning_is_a_block_of_its_own_closed_before_the_text():
    dialect = UIMessageStream()

    frames = (
        dialect.opening(META)
        + dialect.reasoning("Let me", 6)
        + dialect.reasoning(" think.", 13)
        + dialect.text("Yes.", 4)
        + dialect.reasoning("Or not?", 20)
        + dialect.text(" No.", 8)
        + dialect.closing(Ending("completed"))
    )

    assert [p if isinstance(p, str) else p["type"] for p in read(frames)] == [
        "start",
        "start-step",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-delta",
        "reasoning-end",
        "text-start",
        "text-delta",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-end",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
        "[DONE]",
    ]
    chunks = read(frames)
    assert [c.get("id") for c in chunks[2:6]] == ["reasoning-0"] * 4
    assert [c.get("id") for c in chunks[8:11]] == ["reasoning-1"] * 3
    assert chunks[3]["delta"] + chunks[4]["delta"] == "Let me think."


def test_an_open_reasoning_block_is_closed_at_the_end():
    dialect = UIMessageStream()
    error = StreamError.of("unavailable", "The model is unavailable; try again.")

    frames = (
        dialect.opening(META)
        + dialect.reasoning("Hmm", 3)
        + dialect.closing(Ending("error", error=error))
    )

    chunks = read(frames)
    assert [p if isinstance(p, str) else p["type"] for p in chunks] == [
        "start",
        "start-step",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-end",
        "error",
        "finish-step",
        "finish",
        "[DONE]",
    ]
    assert chunks[5] == {"type": "error", "errorText": error.message}
    assert chunks[7]["finishReason"] == "error"
    assert chunks[7]["messageMetadata"]["error"] == error.as_dict()


def test_a_stop_is_no_error_for_the_chat():
    dialect = UIMessageStream()
    stopped = StreamError.of("stopped", "The answer was stopped.")

    frames = (
        dialect.opening(META)
        + dialect.text("Part", 4)
        + dialect.closing(Ending("cancelled", error=stopped))
    )

    chunks = read(frames)
    assert "error" not in [c["type"] for c in chunks[:-1]]
    assert chunks[-2]["finishReason"] == "other"
    assert chunks[-2]["messageMetadata"]["status"] == "cancelled"
    assert chunks[-2]["messageMetadata"]["error"]["code"] == "stopped"


def test_a_heartbeat_is_a_comment():
    events, comments, _ = parse_sse(UIMessageStream().heartbeat())

    assert (events, comments) == ([], ["ping"])
