"""WHATWG event-stream parsing checks for loadgen.SSEParser (run: python -m pytest bench/tests)."""

import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from loadgen import SSEParser  # noqa: E402


def parse(chunks):
    p = SSEParser()
    out = []
    for c in chunks:
        out += p.feed(c)
    return [(e, d) for e, d, _ in out], p


def test_basic_and_default_event():
    ev, _ = parse([b"data: hi\n\nevent: token\ndata: x\n\n"])
    assert ev == [("message", "hi"), ("token", "x")]


def test_line_endings_crlf_cr_lf_and_split_across_chunks():
    raw = b"event: token\r\ndata: a\r\ndata: b\r\r" + b"data:c\n\n"
    for cut in range(1, len(raw)):
        ev, _ = parse([raw[:cut], raw[cut:]])
        assert ev == [("token", "a\nb"), ("message", "c")], cut


def test_cr_at_chunk_end_followed_by_lf_is_one_terminator():
    ev, _ = parse([b"data: a\r", b"\n\r", b"\n"])
    assert ev == [("message", "a")]


def test_single_leading_space_removed_only_once_and_colon_in_value():
    ev, _ = parse([b"data:  two\ndata:no space\ndata: a: b\n\n"])
    assert ev == [("message", " two\nno space\na: b")]


def test_comments_field_without_colon_and_unknown_fields():
    ev, p = parse([b": ping\nfoo: bar\ndata\n\n"])
    assert ev == [("message", "")]
    assert p.comments == 1


def test_event_without_data_is_not_dispatched_and_type_resets():
    ev, _ = parse([b"event: token\n\ndata: x\n\n"])
    assert ev == [("message", "x")]


def test_bom_stripped_once_even_when_split():
    ev, _ = parse([b"\xef\xbb", b"\xbfdata: x\n\n"])
    assert ev == [("message", "x")]


def test_id_with_nul_ignored_and_retry_digits_only():
    p = SSEParser()
    out = p.feed(b"id: 1\ndata: a\n\nid: 2\x003\nretry: 5x\ndata: b\n\nretry: 700\n\n")
    assert [i for _, _, i in out] == ["1", "1"]
    assert p.retry == 700


def test_multibyte_utf8_split_anywhere():
    text = "h\u00e9 \u65e5\u672c \U0001f389"
    raw = ("event: token\ndata: " + text + "\n\n").encode()
    for cut in range(1, len(raw)):
        ev, _ = parse([raw[:cut], raw[cut:]])
        assert ev == [("token", text)]


def test_random_chunking_matches_whole():
    raw = b"".join(
        b"event: token\r\ndata: %d\r\ndata: x\r\n\r\n" % i for i in range(200)
    )
    whole, _ = parse([raw])
    rng = random.Random(3)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(raw)), 30))
        chunks = [raw[i:j] for i, j in zip([0] + cuts, cuts + [len(raw)])]
        assert parse(chunks)[0] == whole
