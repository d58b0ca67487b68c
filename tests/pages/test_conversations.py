"""Conversations: their titles, the context sent to the provider, and the turns
started through POST /streams/ (continuing a conversation, regenerating an answer)."""

import json

import pytest
from django.db.models import Max

from streaming.models import Conversation, Message, StreamLog
from tests.helpers import expected_answer, fake, finished_log, read_events

# --------------------------------------------------------------------------- helpers


def _chat(user, make_log, *turns: tuple[str, str], **log_fields) -> Conversation:
    """A conversation of (role, text) turns; an assistant's text is its stream's
    response, and a `None` text is a failed answer."""
    conversation = Conversation.objects.create(owner=user, title="A chat")
    for role, text in turns:
        if role == "user":
            conversation.messages.create(role=role, content=text)
            continue
        fields = {"response": text, **log_fields}
        if text is None:
            fields.update(response="", status="error", error_code="unavailable")
        log = make_log(user, conversation=conversation, **fields)
        conversation.messages.create(role=role, stream=log)
    return conversation


def _context(conversation: Conversation, *, messages=20, chars=48_000) -> list:
    found = conversation.context(max_messages=messages, max_chars=chars)
    return [(turn["role"], turn["content"]) for turn in found]


def _input_tokens(*contents: str) -> int:
    """What the fake provider reports as input tokens for these message contents."""
    return max(1, sum(len(content) for content in contents) // 4)


def _bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def _post(client, token: str, **fields) -> object:
    return client.post(
        "/streams/",
        json.dumps(fields),
        content_type="application/json",
        headers=_bearer(token),
    )


async def _turn(relay, token: str, **fields) -> tuple[dict, StreamLog]:
    """POST /streams/, read the answer to its end: (the 201 body, the finished log)."""
    async with relay.client(token) as client:
        started = await client.post("/streams/", json=fields)
        assert started.status_code == 201, started.text
        body = started.json()
        received = await read_events(client, body["events_url"])
    assert received.events[-1].event == "done", received.events[-3:]
    log = await finished_log(body["id"])
    assert log.status == StreamLog.Status.COMPLETED, log.error_message
    return body, log


async def _messages(conversation_id: int) -> list[tuple[str, str, int | None]]:
    """The stored turns: (role, content, stream id)."""
    found = Message.objects.filter(conversation_id=conversation_id)
    return [(m.role, m.content, m.stream_id) async for m in found]


async def _message_ids(conversation_id: int) -> list[int]:
    found = Message.objects.filter(conversation_id=conversation_id)
    return [pk async for pk in found.values_list("pk", flat=True)]


# --------------------------------------------------------------------------- titles


@pytest.mark.parametrize(
    ("prompt", "title"),
    [
        ("What causes tides?", "What causes tides?"),
        ("  Tell me\nabout\t\tthe   Moon  ", "Tell me about the Moon"),
        ("x" * 60, "x" * 60),
        ("x" * 61, "x" * 59 + "…"),
        # A cut at a space does not leave it before the ellipsis.
        ("a" * 58 + " bcdef", "a" * 58 + "…"),
        ("日本語 " * 30, ("日本語 " * 15)[:59].rstrip() + "…"),
    ],
    ids=["short", "spaces", "60 characters", "61 characters", "cut at a space", "cjk"],
)
def test_a_title_is_the_first_words_of_the_prompt_on_one_line(prompt, title):
    made = Conversation.title_for(prompt)

    assert made == title
    assert len(made) <= 60
    assert "\n" not in made


# --------------------------------------------------------------------------- context


@pytest.mark.django_db
def test_the_context_is_the_whole_conversation_when_it_fits(alice, make_log):
    chat = _chat(
        alice,
        make_log,
        ("user", "u1"),
        ("assistant", "a1"),
        ("user", "u2"),
        ("assistant", "a2"),
        ("user", "u3"),
    )

    assert _context(chat) == [
        ("user", "u1"),
        ("assistant", "a1"),
        ("user", "u2"),
        ("assistant", "a2"),
        ("user", "u3"),
    ]


@pytest.mark.django_db
def test_an_empty_conversation_has_no_context(alice):
    chat = Conversation.objects.create(owner=alice, title="Empty")

    assert _context(chat) == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("limit", "kept"),
    [
        (5, ["u1", "a1", "u2", "a2", "u3"]),
        (4, ["u2", "a2", "u3"]),  # a1 would be first: the context starts with a user
        (3, ["u2", "a2", "u3"]),
        (2, ["u3"]),
        (1, ["u3"]),
    ],
)
def test_the_context_keeps_at_most_the_latest_messages(alice, make_log, limit, kept):
    chat = _chat(
        alice,
        make_log,
        ("user", "u1"),
        ("assistant", "a1"),
        ("user", "u2"),
        ("assistant", "a2"),
        ("user", "u3"),
    )

    context = _context(chat, messages=limit)

    assert [content for _, content in context] == kept
    assert context[0][0] == "user"
    assert len(context) <= limit


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("limit", "kept"),
    [
        (50, ["u1-" + "x" * 6, "a1-" + "y" * 16, "u2-" + "z" * 6]),  # 9 + 19 + 9
        (37, ["u1-" + "x" * 6, "a1-" + "y" * 16, "u2-" + "z" * 6]),
        (36, ["u2-" + "z" * 6]),  # u1 does not fit, and a1 may not come first
        (9, ["u2-" + "z" * 6]),
    ],
)
def test_the_context_keeps_at_most_the_latest_characters(alice, make_log, limit, kept):
    chat = _chat(
        alice,
        make_log,
        ("user", "u1-" + "x" * 6),
        ("assistant", "a1-" + "y" * 16),
        ("user", "u2-" + "z" * 6),
    )

    context = _context(chat, chars=limit)

    assert [content for _, content in context] == kept
    assert sum(len(content) for _, content in context) <= limit


