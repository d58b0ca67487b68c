"""Properties of ids in URLs, and of bodies Django itself cannot read.

The inputs and the outcomes the README promises for them are in support.py.
"""

from urllib.parse import quote

import hypothesis
import pytest
from django.conf import settings as django_settings
from django.test import AsyncClient
from hypothesis import given
from hypothesis import strategies as st

from streaming.models import StreamLog
from tests.properties.support import (
    ROUTED_ID,
    SEGMENTS,
    check,
    check_api,
    examples,
    fetch,
    snapshot,
)

pytestmark = pytest.mark.django_db(transaction=True)


@examples(100)
@given(
    endpoint=st.sampled_from(["events", "stop", "page", "rename", "delete"]),
    segment=SEGMENTS,
)
def test_ids_in_urls_route_or_404(world, callers, secrets, client, endpoint, segment):
    """Anything in an id's place: a number the converter takes is looked up (and is
    someone else's or missing: 404), anything else is not routed (404; on the API's
    URLs our JSON 404 too)."""
    alice = world.users["alice"]
    own = {world.alice_chat.pk} | set(
        StreamLog.objects.filter(user=alice).values_list("pk", flat=True)
    )
    hypothesis.assume(not (ROUTED_ID.match(segment) and int(segment) in own))
    api, headers, _ = callers["alice token"]
    client.force_login(alice)
    quoted = quote(segment.encode("utf-8", "surrogatepass"), safe="")
    method, path = {
        "events": ("GET", f"/streams/{quoted}/events"),
        "stop": ("POST", f"/streams/{quoted}/stop"),
        "page": ("GET", f"/c/{quoted}/"),
        "rename": ("POST", f"/c/{quoted}/rename"),
        "delete": ("POST", f"/c/{quoted}/delete"),
    }[endpoint]
    before = snapshot()

    if endpoint in ("events", "stop"):
        answer = fetch(api, method, path, headers=headers)
        check_api(answer, secrets)
    else:
        answer = fetch(
            client, method, path, b"title=New", "application/x-www-form-urlencoded"
        )
        check(answer, secrets)

    assert answer.status == 404, answer
    assert snapshot() == before


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        # Django's 404 handler runs the CSRF check, which reads the body.
        ("/no-such-page", "multipart/form-data"),
        # CsrfViewMiddleware reads the body, which names a codec that is no charset.
        ("/accounts/login/", "multipart/form-data; boundary=x; charset=rot13"),
    ],
)
def test_a_form_body_django_cannot_read_is_a_400_everywhere(path, content_type):
    """Found by the properties above: a POST with a CSRF cookie (any visitor has one)
    and a form body Django cannot parse got a 500 from Django's own CSRF check, on
    every page and on unknown URLs. streaming.server.middleware.unreadable_body answers 400."""
    client = AsyncClient(enforce_csrf_checks=True, raise_request_exception=False)
    client.cookies[django_settings.CSRF_COOKIE_NAME] = "c" * 32
    body = b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n--x--\r\n'

    answer = fetch(client, "POST", path, body, content_type)

    assert answer.status == 400
