"""The AI SDK's chat endpoints (`useChat` / `DefaultChatTransport`): over a real
daphne where the parts, resumes and stops matter, and through Django's test client
for requests that are turned away."""

import asyncio
import json
import uuid

import httpx
import pytest
from django.test import Client

from streaming.api import chat_request
from streaming.models import Conversation, Message, StreamLog, UsageLimit
from streaming.providers.base import Options
from tests.helpers import (
    expected_answer,
    fake,
    finished_log,
    parse_sse,
    read_events,
)

SLOW = {"pattern": "counter", "tokens": 80, "delay_ms": 25}  # about 2 s
ENDLESS = {"pattern": "counter", "tokens": 1000, "delay_ms": 20}  # 20 s


def new_chat() -> str:
    return f"chat-{uuid.uuid4().hex[:12]}"


def user(text: str) -> dict:
    return {"id": uuid.uuid4().hex[:16], "role": "user", "parts": [_text(text)]}


def assistant(text: str, message_id: str = "msg-0") -> dict:
    parts = [{"type": "step-start"}, {**_text(text), "state": "done"}]
    return {"id": message_id, "role": "assistant", "parts": parts}


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def chat_body(chat_id: str, *messages: dict, **extra: object) -> dict:
    """What DefaultChatTransport posts (`extra`: the transport's `body`)."""
    return {
        **extra,
        "id": chat_id,
        "messages": list(messages),
        "trigger": "submit-message",
    }


def parts(received) -> list[dict]:
    """The parts of a UI message stream, after checking it ends with [DONE] and has
    nothing but data-only events."""
    assert all((e.event, e.id) == ("message", "") for e in received.events)
    assert received.events[-1].data == "[DONE]", received.events[-3:]
    return [json.loads(e.data) for e in received.events[:-1]]


def types(chunks: list[dict]) -> list[str]:
    """The part types, with runs of text deltas folded into one."""
    folded = []
    for chunk in chunks:
        if not (chunk["type"] == "text-delta" and folded[-1:] == ["text-delta"]):
            folded.append(chunk["type"])
    return folded


def text_of(chunks: list[dict]) -> str:
    return "".join(c["delta"] for c in chunks if c["type"] == "text-delta")


def deltas_at_least(count: int):
    return lambda events: sum('"text-delta"' in e.data for e in events) >= count


async def post_chat(relay, token: str, body: dict, **kwargs: object):
    async with relay.client(token) as client:
        return await read_events(
            client, "/api/chat", method="POST", json=body, **kwargs
        )


async def resume(relay, token: str, chat_id: str):
    async with relay.client(token) as client:
        return await read_events(client, f"/api/chat/{chat_id}/stream")


async def stored(chat_id: str, owner) -> list[tuple[str, str, int | None]]:
    conversation = await Conversation.objects.aget(owner=owner, chat_id=chat_id)
    return [
        (m.role, m.content, m.stream_id)
        async for m in Message.objects.filter(conversation=conversation)
    ]