@pytest.mark.django_db
@pytest.mark.parametrize(("messages", "chars"), [(1, 10), (20, 10), (1, 48_000)])
def test_the_context_always_keeps_the_newest_prompt_cut_to_the_limit(
    alice, make_log, messages, chars
):
    prompt = "An old story. " * 10 + "The question?"
    chat = _chat(
        alice, make_log, ("user", "earlier"), ("assistant", "yes"), ("user", prompt)
    )

    context = _context(chat, messages=messages, chars=chars)

    # The end of a prompt is kept, where the question usually is.
    assert context == [("user", prompt[-chars:])]


@pytest.mark.django_db
def test_the_context_skips_failed_answers_and_merges_the_prompts_around_them(
    alice, make_log
):
    chat = _chat(
        alice,
        make_log,
        ("user", "u1"),
        ("assistant", None),
        ("user", "u2"),
        ("assistant", "a2"),
        ("user", "u3"),
        ("assistant", None),
        ("assistant", None),
        ("user", "u4"),
    )

    assert _context(chat) == [
        ("user", "u1\n\nu2"),
        ("assistant", "a2"),
        ("user", "u3\n\nu4"),
    ]
    # Merged, a turn counts as one message.
    assert _context(chat, messages=1) == [("user", "u3\n\nu4")]


@pytest.mark.django_db
def test_the_context_merges_consecutive_answers(alice, make_log):
    chat = _chat(
        alice,
        make_log,
        ("user", "u1"),
        ("assistant", "first half"),
        ("assistant", "second half"),
        ("user", "u2"),
    )

    assert _context(chat) == [
        ("user", "u1"),
        ("assistant", "first half\n\nsecond half"),
        ("user", "u2"),
    ]


@pytest.mark.django_db
def test_the_context_skips_an_answer_still_streaming_but_keeps_a_stopped_one(
    alice, make_log
):
    chat = _chat(alice, make_log, ("user", "u1"))
    streaming = make_log(alice, conversation=chat, response="", status="streaming")
    chat.messages.create(role="assistant", stream=streaming)
    chat.messages.create(role="user", content="u2")
    stopped = make_log(alice, conversation=chat, response="Part", status="cancelled")
    chat.messages.create(role="assistant", stream=stopped)
    chat.messages.create(role="user", content="u3")

    assert _context(chat) == [
        ("user", "u1\n\nu2"),
        ("assistant", "Part"),
        ("user", "u3"),
    ]


@pytest.mark.django_db
def test_the_context_drops_leading_answers_so_it_starts_with_a_prompt(alice, make_log):
    chat = _chat(
        alice, make_log, ("assistant", "Hello, how can I help?"), ("user", "u1")
    )

    assert _context(chat) == [("user", "u1")]


# --------------------------------------------------------------------------- relay


