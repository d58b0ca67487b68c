"""Reading a provider's SSE body (`providers.wire`): whatever the line endings, and
wherever the body is cut into reads, the events are those the SSE spec's parser finds
in the whole body; each event's data is one JSON object or a bad upstream."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streaming.providers.base import BadUpstream
from streaming.providers.wire import Events, json_object
from tests.properties.support import examples

# Text that may hold U+2028, U+0085 and the like (no line ends for SSE), but no CR/LF.
VALUES = st.text(st.characters(blacklist_characters="\r\n"), max_size=8)
LINE = st.one_of(
    st.builds(lambda v: f"data: {v}", VALUES),
    st.builds(lambda v: f"data:{v}", VALUES),
    st.builds(lambda v: f"event: {v}", VALUES),
    st.builds(lambda v: f": {v}", VALUES),  # a comment
    st.builds(lambda v: f"id: {v}", VALUES),
    st.just(""),
)
# Mostly what providers send (one data line, LF), often anything else.
EVENT = st.one_of(
    st.builds(lambda v: [f"data: {v}", ""], VALUES),
    st.lists(LINE, max_size=4).map(lambda lines: [*lines, ""]),
)
BODY = st.tuples(
    st.lists(EVENT, max_size=8).map(lambda events: [x for e in events for x in e]),
    st.lists(st.sampled_from(["\n", "\n", "\r\n", "\r"]), min_size=1, max_size=8),
)


def spec_events(body: str) -> list[tuple[str, str]]:
    """The SSE spec's event stream interpretation (the fields we read) of everything
    that has arrived, but for a CR at its very end: it may be half of a CRLF."""
    events, event, data = [], "", []
    *lines, _cut_off = re.split(r"\r\n|\r|\n", body.removesuffix("\r"))
    for line in lines:
        if not line:
            if data:
                events.append((event, "\n".join(data)))
            event, data = "", []
        elif line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
        elif line.startswith("event:"):
            event = line[6:].strip()
    return events


def body_of(lines: list[str], endings: list[str]) -> str:
    return "".join(line + endings[i % len(endings)] for i, line in enumerate(lines))


@examples(300)
@given(BODY, st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_any_cut_into_reads_gives_the_events_of_the_whole_body(body, cuts):
    text = body_of(*body)
    parser, events, start = Events(), [], 0
    for cut in sorted(cuts):
        events += parser.feed(text[start:cut])
        start = max(start, cut)
    events += parser.feed(text[start:])

    assert events == spec_events(text)


def test_a_crlf_cut_between_its_cr_and_its_lf_is_one_line_end():
    parser = Events()

    assert parser.feed("data: a\r") == []
    assert parser.feed("\n\r\n") == [("", "a")]


@pytest.mark.parametrize("data", ['{"a": 1}', '{"a": 1}\r\n \t', ' {"a": 1}'])
def test_an_object_with_json_whitespace_around_it_is_read(data):
    assert json_object(data) == {"a": 1}


@pytest.mark.parametrize(
    "data", ['{"a": 1} x', '{"a": 1}{}', '{"a": 1}\u00a0', "[1]", "NaN", "", "{"]
)
def test_anything_but_one_json_object_is_a_bad_upstream(data):
    with pytest.raises(BadUpstream):
        json_object(data)