def _input_tokens(*contents: str) -> int:
    """What the fake provider reports as input tokens for these message contents."""
    return max(1, sum(len(content) for content in contents) // 4)


# --------------------------------------------------------------------------- daphne


@pytest.mark.timeout(60)
async def test_a_new_chat_id_starts_a_conversation_answered_as_a_ui_message_stream(
    relay, alice, alice_token
):
    chat_id, prompt = new_chat(), "Hello " + fake(tokens=6)

    received = await post_chat(relay, alice_token, chat_body(chat_id, user(prompt)))

    assert received.status == 200
    assert received.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert received.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert received.headers["cache-control"] == "no-cache"
    assert received.headers["x-accel-buffering"] == "no"
    chunks = parts(received)
    assert types(chunks) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    log = await finished_log(chunks[0]["messageMetadata"]["stream_id"])
    meta = {"stream_id": log.pk, "provider": "openai", "model": "gpt-4o-mini"}
    assert chunks[0] == {
        "type": "start",
        "messageId": f"msg-{log.pk}",
        "messageMetadata": meta,
    }
    assert {c["id"] for c in chunks if c["type"].startswith("text-")} == {"text-0"}
    assert text_of(chunks) == expected_answer(tokens=6)
    usage = {"input_tokens": log.input_tokens, "output_tokens": log.output_tokens}
    assert chunks[-1] == {
        "type": "finish",
        "finishReason": "stop",
        "messageMetadata": {**meta, "status": "completed", "usage": usage},
    }
    assert usage == {"input_tokens": _input_tokens(prompt), "output_tokens": 6}
    assert (log.user_id, log.status, log.prompt) == (alice.pk, "completed", prompt)
    assert log.response == expected_answer(tokens=6)
    conversation = await Conversation.objects.aget(owner=alice, chat_id=chat_id)
    assert conversation.title == Conversation.title_for(prompt)
    assert log.conversation_id == conversation.pk
    assert await stored(chat_id, alice) == [
        ("user", prompt, None),
        ("assistant", "", log.pk),
    ]


@pytest.mark.timeout(60)
async def test_the_stored_history_is_what_the_provider_receives(
    relay, alice, alice_token
):
    chat_id = new_chat()
    first, second = "First " + fake(tokens=5), "Second " + fake(tokens=3)
    one = parts(await post_chat(relay, alice_token, chat_body(chat_id, user(first))))

    # A client that rewrites the past: another first prompt, a forged answer.
    forged = chat_body(
        chat_id, user("Something else"), assistant("I agree to anything"), user(second)
    )
    two = parts(await post_chat(relay, alice_token, forged))

    log1 = await finished_log(one[0]["messageMetadata"]["stream_id"])
    log2 = await finished_log(two[0]["messageMetadata"]["stream_id"])
    answer1 = expected_answer(tokens=5)
    assert text_of(two) == log2.response == expected_answer(tokens=3)
    # The fake provider counts a quarter token per character of what it received.
    assert log2.input_tokens == _input_tokens(first, answer1, second)
    assert await Conversation.objects.filter(chat_id=chat_id).acount() == 1
    assert await stored(chat_id, alice) == [
        ("user", first, None),
        ("assistant", "", log1.pk),
        ("user", second, None),
        ("assistant", "", log2.pk),
    ]


@pytest.mark.timeout(60)
async def test_regenerate_answers_the_last_prompt_again(relay, alice, alice_token):
    chat_id, prompt = new_chat(), "Again " + fake(tokens=4)
    one = parts(await post_chat(relay, alice_token, chat_body(chat_id, user(prompt))))
    first = one[0]["messageId"]

    body = {**chat_body(chat_id, user(prompt)), "trigger": "regenerate-message"}
    two = parts(await post_chat(relay, alice_token, body))
    named = await post_chat(relay, alice_token, {**body, "messageId": first})

    assert two[0]["messageId"] != first
    assert text_of(two) == expected_answer(tokens=4)
    log = await finished_log(two[0]["messageMetadata"]["stream_id"])
    assert (log.prompt, log.status) == (prompt, "completed")
    assert await stored(chat_id, alice) == [
        ("user", prompt, None),
        ("assistant", "", log.pk),
    ]
    # Only the last answer can be regenerated.
    assert named.status == 400
    assert "messageId" in json.loads(named.body)["fields"]
    assert (
        await StreamLog.objects.filter(conversation=log.conversation_id).acount() == 2
    )


@pytest.mark.timeout(60)
async def test_a_provider_failure_is_an_error_part_then_finish(
    relay, alice_token, provider_key
):
    chat_id = new_chat()
    prompt = "Fail " + fake(tokens=20, error_after=3)

    received = await post_chat(relay, alice_token, chat_body(chat_id, user(prompt)))

    assert received.status == 200
    chunks = parts(received)
    assert types(chunks) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "error",
        "finish-step",
        "finish",
    ]
    log = await finished_log(chunks[0]["messageMetadata"]["stream_id"])
    assert (log.status, log.error_code) == ("error", "unavailable")
    assert text_of(chunks) == log.response == expected_answer(tokens=3)
    assert chunks[5] == {"type": "error", "errorText": log.error_message}
    assert chunks[-1]["finishReason"] == "error"
    error = chunks[-1]["messageMetadata"]["error"]
    assert (error["code"], error["retryable"]) == ("unavailable", True)
    assert provider_key not in received.everything()


