"""Properties of stopping streams: POST /streams/<id>/stop.

The inputs and the outcomes the README promises for them are in support.py.
"""

import pytest
from django.utils.http import parse_header_parameters
from hypothesis import given
from hypothesis import strategies as st

from streaming.models import StreamLog
from tests.properties.support import (
    CONTENT_TYPES,
    NUMBERS,
    ROUTED_ID,
    STREAM_REFS,
    check_api,
    examples,
    fetch,
    snapshot,
    stream_pk,
    visible,
    weighted,
)

pytestmark = pytest.mark.django_db(transaction=True)


@examples(80)
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
    body=st.binary(max_size=40),
    content_type=CONTENT_TYPES,
)
def test_stop_answers_and_never_changes_a_row_it_may_not(
    world, callers, secrets, caller, target, body, content_type
):
    client, headers, user_name = callers[caller]
    user = world.users[user_name]
    pk = int(target) if target.lstrip("-").isdigit() else stream_pk(world, target)
    routed = ROUTED_ID.match(str(pk)) is not None
    before = snapshot()

    answer = fetch(
        client, "POST", f"/streams/{pk}/stop", body, content_type, headers=headers
    )

    check_api(answer, secrets)
    # No stream runs in this process: stopping one elsewhere only sends a message.
    assert snapshot() == before
    if answer.status == 400:
        # A form body nobody can read is refused before anything else looks at it.
        media, _ = parse_header_parameters(content_type)
        assert media in ("multipart/form-data", "application/x-www-form-urlencoded")
        assert answer.json()["error"] == "bad_request"
        return
    log = StreamLog.objects.filter(pk=pk).first() if routed else None
    if not visible(log, user, may="stop"):
        assert answer.status == 404
    elif log.is_finished:
        assert (answer.status, answer.json()) == (200, {"id": pk, "status": log.status})
    else:
        assert (answer.status, answer.json()) == (202, {"id": pk, "status": "stopping"})
