"""Properties of following streams: resumes by Last-Event-ID on both endpoints.

The inputs and the outcomes the README promises for them are in support.py.
"""

import json

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streaming.models import StreamLog
from tests.helpers import token_text
from tests.properties.support import (
    HEADER_OFFSETS,
    NUMBER,
    NUMBERS,
    PROMPTS,
    QUERY_OFFSETS,
    RESUMES,
    ROUTED_ID,
    STREAM_REFS,
    check_api,
    check_stream,
    examples,
    fetch,
    query,
    replay_outcome,
    seen_in_query,
    snapshot,
    stream_pk,
    visible,
    weighted,
)

pytestmark = pytest.mark.django_db(transaction=True)


@examples(90)
@given(
    caller=st.sampled_from(
        [
            "alice token",
            "bob token",
            "charlie token",
            "dave token",
            "erin token",
            "alice session",
        ]
    ),
    resume=RESUMES,
    resume_in=st.sampled_from(["header", "query", "both"]),
    other=st.none() | RESUMES,
    prompt=st.none() | PROMPTS,
)
def test_get_chat_stream_resumes_or_refuses_and_never_starts_a_second_stream(
    world, callers, secrets, caller, resume, resume_in, other, prompt
):
    """A Last-Event-ID (`<stream id>:<offset>`, in the header or ?last_event_id=)
    resumes that stream or is refused; it never starts one, whatever the prompt."""
    client, headers, user_name = callers[caller]
    user = world.users[user_name]
    resume, other = (
        f"{stream_pk(world, v[0])}:{v[1]}" if isinstance(v, tuple) else v
        for v in (resume, other)
    )
    headers = dict(headers)
    in_query = None
    if resume_in == "header":
        headers["Last-Event-ID"] = resume
    elif resume_in == "query":
        in_query = resume
    else:  # the header wins when it is not empty
        headers["Last-Event-ID"], in_query = resume, other
    path = "/chat/stream?" + query(prompt=prompt, last_event_id=in_query)
    # A header counts when it is not empty; a query parameter, even when it is.
    last_event_id = headers.get("Last-Event-ID") or (
        seen_in_query(in_query) if in_query is not None else None
    )
    hypothesis.assume(last_event_id is not None)  # else a start: the test above
    live = world.logs["alice live"]
    following_live = last_event_id.startswith(f"{live.pk}:")
    before = snapshot()

    answer = fetch(
        client, "GET", path, headers=headers, read_seconds=0.2 if following_live else 5
    )

    check_api(answer, secrets)
    assert snapshot() == before
    stream, _, offset = last_event_id.partition(":")
    if not NUMBER.match(stream):
        assert (answer.status, answer.json()["error"]) == (400, "bad_last_event_id")
        return
    log = StreamLog.objects.filter(pk=int(stream)).first()
    if not visible(log, user):
        assert (answer.status, answer.json()["error"]) == (404, "not_found")
        return
    expected = replay_outcome(log, offset)
    assert answer.status == expected, answer
    if expected == 400:
        assert answer.json()["error"] == "bad_last_event_id"
    elif expected == 200:
        events = check_stream(answer, stream_id=log.pk, id_prefix=f"{log.pk}:")
        if answer.complete:
            assert token_text(events) == log.response[int(offset) :]


@examples(120)
@given(
    caller=st.sampled_from(
        [
            "alice token",
            "bob token",
            "charlie token",
            "dave token",
            "erin token",
            "alice session",
            "alice checked",
        ]
    ),
    target=weighted((3, STREAM_REFS), (1, NUMBERS)),
    in_header=st.none() | HEADER_OFFSETS,
    in_query=st.none() | QUERY_OFFSETS,
)
def test_stream_events_replay_or_refuse(
    world, callers, secrets, caller, target, in_header, in_query
):
    client, headers, user_name = callers[caller]
    user = world.users[user_name]
    pk = int(target) if target.lstrip("-").isdigit() else stream_pk(world, target)
    headers = dict(headers)
    if in_header is not None:
        headers["Last-Event-ID"] = in_header
    path = f"/streams/{pk}/events"
    if in_query is not None:
        path += "?" + query(last_event_id=in_query)
    routed = ROUTED_ID.match(str(pk)) is not None
    live = pk == world.logs["alice live"].pk
    before = snapshot()

    answer = fetch(
        client, "GET", path, headers=headers, read_seconds=0.2 if live else 5
    )

    check_api(answer, secrets)
    assert snapshot() == before
    if not routed:
        assert answer.status == 404
        return
    log = StreamLog.objects.filter(pk=pk).first()
    if not visible(log, user):
        assert (answer.status, answer.json()["error"]) == (404, "not_found")
        return
    offset = in_header or (seen_in_query(in_query) if in_query is not None else None)
    expected = replay_outcome(log, offset)
    assert answer.status == expected, answer
    if expected == 400:
        assert answer.json()["error"] == "bad_last_event_id"
    elif expected == 204:
        assert answer.body == ""
    else:
        events = check_stream(answer, stream_id=log.pk)
        if answer.complete:
            assert token_text(events) == log.response[int(offset or 0) :]
            last = events[-1]
            if log.status == StreamLog.Status.COMPLETED:
                assert last.event == "done"
            else:
                assert json.loads(last.data)["code"] == log.error_code
        else:
            assert not log.is_finished