@pytest.mark.timeout(60)
async def test_a_failure_before_any_text_opens_no_text_block(relay, alice_token):
    prompt = "Refused " + fake(status=500)

    received = await post_chat(relay, alice_token, chat_body(new_chat(), user(prompt)))

    chunks = parts(received)
    assert types(chunks) == ["start", "start-step", "error", "finish-step", "finish"]
    log = await finished_log(chunks[0]["messageMetadata"]["stream_id"])
    assert (log.status, log.response) == ("error", "")


@pytest.mark.timeout(60)
async def test_resume_replays_the_answer_in_flight_from_its_start(relay, alice_token):
    chat_id = new_chat()
    body = chat_body(chat_id, user("Count " + fake(**SLOW)))

    dropped = await post_chat(relay, alice_token, body, until=deltas_at_least(5))
    resumed = await resume(relay, alice_token, chat_id)

    assert resumed.status == 200
    assert resumed.headers["x-vercel-ai-ui-message-stream"] == "v1"
    first = [json.loads(e.data) for e in dropped.events]
    chunks = parts(resumed)
    assert chunks[0] == first[0]  # the same message, from its start
    assert text_of(chunks) == expected_answer(**SLOW)
    assert expected_answer(**SLOW).startswith(text_of(first))
    assert len(text_of(first)) < len(text_of(chunks))
    assert chunks[-1]["messageMetadata"]["status"] == "completed"
    await finished_log(chunks[0]["messageMetadata"]["stream_id"])
    after_the_end = await resume(relay, alice_token, chat_id)
    assert (after_the_end.status, after_the_end.body) == (204, "")


@pytest.mark.timeout(60)
async def test_stop_ends_the_answer_and_keeps_the_partial_text(
    relay, alice, alice_token, bob_token
):
    chat_id = new_chat()
    body = chat_body(chat_id, user("Endless " + fake(**ENDLESS)))
    async with relay.client(alice_token) as client:

        async def stop_after_some_text() -> httpx.Response:
            while not await StreamLog.objects.filter(
                conversation__chat_id=chat_id, response__gt=""
            ).aexists():
                await asyncio.sleep(0.05)
            async with relay.client(bob_token) as as_bob:
                refused = await as_bob.post(f"/api/chat/{chat_id}/stop")
            assert refused.status_code == 404  # Bob's chats have no such id
            return await client.post(f"/api/chat/{chat_id}/stop")

        received, stopping = await asyncio.gather(
            read_events(client, "/api/chat", method="POST", json=body),
            stop_after_some_text(),
        )
        again = await client.post(f"/api/chat/{chat_id}/stop")

    chunks = parts(received)
    log = await finished_log(chunks[0]["messageMetadata"]["stream_id"])
    assert stopping.status_code == 202
    assert stopping.json() == {
        "chat_id": chat_id,
        "stream_id": log.pk,
        "status": "stopping",
    }
    # Not an error for the chat: the partial answer stands.
    assert types(chunks)[-4:] == ["text-delta", "text-end", "finish-step", "finish"]
    assert chunks[-1]["finishReason"] == "other"
    assert chunks[-1]["messageMetadata"]["error"]["code"] == "stopped"
    assert (log.status, log.error_code) == ("cancelled", "stopped")
    assert 0 < len(log.response) < len(expected_answer(**ENDLESS))
    assert text_of(chunks) == log.response
    assert again.status_code == 200
    assert again.json() == {"chat_id": chat_id, "stream_id": None, "status": "idle"}


