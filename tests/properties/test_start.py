"""Properties of starting streams: GET /chat/stream?prompt= and POST /streams/.

The inputs and the outcomes the README promises for them are in support.py.
"""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streaming.models import StreamLog
from tests.helpers import token_text
from tests.properties.support import (
    MODELS,
    PROMPTS,
    PROVIDERS,
    check_api,
    check_stream,
    chosen,
    examples,
    fetch,
    json_seen,
    query,
    seen_in_query,
    snapshot,
    start_bodies,
    start_outcome,
    wrong_json_fields,
)

pytestmark = pytest.mark.django_db(transaction=True)


@examples(90)
@given(
    caller=st.sampled_from(["alice token", "alice session", "charlie token"]),
    prompt=st.none() | PROMPTS,
    provider=st.none() | PROVIDERS,
    model=st.none() | MODELS,
)
def test_get_chat_stream_starts_or_refuses(
    world, callers, secrets, caller, prompt, provider, model
):
    client, headers, user_name = callers[caller]
    user = world.users[user_name]
    path = "/chat/stream?" + query(prompt=prompt, provider=provider, model=model)
    before = snapshot()

    answer = fetch(client, "GET", path, headers=headers)

    check_api(answer, secrets)
    fields = {
        "prompt": seen_in_query(prompt) if prompt is not None else None,
        "provider": seen_in_query(provider) if provider is not None else None,
        "model": seen_in_query(model) if model is not None else None,
    }
    expected = start_outcome(fields)
    if expected != 201:
        assert answer.status == expected, answer
        code = "too_large" if expected == 413 else "bad_request"
        assert answer.json()["error"] == code
        assert snapshot() == before
        return
    assert answer.status == 200, answer
    new = StreamLog.objects.exclude(pk__in=[row[0] for row in before[0]]).get()
    assert (new.user_id, new.prompt) == (user.pk, fields["prompt"])
    assert (new.provider, new.model) == chosen(fields)
    assert new.is_finished  # the generation ended with the request
    events = check_stream(answer, stream_id=new.pk, id_prefix=f"{new.pk}:")
    assert answer.complete
    assert token_text(events) == new.response
    # The demo answers; the other providers are unreachable here: a retryable error.
    if new.provider == "demo":
        assert events[-1].event == "done" and new.status == "completed"
    else:
        assert json.loads(events[-1].data)["code"] == "unavailable"


@examples(150)
@given(
    caller=st.sampled_from(["alice token", "alice session", "alice checked"]),
    request_body=start_bodies(),
)
def test_post_streams_starts_or_refuses(world, callers, secrets, caller, request_body):
    client, headers, _ = callers[caller]
    alice = world.users["alice"]
    body, content_type, seen = request_body
    value = None
    if seen is None and content_type.startswith("application/json"):
        # Resolve the symbolic conversation ids, then judge the body as the view will.
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict) and value.get("conversation") in ("own", "bob's"):
            own = value["conversation"] == "own"
            value["conversation"] = (world.alice_chat if own else world.bob_chat).pk
            body = json.dumps(value).encode()
        elif not (isinstance(value, dict) and "conversation" in value):
            seen = json_seen(body)
    before = snapshot()

    answer = fetch(client, "POST", "/streams/", body, content_type, headers=headers)

    check_api(answer, secrets)
    if isinstance(value, dict) and (wrong := wrong_json_fields(value)):
        # Checked before anything else: every field of the wrong type is named.
        assert answer.status == 400, answer
        assert set(answer.json()["fields"]) == wrong, answer
    if answer.status != 201:
        assert answer.status in (400, 404, 413), answer
        assert snapshot() == before
    if isinstance(seen, int):
        assert answer.status == seen, answer
    elif isinstance(seen, dict):
        expected = start_outcome(seen)
        assert answer.status == expected, (seen, answer)
        if expected == 201:
            new = StreamLog.objects.get(pk=answer.json()["id"])
            assert (new.user_id, new.prompt) == (alice.pk, seen["prompt"])
            assert (new.provider, new.model) == chosen(seen)
    if answer.status == 201:
        started = answer.json()
        new = StreamLog.objects.get(pk=started["id"])
        assert new.user_id == alice.pk and new.is_finished
        assert started["events_url"] == f"/streams/{new.pk}/events"
        assert started["stop_url"] == f"/streams/{new.pk}/stop"
        assert new.conversation_id == started["conversation_id"]
        # Rows other than the new stream's own stay as they were.
        old = {row[0]: row for row in before[0]}
        now = {row[0]: row for row in snapshot()[0]}
        assert {pk: now[pk] for pk in old} == old
