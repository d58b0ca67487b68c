"""The stream endpoints: over a real daphne where frames, disconnects, resumes and
stops matter, and through Django's test client for requests that are turned away."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from streaming.models import ApiToken, StreamLog
from tests.helpers import (
    USER_AGENT,
    expected_answer,
    fake,
    finished_log,
    new_key,
    offsets,
    parse_sse,
    read_events,
    stream_id,
    token_text,
    tokens_at_least,
)

SLOW = {"pattern": "counter", "tokens": 60, "delay_ms": 20}  # about 1.2 s
ENDLESS = {"pattern": "counter", "tokens": 1000, "delay_ms": 20}  # 20 s


async def _post_stream(relay, token: str, prompt: str, **fields: str) -> int:
    async with relay.client(token) as client:
        response = await client.post("/streams/", json={"prompt": prompt, **fields})
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def _delivered(relay, token: str, options: dict) -> tuple[int, str]:
    """A stream that has finished and was read to the end: (id, answer)."""
    stream = await _post_stream(relay, token, "Go " + fake(**options))
    async with relay.client(token) as client:
        received = await read_events(client, f"/streams/{stream}/events")
    assert received.events[-1].event == "done", received.events[-3:]
    await finished_log(stream)
    return stream, token_text(received.events)


# --------------------------------------------------------------------------- daphne


@pytest.mark.timeout(30)
async def test_it_keeps_the_seed_contract_on_chat_stream(
    relay, alice, alice_token, upstream
):
    key = new_key()
    prompt = "hello " + fake(tokens=5, key=key)

    async with relay.client(alice_token) as client:
        received = await read_events(client, "/chat/stream", params={"prompt": prompt})

    assert received.status == 200
    assert received.retry == 2000
    stream = stream_id(received)
    meta = {"stream_id": stream, "provider": "openai", "model": "gpt-4o-mini"}
    assert json.loads(received.events[0].data) == meta
    kinds = [e.event for e in received.events]
    assert kinds == ["meta"] + ["token"] * (len(kinds) - 3) + ["usage", "done"]
    assert received.events[-1].data == "[DONE]"
    answer = expected_answer(tokens=5)
    assert token_text(received.events) == answer
    ids = [e.id for e in received.events if e.event == "token"]
    assert ids[-1] == f"{stream}:{len(answer)}"
    assert all(i.startswith(f"{stream}:") for i in ids)

    log = await finished_log(stream)
    assert log.user_id == alice.pk
    assert (log.provider, log.model, log.prompt) == ("openai", "gpt-4o-mini", prompt)
    assert (log.status, log.response, log.error_code) == ("completed", answer, "")
    assert log.client_addr == "127.0.0.1"
    assert log.user_agent == USER_AGENT
    assert log.finished_at is not None
    assert (await upstream["openai"].outcome(key))["outcome"] == "completed"
    token = await ApiToken.objects.aget(user=alice)
    assert token.last_used_at is not None


@pytest.mark.timeout(30)
async def test_the_demo_provider_answers_without_a_key(relay, alice, alice_token):
    async with relay.client(alice_token) as client:
        params = {"prompt": "What is   SSE?", "provider": "demo"}
        received = await read_events(client, "/chat/stream", params=params)

    assert received.status == 200
    meta = json.loads(received.events[0].data)
    assert (meta["provider"], meta["model"]) == ("demo", "demo")
    answer = token_text(received.events)
    assert "offline demo provider" in answer
    assert "> What is SSE?" in answer
    assert received.events[-1].event == "done"
    log = await finished_log(stream_id(received))
    assert (log.status, log.response) == ("completed", answer)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("encoding", ["json", "form"])
async def test_it_starts_a_stream_with_a_post_and_serves_its_events(
    relay, alice, alice_token, encoding
):
    fields = {"prompt": "Hi " + fake(tokens=12), "provider": "anthropic"}

    async with relay.client(alice_token) as client:
        if encoding == "json":
            started = await client.post("/streams/", json=fields)
        else:
            started = await client.post("/streams/", data=fields)
        assert started.status_code == 201, started.text
        body = started.json()
        received = await read_events(client, body["events_url"])

    stream = body["id"]
    assert body["events_url"] == f"/streams/{stream}/events"
    assert body["stop_url"] == f"/streams/{stream}/stop"
    assert received.status == 200
    assert json.loads(received.events[0].data)["stream_id"] == stream
    answer = expected_answer(tokens=12)
    assert token_text(received.events) == answer
    # On /streams/<id>/events the ids are plain offsets.
    assert [e.id for e in received.events if e.event == "token"][-1] == str(len(answer))
    assert [e.event for e in received.events[-2:]] == ["usage", "done"]
    log = await finished_log(stream)
    assert (log.user_id, log.provider, log.prompt) == (
        alice.pk,
        "anthropic",
        fields["prompt"],
    )
    assert (log.status, log.response) == ("completed", answer)


@pytest.mark.timeout(60)
async def test_it_resumes_a_finished_stream_from_every_offset(
    relay, alice, alice_token
):
    stream, answer = await _delivered(
        relay, alice_token, {"pattern": "tricky", "tokens": 34}
    )
    assert answer == expected_answer(pattern="tricky", tokens=34)
    limit = asyncio.Semaphore(8)

    async def resume(client, offset: int):
        async with limit:
            if offset % 2:
                kwargs = {"params": {"last_event_id": str(offset)}}
            else:
                kwargs = {"headers": {"Last-Event-ID": str(offset)}}
            return await read_events(client, f"/streams/{stream}/events", **kwargs)

    async with relay.client(alice_token) as client:
        resumed = await asyncio.gather(
            *(resume(client, offset) for offset in range(len(answer) + 1))
        )

    for offset, received in enumerate(resumed[:-1]):
        assert received.status == 200, offset
        assert [e.event for e in received.events] == ["meta", "token", "usage", "done"]
        assert received.events[1] == ("token", answer[offset:], str(len(answer)))
    # Everything was delivered: 204 tells EventSource to stop reconnecting.
    assert (resumed[-1].status, resumed[-1].body) == (204, "")
    assert await StreamLog.objects.acount() == 1


@pytest.mark.timeout(30)
async def test_it_resumes_a_live_stream_from_each_delivered_offset(
    relay, alice, alice_token, upstream
):
    key = new_key()
    stream = await _post_stream(relay, alice_token, "Go " + fake(**SLOW, key=key))

    async with relay.client(alice_token) as client:
        first = await read_events(
            client, f"/streams/{stream}/events", until=tokens_at_least(4)
        )
        delivered = [0, *offsets(first.events)]
        resumed = await asyncio.gather(
            *(
                read_events(
                    client,
                    f"/streams/{stream}/events",
                    headers={"Last-Event-ID": str(offset)},
                )
                for offset in delivered
            )
        )

    answer = expected_answer(**SLOW)
    for offset, received in zip(delivered, resumed, strict=True):
        assert token_text(received.events) == answer[offset:], offset
        assert received.events[-1].event == "done"
    log = await finished_log(stream)
    assert (log.status, log.response) == ("completed", answer)
    # One generation, however many viewers.
    assert len(upstream["openai"].streams(key)) == 1


@pytest.mark.timeout(30)
async def test_a_last_event_id_on_chat_stream_resumes_without_a_second_stream(
    relay, alice, alice_token, upstream
):
    key = new_key()
    params = {"prompt": "Go " + fake(**SLOW, key=key)}

    async with relay.client(alice_token) as client:
        first = await read_events(
            client, "/chat/stream", params=params, until=tokens_at_least(3)
        )
        last_id = first.events[-1].id
        rest = await read_events(
            client, "/chat/stream", params=params, headers={"Last-Event-ID": last_id}
        )

    stream = stream_id(first)
    assert last_id == f"{stream}:{offsets(first.events)[-1]}"
    assert stream_id(rest) == stream
    answer = expected_answer(**SLOW)
    assert token_text(first.events) + token_text(rest.events) == answer
    assert all(e.id.startswith(f"{stream}:") for e in rest.events if e.event == "token")
    assert rest.events[-1].event == "done"
    log = await finished_log(stream)
    assert (log.status, log.response) == ("completed", answer)
    assert await StreamLog.objects.acount() == 1
    assert (await upstream["openai"].outcome(key))["outcome"] == "completed"


@pytest.mark.timeout(30)
async def test_a_viewer_hanging_up_only_detaches(relay, alice, alice_token, upstream):
    key = new_key()
    stream = await _post_stream(relay, alice_token, "Go " + fake(**SLOW, key=key))

    async with relay.client(alice_token) as client:
        first = await read_events(
            client, f"/streams/{stream}/events", until=tokens_at_least(2)
        )
    # Reconnect on a new connection, as a browser would after a drop.
    async with relay.client(alice_token) as client:
        offset = offsets(first.events)[-1]
        params = {"last_event_id": str(offset)}
        rest = await read_events(client, f"/streams/{stream}/events", params=params)

    answer = expected_answer(**SLOW)
    assert token_text(first.events) == answer[:offset]
    assert token_text(rest.events) == answer[offset:]
    log = await finished_log(stream)
    assert (log.status, log.response, log.output_tokens) == ("completed", answer, 60)
    outcome = await upstream["openai"].outcome(key)
    assert (outcome["outcome"], outcome["sent"]) == ("completed", 60)


@pytest.mark.timeout(30)
async def test_it_answers_204_once_a_finished_stream_was_fully_delivered(
    relay, alice, alice_token
):
    stream, answer = await _delivered(relay, alice_token, {"tokens": 8})
    end = str(len(answer))

    async with relay.client(alice_token) as client:
        by_header = await client.get(
            f"/streams/{stream}/events", headers={"Last-Event-ID": end}
        )
        by_query = await client.get(
            f"/streams/{stream}/events", params={"last_event_id": end}
        )
        on_chat_stream = await client.get(
            "/chat/stream", headers={"Last-Event-ID": f"{stream}:{end}"}
        )

    for response in (by_header, by_query, on_chat_stream):
        assert response.status_code == 204
        assert response.content == b""
    assert await StreamLog.objects.acount() == 1


@pytest.mark.timeout(30)
async def test_stop_cancels_the_generation_and_keeps_the_partial_answer(
    relay, alice, alice_token, upstream
):
    key = new_key()
    stream = await _post_stream(relay, alice_token, "Go " + fake(**ENDLESS, key=key))
    three_tokens = asyncio.Event()

    def watch(events) -> bool:
        if tokens_at_least(3)(events):
            three_tokens.set()
        return False

    async with relay.client(alice_token) as client:
        viewer = asyncio.create_task(
            read_events(client, f"/streams/{stream}/events", until=watch)
        )
        await asyncio.wait_for(three_tokens.wait(), 10)
        stopped = await client.post(f"/streams/{stream}/stop")
        received = await asyncio.wait_for(viewer, 10)
        stopped_again = await client.post(f"/streams/{stream}/stop")

    assert stopped.status_code == 202
    assert stopped.json() == {"id": stream, "status": "stopping"}
    assert received.events[-1].event == "error"
    error = json.loads(received.events[-1].data)
    assert (error["code"], error["retryable"]) == ("stopped", False)
    log = await finished_log(stream)
    assert (log.status, log.error_code) == ("cancelled", "stopped")
    assert log.error_message == error["message"]
    partial = token_text(received.events)
    assert log.response == partial
    answer = expected_answer(**ENDLESS)
    assert answer.startswith(partial)
    assert 0 < len(partial) < len(answer)
    assert (stopped_again.status_code, stopped_again.json()["status"]) == (
        200,
        "cancelled",
    )
    # Cancelling closed the upstream connection: nobody pays for unread tokens.
    outcome = await upstream["openai"].outcome(key)
    assert outcome["outcome"] == "client_disconnected"
    assert outcome["sent"] < outcome["planned"]


@pytest.mark.timeout(30)
async def test_a_stop_during_a_checkpoint_still_closes_the_upstream_connection(
    start_relay, alice, alice_token, upstream
):
    """Guards closing the provider's stream explicitly: with a checkpoint after every
    token, the cancel lands while the task saves, not while it reads upstream."""
    relay = start_relay(STREAM_CHECKPOINT_SECONDS=0)
    key = new_key()
    options = {"pattern": "counter", "tokens": 20000, "delay_ms": 1}  # saves > reads
    stream = await _post_stream(relay, alice_token, "Go " + fake(**options, key=key))

    async with relay.client(alice_token) as client:
        watched = await read_events(
            client, f"/streams/{stream}/events", until=tokens_at_least(3)
        )
        stopped = await client.post(f"/streams/{stream}/stop")

    assert (watched.status, stopped.status_code) == (200, 202)
    log = await finished_log(stream)
    assert (log.status, log.error_code) == ("cancelled", "stopped")
    outcome = await upstream["openai"].outcome(key, timeout=5)
    assert outcome["outcome"] == "client_disconnected"
    assert outcome["sent"] < outcome["planned"]


@pytest.mark.timeout(30)
async def test_staff_with_the_permissions_may_watch_and_stop_anothers_stream(
    relay, bob, bob_token, charlie, charlie_token
):
    stream = await _post_stream(relay, bob_token, "Go " + fake(**ENDLESS))

    async with relay.client(charlie_token) as client:
        watched = await read_events(
            client, f"/streams/{stream}/events", until=tokens_at_least(1)
        )
        stopped = await client.post(f"/streams/{stream}/stop")

    assert watched.status == 200
    assert stopped.status_code == 202
    log = await finished_log(stream)
    assert (log.user_id, log.status, log.error_code) == (bob.pk, "cancelled", "stopped")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("watched", [True, False])
async def test_a_stream_nobody_watches_is_cancelled_after_the_grace_period(
    relay, alice, alice_token, upstream, watched
):
    key = new_key()
    stream = await _post_stream(relay, alice_token, "Go " + fake(**ENDLESS, key=key))
    if watched:
        async with relay.client(alice_token) as client:
            await read_events(
                client, f"/streams/{stream}/events", until=tokens_at_least(2)
            )

    # STREAM_ORPHAN_GRACE_SECONDS is 1 in the relay's environment.
    log = await finished_log(stream, timeout=15)
    assert (log.status, log.error_code) == ("cancelled", "orphaned")
    answer = expected_answer(**ENDLESS)
    assert answer.startswith(log.response)
    assert len(log.response) < len(answer)
    outcome = await upstream["openai"].outcome(key)
    assert outcome["outcome"] == "client_disconnected"
    # A late viewer gets what was generated and how it ended.
    async with relay.client(alice_token) as client:
        late = await read_events(client, f"/streams/{stream}/events")
    assert token_text(late.events) == log.response
    assert json.loads(late.events[-1].data)["code"] == "orphaned"


@pytest.mark.timeout(30)
async def test_an_idle_stream_gets_heartbeat_comments(start_relay, alice, alice_token):
    relay = start_relay(SSE_HEARTBEAT_SECONDS=0.2)
    options = {"tokens": 3, "delay_ms": 500}  # under the 1 s stall timeout

    async with relay.client(alice_token) as client:
        params = {"prompt": "Wait " + fake(**options)}
        async with client.stream("GET", "/chat/stream", params=params) as response:
            raw = "".join([text async for text in response.aiter_text()])

    events, comments, _ = parse_sse(raw)
    assert ": ping\n\n" in raw
    assert comments and set(comments) == {"ping"}
    assert token_text(events) == expected_answer(**options)
    assert events[-1].event == "done"
    log = await finished_log(json.loads(events[0].data)["stream_id"])
    assert log.status == "completed"


@pytest.mark.timeout(30)
async def test_event_streams_carry_headers_that_keep_them_flowing(
    relay, alice, alice_token
):
    stream = await _post_stream(relay, alice_token, "Go " + fake(tokens=3))
    headers = {"Accept-Encoding": "gzip, deflate, br"}

    async with relay.client(alice_token, headers=headers) as client:
        responses = [
            await client.get("/chat/stream", params={"prompt": fake(tokens=3)}),
            await client.get(f"/streams/{stream}/events"),
        ]

    for response in responses:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        assert "Content-Encoding" not in response.headers
        assert "Content-Length" not in response.headers
        assert "Connection" not in response.headers
        assert "event: done\ndata: [DONE]\n\n" in response.text


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "origin",
    [
        {"Sec-Fetch-Site": "same-origin"},
        {"Origin": "{url}"},
        {"Referer": "{url}/chat/"},
    ],
)
async def test_a_session_may_stream_from_our_own_pages(
    relay, alice, alice_cookies, origin
):
    headers = {name: value.format(url=relay.url) for name, value in origin.items()}

    async with relay.client(cookies=alice_cookies, headers=headers) as client:
        received = await read_events(
            client, "/chat/stream", params={"prompt": fake(tokens=4)}
        )

    assert received.status == 200
    assert token_text(received.events) == expected_answer(tokens=4)
    log = await finished_log(stream_id(received))
    assert (log.user_id, log.status) == (alice.pk, "completed")


@pytest.mark.timeout(30)
async def test_a_session_post_with_a_csrf_token_starts_a_stream(
    relay, alice, alice_cookies
):
    headers = {"X-CSRFToken": alice_cookies["csrftoken"]}

    async with relay.client(cookies=alice_cookies, headers=headers) as client:
        started = await client.post("/streams/", data={"prompt": fake(tokens=4)})
        assert started.status_code == 201, started.text
        received = await read_events(client, started.json()["events_url"])

    assert token_text(received.events) == expected_answer(tokens=4)
    log = await finished_log(started.json()["id"])
    assert (log.user_id, log.status) == (alice.pk, "completed")


# --------------------------------------------------------------------------- turned away
# Requests turned away before a stream starts need no server: Django's test client
# runs these in-process. Each also checks that no stream log was created or changed.

STREAM_URLS = [
    ("get", "/chat/stream?prompt=hello"),
    ("post", "/streams/"),
    ("get", "/streams/1/events"),
    ("post", "/streams/1/stop"),
]


def _bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def _assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert body["message"]
    return body


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "url"), STREAM_URLS)
def test_it_requires_credentials(client, method, url):
    response = getattr(client, method)(url)

    _assert_error(response, 401, "unauthorized")
    assert not response.has_header("Location")  # no login redirect for programs
    assert not StreamLog.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "url"), STREAM_URLS)
@pytest.mark.parametrize("kind", ["unknown", "empty", "revoked", "inactive user"])
def test_it_refuses_a_bad_token(client, alice, make_token, method, url, kind):
    raw = {
        "unknown": "relay_not-a-real-token",
        "empty": "",
        "revoked": make_token(alice, revoked_at=timezone.now()),
        "inactive user": make_token(alice),
    }[kind]
    if kind == "inactive user":
        alice.is_active = False
        alice.save()

    response = getattr(client, method)(url, headers=_bearer(raw))

    _assert_error(response, 401, "unauthorized")
    assert not StreamLog.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["revoke", "delete", "deactivate the user"])
def test_a_token_stops_working_as_soon_as_it_is_revoked(
    client, alice, make_token, change
):
    """Tokens are cached between requests; saving a change drops them at once."""
    raw = make_token(alice)
    url = "/streams/999999/events"  # a stream that is not there: 404 once let in
    assert client.get(url, headers=_bearer(raw)).status_code == 404
    token = ApiToken.objects.get(user=alice)
    match change:
        case "revoke":
            token.revoked_at = timezone.now()
            token.save()
        case "delete":
            token.delete()
        case "deactivate the user":
            alice.is_active = False
            alice.save()

    response = client.get(url, headers=_bearer(raw))

    _assert_error(response, 401, "unauthorized")


@pytest.mark.django_db
def test_a_known_token_costs_no_query(client, alice_token, django_assert_num_queries):
    url = "/streams/999999/events"
    assert client.get(url, headers=_bearer(alice_token)).status_code == 404

    with django_assert_num_queries(1):  # the stream's, not the token's
        assert client.get(url, headers=_bearer(alice_token)).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("prompt", ["", "   ", "\n\t "])
def test_it_refuses_an_empty_prompt(client, alice_token, prompt):
    on_get = client.get(
        "/chat/stream", {"prompt": prompt}, headers=_bearer(alice_token)
    )
    on_post = client.post(
        "/streams/",
        json.dumps({"prompt": prompt}),
        content_type="application/json",
        headers=_bearer(alice_token),
    )

    for response in (on_get, on_post):
        body = _assert_error(response, 400, "bad_request")
        assert "prompt" in body["fields"]
    assert not StreamLog.objects.exists()


@pytest.mark.django_db
def test_it_refuses_a_prompt_over_the_limit(client, settings, alice_token):
    settings.MAX_PROMPT_CHARS = 20
    prompt = "x" * 21

    on_get = client.get(
        "/chat/stream", {"prompt": prompt}, headers=_bearer(alice_token)
    )
    on_post = client.post("/streams/", {"prompt": prompt}, headers=_bearer(alice_token))

    for response in (on_get, on_post):
        body = _assert_error(response, 413, "too_large")
        assert "20 characters" in body["message"]
    assert not StreamLog.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("choice", "field"),
    [
        ({"provider": "nope"}, "provider"),
        ({"provider": "openai"}, "provider"),  # not configured: no key here
        ({"provider": "demo", "model": "gpt-4o"}, "model"),
        ({"model": "no-such-model"}, "model"),
    ],
)
def test_it_refuses_an_unknown_provider_or_model(
    client, settings, alice_token, choice, field
):
    settings.OPENAI_API_KEY = settings.ANTHROPIC_API_KEY = ""
    on_get = client.get(
        "/chat/stream", {"prompt": "hi", **choice}, headers=_bearer(alice_token)
    )
    on_post = client.post(
        "/streams/", {"prompt": "hi", **choice}, headers=_bearer(alice_token)
    )

    for response in (on_get, on_post):
        body = _assert_error(response, 400, "bad_request")
        assert list(body["fields"]) == [field]
    assert not StreamLog.objects.exists()


@pytest.mark.django_db
def test_the_offered_providers_follow_the_settings(client, settings, alice_token):
    settings.OPENAI_API_KEY = "sk-configured-in-this-test"
    settings.OPENAI_MODELS = ["gpt-4o-mini", "gpt-4o"]

    response = client.get(
        "/chat/stream",
        {"prompt": "hi", "provider": "openai", "model": "gpt-3"},
        headers=_bearer(alice_token),
    )

    # openai is offered now, so only the model is refused, and the list says why.
    body = _assert_error(response, 400, "bad_request")
    assert list(body["fields"]) == ["model"]
    assert "gpt-4o-mini, gpt-4o" in body["message"]
    assert "sk-configured" not in response.content.decode()
    assert not StreamLog.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{not json", "application/json"),
        ('["a list"]', "application/json"),
        (b"\xff\xfe", "application/json"),
    ],
)
def test_it_refuses_a_body_that_is_not_a_json_object(
    client, alice_token, body, content_type
):
    response = client.post(
        "/streams/", body, content_type=content_type, headers=_bearer(alice_token)
    )

    _assert_error(response, 400, "bad_request")
    assert not StreamLog.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("last_event_id", ["abc", "-1", "1.5", "0x1", "14", "99"])
def test_it_refuses_a_bad_or_future_offset(
    client, alice_log, alice_token, last_event_id
):
    url = f"/streams/{alice_log.pk}/events"

    by_header = client.get(
        url, headers={**_bearer(alice_token), "Last-Event-ID": last_event_id}
    )
    by_query = client.get(
        url, {"last_event_id": last_event_id}, headers=_bearer(alice_token)
    )

    for response in (by_header, by_query):
        _assert_error(response, 400, "bad_last_event_id")


@pytest.mark.django_db
@pytest.mark.parametrize("last_event_id", ["x:1", "{pk}", ":0", "{pk}:abc", "{pk}:14"])
def test_chat_stream_refuses_a_bad_last_event_id(
    client, alice_log, alice_token, last_event_id
):
    headers = {
        **_bearer(alice_token),
        "Last-Event-ID": last_event_id.format(pk=alice_log.pk),
    }

    response = client.get("/chat/stream", {"prompt": "hello"}, headers=headers)

    _assert_error(response, 400, "bad_last_event_id")
    assert StreamLog.objects.count() == 1


@pytest.mark.django_db
def test_a_finished_stream_resumed_at_its_end_answers_204(
    client, alice_log, alice_token
):
    end = str(len(alice_log.response))

    response = client.get(
        f"/streams/{alice_log.pk}/events",
        {"last_event_id": end},
        headers=_bearer(alice_token),
    )

    assert response.status_code == 204
    assert response.content == b""


@pytest.mark.django_db
def test_another_users_stream_is_not_found(client, alice, bob_token, make_log):
    log = make_log(alice, status=StreamLog.Status.STREAMING, response="Hel")
    before = StreamLog.objects.values().get(pk=log.pk)

    responses = [
        client.get(f"/streams/{log.pk}/events", headers=_bearer(bob_token)),
        client.post(f"/streams/{log.pk}/stop", headers=_bearer(bob_token)),
        client.get(
            "/chat/stream",
            headers={**_bearer(bob_token), "Last-Event-ID": f"{log.pk}:0"},
        ),
        client.get(f"/streams/{log.pk + 1000}/events", headers=_bearer(bob_token)),
        client.post(f"/streams/{10**18 - 1}/stop", headers=_bearer(bob_token)),
    ]
    # Past what the id column holds: still no such stream, not a database error.
    too_big = client.post(f"/streams/{2**63}/stop", headers=_bearer(bob_token))

    for response in responses:
        _assert_error(response, 404, "not_found")
    assert too_big.status_code == 404
    assert StreamLog.objects.values().get(pk=log.pk) == before
    assert StreamLog.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", "/chat/stream"),
        ("put", "/chat/stream"),
        ("get", "/streams/"),
        ("delete", "/streams/"),
        ("post", "/streams/{pk}/events"),
        ("get", "/streams/{pk}/stop"),
    ],
)
def test_it_refuses_the_wrong_method(client, alice_log, alice_token, method, url):
    before = StreamLog.objects.values().get(pk=alice_log.pk)

    response = getattr(client, method)(
        url.format(pk=alice_log.pk), headers=_bearer(alice_token)
    )

    assert response.status_code == 405
    assert response.has_header("Allow")
    assert response.json()["error"] == "method_not_allowed"
    assert StreamLog.objects.values().get() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": "https://evil.example"},
        {"Referer": "https://evil.example/page"},
        {"Origin": "http://testserver.evil.example"},
        # Sec-Fetch-Site wins over a forged-looking Origin.
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://testserver"},
    ],
)
def test_a_session_may_not_start_a_stream_from_another_site(client, alice, headers):
    client.force_login(alice)

    response = client.get("/chat/stream", {"prompt": "hello"}, headers=headers)

    body = _assert_error(response, 403, "cross_site")
    assert "Authorization: Bearer" in body["message"]
    assert not StreamLog.objects.exists()


@pytest.mark.django_db
def test_a_session_post_needs_a_csrf_token(alice, alice_log):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    responses = [
        client.post("/streams/", {"prompt": "hello"}),
        client.post(f"/streams/{alice_log.pk}/stop"),
    ]

    for response in responses:
        _assert_error(response, 403, "csrf")
    assert StreamLog.objects.count() == 1


@pytest.mark.django_db
def test_a_token_post_needs_no_csrf_token(alice_token, alice_log):
    # Stopping a finished stream changes nothing, so it can run in-process.
    client = Client(enforce_csrf_checks=True)

    response = client.post(
        f"/streams/{alice_log.pk}/stop", headers=_bearer(alice_token)
    )

    assert response.status_code == 200
    assert response.json() == {"id": alice_log.pk, "status": "completed"}


@pytest.mark.django_db(transaction=True)
async def test_staff_who_may_view_stream_logs_may_replay_anothers_finished_stream(
    async_client, alice_log, charlie_token
):
    response = await async_client.get(
        f"/streams/{alice_log.pk}/events", headers=_bearer(charlie_token)
    )

    assert response.status_code == 200
    raw = "".join([chunk.decode() async for chunk in response.streaming_content])
    events, _, _ = parse_sse(raw)
    assert token_text(events) == "Hello, Alice!"
    assert events[-1] == ("done", "[DONE]", str(len("Hello, Alice!")))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        ("error", "rate_limited", True),
        ("error", "timeout", True),
        ("error", "auth", False),
        ("error", "bad_request", False),
        ("cancelled", "stopped", False),
        ("interrupted", "interrupted", True),
    ],
)
async def test_a_replayed_error_says_whether_to_retry(
    async_client, alice, make_log, alice_token, status, code, retryable
):
    log = await sync_to_async(make_log)(
        alice, status=status, error_code=code, error_message="It broke."
    )

    response = await async_client.get(
        f"/streams/{log.pk}/events", headers=_bearer(alice_token)
    )

    raw = "".join([chunk.decode() async for chunk in response.streaming_content])
    events, _, _ = parse_sse(raw)
    assert token_text(events) == "Hello!"
    assert events[-1].event == "error"
    error = json.loads(events[-1].data)
    assert error == {"code": code, "message": "It broke.", "retryable": retryable}