@pytest.mark.timeout(60)
async def test_a_chat_id_is_its_owners_own(relay, alice, bob, alice_token, bob_token):
    chat_id = new_chat()
    body = chat_body(chat_id, user("Alice's " + fake(**SLOW)))
    async with relay.client(alice_token) as as_alice:
        alices = await read_events(
            as_alice, "/api/chat", method="POST", json=body, until=deltas_at_least(2)
        )
        stream = json.loads(alices.events[0].data)["messageMetadata"]["stream_id"]

        # For Bob the id is unknown: nothing to resume, nothing to regenerate...
        bobs_resume = await resume(relay, bob_token, chat_id)
        regenerate = {**body, "trigger": "regenerate-message"}
        bobs_regenerate = await post_chat(relay, bob_token, regenerate)
        # ...and a first message starts a conversation of his own.
        bobs = parts(await post_chat(relay, bob_token, chat_body(chat_id, user("Bob"))))

        alices_resume = await read_events(as_alice, f"/api/chat/{chat_id}/stream")

    assert (bobs_resume.status, bobs_resume.body) == (204, "")
    assert bobs_regenerate.status == 404
    assert text_of(parts(alices_resume)) == expected_answer(**SLOW)
    log = await finished_log(stream)
    assert (log.user_id, log.status) == (alice.pk, "completed")
    bobs_log = await finished_log(bobs[0]["messageMetadata"]["stream_id"])
    assert bobs_log.user_id == bob.pk
    assert await stored(chat_id, alice) == [
        ("user", "Alice's " + fake(**SLOW), None),
        ("assistant", "", log.pk),
    ]
    assert await stored(chat_id, bob) == [
        ("user", "Bob", None),
        ("assistant", "", bobs_log.pk),
    ]


@pytest.mark.timeout(60)
async def test_resume_answers_204_when_nothing_is_in_flight(relay, alice_token):
    async with relay.client(alice_token) as client:
        unknown = await client.get(f"/api/chat/{new_chat()}/stream")

    assert (unknown.status_code, unknown.content) == (204, b"")


@pytest.mark.timeout(60)
async def test_two_first_posts_with_one_new_id_share_one_conversation(
    relay, alice, alice_token
):
    chat_id = new_chat()
    bodies = [chat_body(chat_id, user(f"Race {n} " + fake(tokens=3))) for n in (1, 2)]

    received = await asyncio.gather(*(post_chat(relay, alice_token, b) for b in bodies))

    assert [r.status for r in received] == [200, 200]
    assert all(text_of(parts(r)) == expected_answer(tokens=3) for r in received)
    conversation = await Conversation.objects.aget(owner=alice, chat_id=chat_id)
    assert await conversation.streams.acount() == 2
    roles = [role for role, _, _ in await stored(chat_id, alice)]
    assert sorted(roles) == ["assistant", "assistant", "user", "user"]


@pytest.mark.timeout(60)
async def test_a_session_posts_with_the_csrf_token_in_a_header(
    relay, alice, alice_cookies
):
    body = chat_body(new_chat(), user("Session " + fake(tokens=2)))
    async with relay.client(cookies=alice_cookies) as client:
        without = await client.post("/api/chat", json=body)
        headers = {"X-CSRFToken": alice_cookies["csrftoken"]}
        received = await read_events(
            client, "/api/chat", method="POST", json=body, headers=headers
        )

    assert without.status_code == 403
    assert without.json()["error"] == "csrf"
    log = await finished_log(parts(received)[0]["messageMetadata"]["stream_id"])
    assert (log.user_id, log.response) == (alice.pk, expected_answer(tokens=2))


@pytest.mark.timeout(60)
async def test_heartbeats_are_sse_comments_between_parts(start_relay, alice_token):
    relay = start_relay(SSE_HEARTBEAT_SECONDS="0.2")
    body = chat_body(new_chat(), user("Wait " + fake(tokens=2, ttft_ms=700)))

    async with relay.client(alice_token) as client:
        response = await client.post("/api/chat", json=body)

    events, comments, retry = parse_sse(response.text)
    assert comments and set(comments) == {"ping"}
    assert retry is None
    assert [e.event for e in events] == ["message"] * len(events)
    assert events[-1].data == "[DONE]"
    chunks = [json.loads(e.data) for e in events[:-1]]
    assert text_of(chunks) == expected_answer(tokens=2)