@pytest.mark.timeout(30)
async def test_a_first_post_starts_a_conversation_titled_from_the_prompt(
    relay, alice, alice_token
):
    prompt = "  Tell me\nabout   server-sent events " + fake(tokens=5)

    body, log = await _turn(relay, alice_token, prompt=prompt)

    conversation = await Conversation.objects.aget(pk=body["conversation_id"])
    title = "Tell me about server-sent events [fake?tokens=5]"
    assert body["conversation_url"] == f"/c/{conversation.pk}/"
    assert body["conversation_title"] == conversation.title == title
    assert conversation.owner_id == alice.pk
    assert (log.conversation_id, log.prompt) == (conversation.pk, prompt)
    assert log.response == expected_answer(tokens=5)
    assert log.input_tokens == _input_tokens(prompt)
    assert await _messages(conversation.pk) == [
        ("user", prompt, None),
        ("assistant", "", log.pk),
    ]


@pytest.mark.timeout(30)
async def test_a_second_post_continues_the_conversation_with_all_that_was_said(
    relay, alice, alice_token
):
    first = "What is server-sent events? " + fake(tokens=5)
    second = "And how does it resume? " + fake(tokens=7)
    body, log1 = await _turn(relay, alice_token, prompt=first)
    chat = body["conversation_id"]
    before = (await Conversation.objects.aget(pk=chat)).updated_at

    again, log2 = await _turn(relay, alice_token, prompt=second, conversation=chat)

    assert again["id"] == log2.pk != log1.pk
    assert (again["conversation_id"], again["conversation_url"]) == (
        chat,
        f"/c/{chat}/",
    )
    assert again["conversation_title"] == Conversation.title_for(first)
    assert await Conversation.objects.acount() == 1
    answer1 = expected_answer(tokens=5)
    assert log2.response == expected_answer(tokens=7)
    # The fake provider counts a quarter token per character of every message it
    # received: the first prompt, its answer and the new prompt.
    assert log1.input_tokens == _input_tokens(first)
    assert log2.input_tokens == _input_tokens(first, answer1, second)
    assert log2.input_tokens > _input_tokens(second)
    assert await _messages(chat) == [
        ("user", first, None),
        ("assistant", "", log1.pk),
        ("user", second, None),
        ("assistant", "", log2.pk),
    ]
    conversation = await Conversation.objects.aget(pk=chat)
    assert conversation.updated_at > before


# One relay with both bounds small; each test below is cut by one of them only.
BOUNDED = {"MAX_CONTEXT_MESSAGES": 3, "MAX_CONTEXT_CHARS": 300}


@pytest.mark.timeout(30)
async def test_the_provider_gets_only_the_latest_messages_of_a_long_conversation(
    start_relay, alice, alice_token
):
    relay = start_relay(**BOUNDED)
    prompts = [
        "A first question, " * 4 + fake(tokens=5),
        "A second question " + fake(tokens=6),
        "And a third " + fake(tokens=7),
    ]
    answers = [expected_answer(tokens=5), expected_answer(tokens=6)]
    assert len("".join(prompts + answers)) <= BOUNDED["MAX_CONTEXT_CHARS"]
    body, first = await _turn(relay, alice_token, prompt=prompts[0])
    chat = body["conversation_id"]
    _, second = await _turn(relay, alice_token, prompt=prompts[1], conversation=chat)

    _, third = await _turn(relay, alice_token, prompt=prompts[2], conversation=chat)

    assert first.input_tokens == _input_tokens(prompts[0])
    assert second.input_tokens == _input_tokens(prompts[0], answers[0], prompts[1])
    # Three messages: the first prompt and its answer stay out.
    assert third.input_tokens == _input_tokens(prompts[1], answers[1], prompts[2])
    assert third.input_tokens < _input_tokens(*prompts, *answers)
    assert third.response == expected_answer(tokens=7)
    assert len(await _messages(chat)) == 6  # all is stored, only the context is cut


