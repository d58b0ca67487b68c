"""Properties of the joined text (`relay.feed`): an answer and a reasoning in any
interleaving survive `split` and `join`, a `Feed` counts both however its text
arrives, and a viewer resuming from any offset of either gets exactly the rest."""

import asyncio
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from streaming.relay import dialects
from streaming.relay.feed import Ending, Feed
from streaming.relay.joined import SWITCH, Normaliser, Position, join, split
from tests.properties.support import examples

ANSWER, REASONING = "answer", "reasoning"

# What a provider's deltas carry once normalised: any text but the SWITCH.
PIECES = st.lists(
    st.tuples(
        st.sampled_from([ANSWER, REASONING]),
        st.text(st.characters(blacklist_characters=SWITCH), min_size=1, max_size=12),
    ),
    max_size=12,
)


def appended(pieces: list[tuple[str, str]]) -> list[str]:
    """What `generation._relay` appends for these deltas: the text starts in the
    answer, and a SWITCH goes before the first piece of each change of kind."""
    kind, out = ANSWER, []
    for piece_kind, text in pieces:
        out.append(text if piece_kind == kind else SWITCH + text)
        kind = piece_kind
    return out


def texts_of(pieces: list[tuple[str, str]]) -> tuple[str, str]:
    answer = "".join(text for kind, text in pieces if kind == ANSWER)
    reasoning = "".join(text for kind, text in pieces if kind == REASONING)
    return answer, reasoning


def fed(stream_id: int, parts: list[str]) -> Feed:
    feed = Feed(stream_id)
    for part in parts:
        feed.append(part)
    return feed


def positions(joined: str) -> list[tuple[Position, int]]:
    """Every position a client can be at, with the offset in the joined text it
    stands for: right after each character of either text (at the end of a run,
    before the SWITCH that ends it), and the answer's start."""
    found = [(Position(0), 0)]
    kind, answer, reasoning = ANSWER, 0, 0
    for index, char in enumerate(joined):
        if char == SWITCH:
            kind = REASONING if kind == ANSWER else ANSWER
        elif kind == ANSWER:
            answer += 1
            found.append((Position(answer), index + 1))
        else:
            reasoning += 1
            found.append((Position(reasoning, reasoning=True), index + 1))
    return found


class Frames:
    """A dialect that keeps each text frame as (kind, text, offset)."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, str, int]] = []

    def opening(self, meta: dict) -> str:
        return ""

    def text(self, text: str, offset: int) -> str:
        self.frames.append((ANSWER, text, offset))
        return ""

    def reasoning(self, text: str, offset: int) -> str:
        self.frames.append((REASONING, text, offset))
        return ""

    def closing(self, ending: Ending) -> str:
        return ""

    def heartbeat(self) -> str:
        raise AssertionError("an ended feed never waits")


def walk(feed: Feed, after: Position, frame_chars: int) -> list[tuple[str, str, int]]:
    """The text frames `dialects.frames` gives a viewer at `after` of an ended feed."""
    dialect = Frames()

    async def drain() -> None:
        frames = dialects.frames({}, feed, after=after, dialect=dialect)
        async for _frame in frames:
            pass

    with mock.patch.object(dialects, "FRAME_CHARS", frame_chars):
        asyncio.run(drain())
    return dialect.frames


@examples(300)
@given(pieces=PIECES)
def test_split_and_join_give_back_the_joined_text_and_both_texts(pieces):
    joined = "".join(appended(pieces))

    answer, reasoning, spans = split(joined)

    assert (answer, reasoning) == texts_of(pieces)
    assert join(answer, reasoning, spans) == joined
    assert sum(length for _, length in spans) == len(reasoning)
    assert all(length > 0 for _, length in spans)


@examples(300)
@given(pieces=PIECES, cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_a_feed_counts_both_texts_however_its_text_arrives(pieces, cuts):
    """Piece by piece (an owner), at once (a finished row's replay), or cut anywhere
    (a mirror catching up from the frame log), a feed reads the same."""
    parts = appended(pieces)
    joined = "".join(parts)
    answer, reasoning = texts_of(pieces)
    bounds = sorted({0, len(joined), *(cut % (len(joined) + 1) for cut in cuts)})
    chunks = [joined[start:end] for start, end in zip(bounds, bounds[1:])]

    feeds = [fed(1, parts), Feed(1, joined), fed(1, chunks)]

    for feed in feeds:
        assert str(feed.text) == joined
        assert (feed.answer_length, feed.reasoning_length) == (
            len(answer),
            len(reasoning),
        )
        assert feed.in_reasoning == (joined.count(SWITCH) % 2 == 1)
    for position, offset in positions(joined):
        assert [feed.offset_of(position) for feed in feeds] == [offset] * 3
    for offset in range(len(joined) + 1):
        before, thought, _ = split(joined[:offset])
        in_reasoning = joined[:offset].count(SWITCH) % 2 == 1
        expected = (len(before), len(thought), in_reasoning)
        assert [feed.lengths_at(offset) for feed in feeds] == [expected] * 3


@examples(200)
@given(pieces=PIECES, frame_chars=st.integers(min_value=1, max_value=8))
def test_a_viewer_resuming_anywhere_gets_exactly_the_rest_of_both_texts(
    pieces, frame_chars
):
    joined = "".join(appended(pieces))
    answer, reasoning = texts_of(pieces)
    feed = Feed(1, joined, Ending("completed"))

    for position, offset in positions(joined):
        seen_answer, seen_reasoning, _ = split(joined[:offset])
        frames = walk(feed, position, frame_chars)

        rest_answer = "".join(text for kind, text, _ in frames if kind == ANSWER)
        rest_reasoning = "".join(text for kind, text, _ in frames if kind == REASONING)
        assert seen_answer + rest_answer == answer
        assert seen_reasoning + rest_reasoning == reasoning
        # In their order: the frames rebuild the rest of the joined text.
        kind = REASONING if joined[:offset].count(SWITCH) % 2 else ANSWER
        rebuilt = ""
        for frame_kind, text, _ in frames:
            rebuilt += text if frame_kind == kind else SWITCH + text
            kind = frame_kind
        assert rebuilt == joined[offset:]
        # Each frame's id is where it ends in its own text, counting on from the
        # client's position.
        ends = {ANSWER: len(seen_answer), REASONING: len(seen_reasoning)}
        for frame_kind, text, end in frames:
            ends[frame_kind] += len(text)
            assert end == ends[frame_kind]
        assert all(text for _, text, _ in frames)


@examples(200)
@given(
    deltas=st.lists(
        st.tuples(st.sampled_from([ANSWER, REASONING]), st.text(max_size=6)),
        max_size=10,
    )
)
def test_normalised_deltas_never_hold_the_switch(deltas):
    """The relay's SWITCH marks a change of text only: a provider's U+0000, in the
    answer or the reasoning, becomes U+FFFD."""
    normalisers = {ANSWER: Normaliser(), REASONING: Normaliser()}

    for kind, text in deltas:
        normalised = normalisers[kind](text)
        assert SWITCH not in normalised
        assert normalised.count("\ufffd") >= text.count(SWITCH)


def test_a_lone_surrogate_becomes_one_replacement_character():
    normalise = Normaliser()

    assert normalise("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert normalise("😀 é") == "😀 é"
    assert normalise("ok").encode("utf-8") == b"ok"