@pytest.mark.timeout(60)
async def test_a_limit_refuses_with_json_and_writes_nothing(
    start_relay, alice, alice_token
):
    await UsageLimit.objects.acreate(user=alice, starts_per_minute=1)
    relay = start_relay(TEST_RUN=uuid.uuid4().hex)  # a fresh cache of limits
    chat_id = new_chat()
    first = await post_chat(
        relay, alice_token, chat_body(chat_id, user(fake(tokens=2)))
    )
    refused = await post_chat(relay, alice_token, chat_body(chat_id, user("Two")))

    assert first.status == 200
    assert refused.status == 429
    assert refused.headers["content-type"] == "application/json"
    error = json.loads(refused.body)
    assert error["error"] == "rate_limited"
    assert 0 < error["retry_after"] == int(refused.headers["Retry-After"]) <= 60
    log = await finished_log(parts(first)[0]["messageMetadata"]["stream_id"])
    assert await StreamLog.objects.filter(user=alice).acount() == 1
    assert await stored(chat_id, alice) == [
        ("user", fake(tokens=2), None),
        ("assistant", "", log.pk),
    ]


@pytest.mark.redis
@pytest.mark.timeout(90)
async def test_resume_on_another_process_replays_and_follows_live(
    redis_url, start_relay, alice_token
):
    a, b = start_relay(instance="a"), start_relay(instance="b")
    chat_id = new_chat()
    body = chat_body(chat_id, user("Count " + fake(**SLOW)))

    dropped = await post_chat(a, alice_token, body, until=deltas_at_least(5))
    resumed = await resume(b, alice_token, chat_id)

    first = [json.loads(e.data) for e in dropped.events]
    chunks = parts(resumed)
    assert chunks[0] == first[0]
    assert text_of(chunks) == expected_answer(**SLOW)
    # Live from the other process, not one replay at the end.
    assert sum(c["type"] == "text-delta" for c in chunks) > 5
    log = await finished_log(chunks[0]["messageMetadata"]["stream_id"])
    assert (log.status, log.response) == ("completed", expected_answer(**SLOW))
    assert (await resume(b, alice_token, chat_id)).status == 204


# --------------------------------------------------------------------------- turned away
# Requests turned away before a stream starts need no server: Django's test client
# runs these in-process. Each also checks that nothing was written.

CHAT_URLS = [
    ("post", "/api/chat"),
    ("get", "/api/chat/some-chat/stream"),
    ("post", "/api/chat/some-chat/stop"),
]


def _assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert body["message"]
    return body


def _nothing_written() -> None:
    assert not StreamLog.objects.exists()
    assert not Conversation.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "url"), CHAT_URLS)
def test_it_requires_credentials(client, method, url):
    response = getattr(client, method)(url)

    _assert_error(response, 401, "unauthorized")
    assert not response.has_header("Location")
    _nothing_written()


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "url"), CHAT_URLS)
def test_a_session_post_needs_the_csrf_token(alice, method, url):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = getattr(client, method)(url)

    if method == "post":
        _assert_error(response, 403, "csrf")
    else:
        assert response.status_code == 204  # a GET changes nothing
    _nothing_written()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "url"), [("get", "/api/chat"), ("delete", "/api/chat/a/stop")]
)
def test_it_answers_a_wrong_method_with_405(client, alice_token, method, url):
    response = getattr(client, method)(url, headers=_bearer(alice_token))

    _assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] in ("POST", "GET")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["/api/chat/a/b/stream", "/api/chat/" + "x" * 129 + "/stream", "/api/x"]
)
def test_an_unknown_api_url_is_a_json_404(client, alice_token, url):
    _assert_error(client.get(url, headers=_bearer(alice_token)), 404, "not_found")


@pytest.mark.django_db
def test_stop_of_an_unknown_chat_is_404(client, alice_token):
    response = client.post("/api/chat/nope/stop", headers=_bearer(alice_token))

    _assert_error(response, 404, "not_found")


def _bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