@pytest.mark.timeout(30)
async def test_the_provider_gets_at_most_the_latest_characters(
    start_relay, alice, alice_token
):
    relay = start_relay(**BOUNDED)
    limit = BOUNDED["MAX_CONTEXT_CHARS"]
    first = "An old and long story. " * 17 + fake(tokens=5)  # 406 characters
    second = "What was it about? " + fake(tokens=6)
    body, log1 = await _turn(relay, alice_token, prompt=first)

    _, log2 = await _turn(
        relay, alice_token, prompt=second, conversation=body["conversation_id"]
    )

    # Alone, a prompt is cut to its last characters (its directive survives).
    assert len(first) > limit
    assert log1.input_tokens == _input_tokens(first[-limit:])
    assert log1.response == expected_answer(tokens=5)
    # Three messages would be allowed, and the answer would fit with the new prompt,
    # but not the old prompt; a context starts with a prompt, so only the new one
    # is sent.
    assert len(expected_answer(tokens=5) + second) <= limit
    assert log2.input_tokens == _input_tokens(second)
    assert log2.response == expected_answer(tokens=6)


# --------------------------------------------------------------------------- regenerate


@pytest.mark.timeout(30)
async def test_regenerate_replaces_the_last_answer(relay, alice, alice_token):
    first = "What is a tide? " + fake(tokens=5)
    second = "Why twice a day? " + fake(tokens=6)
    body, log1 = await _turn(relay, alice_token, prompt=first)
    chat = body["conversation_id"]
    _, old = await _turn(relay, alice_token, prompt=second, conversation=chat)
    before = await _message_ids(chat)

    again, new = await _turn(relay, alice_token, conversation=chat, regenerate=True)

    assert again["id"] == new.pk
    assert new.pk not in (log1.pk, old.pk)
    assert again["conversation_id"] == chat
    assert (new.prompt, new.conversation_id) == (second, chat)
    assert new.response == expected_answer(tokens=6)
    # The provider got the conversation up to the last prompt, not the old answer.
    assert new.input_tokens == _input_tokens(first, expected_answer(tokens=5), second)
    assert await _messages(chat) == [
        ("user", first, None),
        ("assistant", "", log1.pk),
        ("user", second, None),
        ("assistant", "", new.pk),
    ]
    # The same rows as before but for the answer: the prompt was not duplicated.
    after = await _message_ids(chat)
    assert after[:3] == before[:3]
    assert after[3] not in before
    assert not await Message.objects.filter(stream_id=old.pk).aexists()
    # The replaced answer's log stays: it is the record of what was spent.
    old = await StreamLog.objects.aget(pk=old.pk)
    assert (old.conversation_id, old.response) == (chat, expected_answer(tokens=6))
    assert await StreamLog.objects.filter(conversation_id=chat).acount() == 3


@pytest.mark.django_db
def test_regenerate_in_a_conversation_without_messages_is_refused(
    client, alice, alice_token
):
    chat = Conversation.objects.create(owner=alice, title="Empty")

    response = _post(client, alice_token, conversation=chat.pk, regenerate=True)

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert not StreamLog.objects.exists()
    assert not Message.objects.exists()
    assert Conversation.objects.get().updated_at == chat.updated_at


@pytest.mark.django_db
@pytest.mark.parametrize("conversation", [None, ""])
def test_regenerate_without_a_conversation_is_refused(
    client, alice, alice_token, conversation
):
    fields = {"regenerate": True, "prompt": "Again"}
    if conversation is not None:
        fields["conversation"] = conversation

    response = _post(client, alice_token, **fields)

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "bad_request"
    assert list(body["fields"]) == ["conversation"]
    assert not Conversation.objects.exists()
    assert not StreamLog.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("regenerate", [False, True])
def test_another_users_conversation_is_not_found_and_left_alone(
    client, alice_token, bob, make_log, regenerate
):
    theirs = _chat(bob, make_log, ("user", "Bob's question"), ("assistant", "Answer"))
    before = list(Message.objects.values())
    last_id = StreamLog.objects.aggregate(Max("id"))["id__max"]

    response = _post(
        client,
        alice_token,
        prompt="Let me in",
        conversation=theirs.pk,
        regenerate=regenerate,
    )

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert list(Message.objects.values()) == before
    assert StreamLog.objects.aggregate(Max("id"))["id__max"] == last_id
    assert Conversation.objects.count() == 1
    assert Conversation.objects.get().updated_at == theirs.updated_at


@pytest.mark.django_db
def test_an_unknown_conversation_is_not_found(client, alice, alice_token):
    response = _post(client, alice_token, prompt="Hello", conversation=10**15)

    assert response.status_code == 404
    assert not Conversation.objects.exists()
    assert not StreamLog.objects.exists()
