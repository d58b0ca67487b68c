import json
import random

import httpx
import pytest
from httpx_sse import EventSource

from streaming import sse
from streaming.relay.feed import Text
from tests.helpers import Event, dispatched, expected_answer, parse_sse

TRICKY = expected_answer(pattern="tricky", tokens=34)


def _httpx_sse(raw: str) -> list[Event]:
    """The same bytes through httpx-sse, the client the other tests use."""
    response = httpx.Response(
        200,
        headers={"content-type": sse.CONTENT_TYPE},
        content=raw.encode(),
    )
    events = EventSource(response).iter_sse()
    return [Event(e.event, e.data, e.id) for e in events if dispatched(e)]


TEXTS = [
    "Hello",
    "",
    " leading space",
    "  two leading spaces",
    ":colon at line start",
    "line1\nline2",
    "ends with a newline\n",
    "\n",
    "\n\nblank lines\n\n",
    "first\n:second line starts with a colon\n  third is indented",
    "data: not a field\nevent: fake\nid: 7\nretry: 1",
    "trailing space ",
    "\t tab",
    "[DONE]",
    "é 日本語 🎉 👩\u200d💻 e\u0301 \U00010348",
    "\u2028 and \u0085 are not line ends in SSE",
    TRICKY,
]


@pytest.mark.parametrize("text", TEXTS)
def test_it_encodes_text_that_a_spec_parser_rebuilds_exactly(text):
    frame = sse.encode("token", text, id="42")

    events, comments, _ = parse_sse(frame)

    assert events == [Event("token", text, "42")]
    assert comments == []
    assert _httpx_sse(frame) == events


@pytest.mark.parametrize("text", TEXTS)
def test_it_writes_one_data_line_per_line_of_text(text):
    frame = sse.encode("token", text)

    lines = frame.split("\n")

    assert lines[0] == "event: token"
    assert lines[-2:] == ["", ""]
    data_lines = lines[1:-2]
    assert data_lines == [f"data: {line}" for line in text.split("\n")]


def test_it_leaves_out_the_id_line_without_an_id():
    assert sse.encode("done", "[DONE]") == "event: done\ndata: [DONE]\n\n"


def test_it_keeps_frames_apart_when_they_are_concatenated():
    pieces = [TRICKY[i : i + 7] for i in range(0, len(TRICKY), 7)]
    stream = sse.retry(2000) + "".join(
        sse.encode("token", piece, id=str(i)) for i, piece in enumerate(pieces)
    )
    stream += sse.comment("ping") + sse.encode("done", "[DONE]")

    events, comments, retry = parse_sse(stream)

    assert [e.data for e in events[:-1]] == pieces
    assert "".join(e.data for e in events if e.event == "token") == TRICKY
    assert events[-1] == Event("done", "[DONE]", str(len(pieces) - 1))
    assert comments == ["ping"]
    assert retry == 2000
    assert _httpx_sse(stream) == events


def test_it_encodes_json_without_escaping_unicode():
    payload = {"code": "stopped", "message": "Arrêté 🎉", "retryable": False}

    frame = sse.encode_json("error", payload)

    assert "Arrêté 🎉" in frame
    [event], _, _ = parse_sse(frame)
    assert event.event == "error"
    assert json.loads(event.data) == payload


def test_a_comment_is_no_event():
    events, comments, _ = parse_sse(sse.comment("ping"))

    assert events == []
    assert comments == ["ping"]
    assert _httpx_sse(sse.comment("ping")) == []


def test_the_response_carries_the_event_stream_headers():
    async def frames():
        yield "retry: 1\n\n"

    response = sse.response(frames())

    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    assert not response.has_header("Connection")
    assert not response.has_header("Content-Encoding")
    assert response.streaming


def _chunks(count: int) -> list[str]:
    rng = random.Random(count)
    alphabet = ["a", "b", " ", "\n", "é", "日", "🎉", "xyz", ""]
    return ["".join(rng.choices(alphabet, k=rng.randint(0, 4))) for _ in range(count)]


@pytest.mark.parametrize("count", [0, 1, 255, 256, 257, 511, 512, 513, 700])
def test_text_since_gives_the_rest_at_every_offset(count):
    """Guards the block boundaries: chunks are joined into blocks of 256."""
    chunks = _chunks(count)
    text = Text()
    for chunk in chunks:
        text.append(chunk)
    whole = "".join(chunks)

    assert text.length == len(whole)
    assert str(text) == whole
    for offset in range(len(whole) + 2):
        assert text.since(offset) == whole[offset:], offset


def test_text_since_is_right_while_it_grows():
    chunks = _chunks(600)
    text = Text()
    whole = ""
    for i, chunk in enumerate(chunks):
        text.append(chunk)
        whole += chunk
        if i % 50 in (0, 49) or i in (254, 255, 256, 511, 512):
            assert [text.since(k) for k in range(len(whole) + 1)] == [
                whole[k:] for k in range(len(whole) + 1)
            ], i


def test_text_starts_from_initial_text():
    text = Text("Hello, Alice!")

    assert text.length == 13
    assert text.since(7) == "Alice!"
    assert text.since(13) == ""