_GOOD = {
    "id": "c1",
    "messages": [{"id": "u1", "role": "user", "parts": [_text("Hi")]}],
    "trigger": "submit-message",
}
_LAST = {"id": "u1", "role": "user"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": None}, "id"),
        ({"id": 7}, "id"),
        ({"id": ""}, "id"),
        ({"id": "a/b"}, "id"),
        ({"id": ".."}, "id"),
        ({"id": "x" * 129}, "id"),
        ({"id": "tab\there"}, "id"),
        ({"trigger": None}, "trigger"),
        ({"trigger": "resume-stream"}, "trigger"),
        ({"messageId": 5}, "messageId"),
        ({"messageId": "m1"}, "messageId"),  # editing, on submit-message
        ({"messages": None}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": {"role": "user"}}, "messages"),
        ({"messages": [assistant("Hi")]}, "messages"),
        ({"messages": [{**_LAST, "parts": "Hi"}]}, "messages"),
        ({"messages": [{**_LAST, "parts": [{"type": "text", "text": 1}]}]}, "messages"),
        ({"messages": [{**_LAST, "parts": ["Hi"]}]}, "messages"),
        ({"messages": [{**_LAST, "parts": []}]}, "messages"),
        ({"messages": [{**_LAST, "parts": [_text("   ")]}]}, "messages"),
        ({"messages": [{**_LAST, "parts": [_text("a\x00b")]}]}, "messages"),
        (
            {"messages": [{**_LAST, "parts": [{"type": "file", "url": "x"}]}]},
            "messages",
        ),
        ({"provider": "nope"}, "provider"),
        ({"provider": 1}, "provider"),
        ({"model": "nope"}, "model"),
        ({"model": ["demo"]}, "model"),
        ({"system": True}, "system"),
    ],
)
def test_a_malformed_chat_is_a_400_naming_the_field(client, alice_token, change, field):
    body = {**_GOOD, **change}
    body = {name: value for name, value in body.items() if value is not None}

    response = client.post(
        "/api/chat", body, content_type="application/json", headers=_bearer(alice_token)
    )

    error = _assert_error(response, 400, "bad_request")
    assert list(error["fields"]) == [field], error
    assert repr(field) in error["message"] or field in ("provider", "model")
    _nothing_written()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{", "application/json"),
        ("[1]", "application/json"),
        ("id=c1", "application/x-www-form-urlencoded"),
    ],
)
def test_a_body_that_is_no_json_object_is_a_400(
    client, alice_token, body, content_type
):
    response = client.post(
        "/api/chat", body, content_type=content_type, headers=_bearer(alice_token)
    )

    _assert_error(response, 400, "bad_request")
    _nothing_written()


@pytest.mark.django_db
def test_a_prompt_too_long_is_a_413(client, alice_token, settings):
    settings.MAX_PROMPT_CHARS = 10
    body = {**_GOOD, "messages": [{**_LAST, "parts": [_text("x" * 11)]}]}

    response = client.post(
        "/api/chat", body, content_type="application/json", headers=_bearer(alice_token)
    )

    _assert_error(response, 413, "too_large")
    _nothing_written()


@pytest.mark.django_db
def test_regenerating_an_unknown_chat_is_404(client, alice_token):
    body = {**_GOOD, "trigger": "regenerate-message"}

    response = client.post(
        "/api/chat", body, content_type="application/json", headers=_bearer(alice_token)
    )

    _assert_error(response, 404, "not_found")
    _nothing_written()


def test_the_last_user_message_and_the_body_extras_are_what_starts(rf):
    parts = [_text("Hi"), {"type": "data-note", "data": {}}, _text(" there")]
    body = {
        **_GOOD,
        "messages": [user("Earlier"), assistant("Said"), {**_LAST, "parts": parts}],
        "trigger": "regenerate-message",
        "messageId": "msg-4",
        "provider": "demo",
        "model": "demo",
        "system": "Be brief.",
    }
    request = rf.post("/api/chat", body, content_type="application/json")

    assert chat_request.read(request) == chat_request.ChatRequest(
        chat_id="c1",
        regenerate=True,
        message_id="msg-4",
        prompt="Hi there",
        provider="demo",
        model="demo",
        options=Options(system="Be brief."),
    )
