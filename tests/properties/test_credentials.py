"""Properties of credentials, origins and methods on every endpoint.

The inputs and the outcomes the README promises for them are in support.py.
"""

from datetime import UTC, datetime

import pytest
from django.conf import settings as django_settings
from django.test import AsyncClient
from hypothesis import given
from hypothesis import strategies as st

from streaming.models import ApiToken
from tests.properties.support import (
    AUTHORIZATIONS,
    HEADER_TEXT,
    HOST,
    METHODS,
    ORIGINS,
    bearer,
    check_api,
    examples,
    fetch,
    is_same_origin,
    snapshot,
    visible,
    weighted,
)

pytestmark = pytest.mark.django_db(transaction=True)


@examples(200)
@given(
    endpoint=st.sampled_from(["chat", "start", "events", "stop"]),
    method=st.sampled_from(["the allowed one"] * 8 + METHODS),
    session=st.booleans(),
    authorization=AUTHORIZATIONS,
    site=weighted(
        (2, st.none()),
        (1, st.sampled_from(["same-origin", "same-site", "cross-site", "none"])),
        (1, HEADER_TEXT),
    ),
    origin=weighted((3, st.none()), (1, ORIGINS)),
    referer=weighted((3, st.none()), (1, ORIGINS)),
    csrf=weighted((3, st.just("good")), (1, st.just("none")), (1, HEADER_TEXT)),
)
def test_credentials_origins_and_methods(
    world,
    callers,
    secrets,
    endpoint,
    method,
    session,
    authorization,
    site,
    origin,
    referer,
    csrf,
):
    """Any mix of session, token, Sec-Fetch-Site, Origin, Referer, CSRF token and
    method gets 405, 401, 403 or the endpoint's answer, as the README says; none of
    these requests may change a row (none can start a stream)."""
    alice, log = world.users["alice"], world.logs["alice done"]
    # Both with Django's CSRF check enforced and a CSRF cookie.
    client = callers["alice checked" if session else "nobody checked"][0]
    cookie = client.cookies[django_settings.CSRF_COOKIE_NAME].value
    headers = {}
    if isinstance(authorization, tuple):
        scheme, token, space = authorization
        token = token[1] if isinstance(token, tuple) else world.tokens[token]
        authorization = f"{scheme} {space}{token}{space}"
    for name, value in [
        ("Authorization", authorization),
        ("Sec-Fetch-Site", site),
        ("Origin", origin),
        ("Referer", referer),
    ]:
        if value is not None:
            headers[name] = value
    if csrf != "none":
        headers["X-CSRFToken"] = cookie if csrf == "good" else csrf
    path, allowed, body = {
        "chat": ("/chat/stream?prompt=hi&provider=nope", "GET", b""),
        "start": ("/streams/", "POST", b'{"prompt": "hi", "provider": "nope"}'),
        "events": (f"/streams/{log.pk}/events", "GET", b""),
        "stop": (f"/streams/{log.pk}/stop", "POST", b""),
    }[endpoint]
    method = allowed if method == "the allowed one" else method
    before = snapshot()

    answer = fetch(client, method, path, body, "application/json", headers=headers)

    check_api(answer, secrets)
    assert snapshot() == before
    if method != allowed:
        assert answer.status == 405 and answer.headers["Allow"] == allowed
        return
    scheme, _, raw = (authorization or "").partition(" ")
    if scheme.lower() == "bearer":
        token = ApiToken.objects.filter(
            key_hash=ApiToken.hash(raw.strip()), revoked_at__isnull=True
        ).first()
        if token is None:
            assert (answer.status, answer.json()["error"]) == (401, "unauthorized")
            return
        user = token.user
    elif not session:
        assert (answer.status, answer.json()["error"]) == (401, "unauthorized")
        return
    else:
        user = alice
        if method == "GET" and endpoint == "chat" and not is_same_origin(headers):
            assert (answer.status, answer.json()["error"]) == (403, "cross_site")
            return
        origin_ok = origin is None or origin == HOST
        if method == "POST" and not (
            origin_ok and headers.get("X-CSRFToken") == cookie
        ):
            assert (answer.status, answer.json()["error"]) == (403, "csrf")
            return
    expected = {
        "chat": 400,
        "start": 400,
        "events": 200 if visible(log, user) else 404,
        "stop": 200 if visible(log, user) else 404,
    }[endpoint]
    assert answer.status == expected, answer


@examples(100)
@given(
    site=st.none() | st.sampled_from(["same-origin", "cross-site"]) | HEADER_TEXT,
    origin=st.none() | ORIGINS,
    referer=st.none() | ORIGINS,
)
def test_a_session_starts_streams_by_get_only_from_our_own_pages(
    callers, secrets, site, origin, referer
):
    """Sec-Fetch-Site decides when present, else Origin, else Referer; whatever they
    hold (a URL that does not parse included), the answer is 403 cross_site, or the
    request goes on (here to a 400: no such provider)."""
    client = callers["alice session"][0]
    headers = {
        name: value
        for name, value in [
            ("Sec-Fetch-Site", site),
            ("Origin", origin),
            ("Referer", referer),
        ]
        if value is not None
    }
    before = snapshot()

    answer = fetch(
        client, "GET", "/chat/stream?prompt=hi&provider=nope", headers=headers
    )

    check_api(answer, secrets)
    assert snapshot() == before
    expected = (400, "bad_request") if is_same_origin(headers) else (403, "cross_site")
    assert (answer.status, answer.json()["error"]) == expected


@examples(15)
@given(
    revoked_at=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.just(UTC),
    )
)
def test_a_revoked_token_is_refused_at_once(world, secrets, revoked_at):
    """Revoked at any time, past or future: the next request with the token is 401,
    on every endpoint, for a stream it read a moment before too."""
    token = ApiToken.objects.get(key_hash=ApiToken.hash(world.tokens["alice"]))
    token.revoked_at = None
    token.save()
    client, headers = AsyncClient(), bearer(world.tokens["alice"])
    log = world.logs["alice done"]
    events = f"/streams/{log.pk}/events"
    assert fetch(client, "GET", events, headers=headers).status == 200

    token.revoked_at = revoked_at
    token.save()
    before = snapshot()
    answers = [
        fetch(client, "GET", events, headers=headers),
        fetch(client, "GET", events, headers={**headers, "Last-Event-ID": "3"}),
        fetch(client, "GET", "/chat/stream?prompt=hello", headers=headers),
        fetch(
            client,
            "GET",
            "/chat/stream",
            headers={**headers, "Last-Event-ID": f"{log.pk}:0"},
        ),
        fetch(
            client,
            "POST",
            "/streams/",
            b'{"prompt": "hello"}',
            "application/json",
            headers=headers,
        ),
        fetch(client, "POST", f"/streams/{log.pk}/stop", headers=headers),
    ]

    for answer in answers:
        check_api(answer, secrets)
        assert (answer.status, answer.json()["error"]) == (401, "unauthorized")
    assert snapshot() == before
