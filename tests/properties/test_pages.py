"""Properties of the chat pages: viewing, renaming and deleting conversations.

The inputs and the outcomes the README promises for them are in support.py.
"""

import pytest
from django.http import QueryDict
from django.utils.http import parse_header_parameters
from hypothesis import given
from hypothesis import strategies as st

from streaming.models import Conversation, Message, StreamLog
from tests.properties.support import (
    METHODS,
    TITLE_BODIES,
    check,
    examples,
    fetch,
    fresh_chat,
    snapshot,
)

pytestmark = pytest.mark.django_db(transaction=True)


@examples(100)
@given(
    who=st.sampled_from(["alice", "bob", "anonymous"]),
    method=st.sampled_from(METHODS),
    page=st.sampled_from(["chat", "conversation", "rename", "delete"]),
    target=st.sampled_from(["own", "other", "missing"]),
    request_body=TITLE_BODIES,
)
def test_pages_answer_or_refuse_and_change_only_what_they_may(
    world, browsers, secrets, who, method, page, target, request_body
):
    alice, bob = world.users["alice"], world.users["bob"]
    # Fresh conversations each time (a delete may take one), with a prompt and its
    # answer: Alice's and Bob's.
    chats = {"own": fresh_chat(alice), "other": fresh_chat(bob)}
    chosen_chat = chats.get(target)
    conversation_id = chosen_chat.pk if chosen_chat else 10**15
    path = {
        "chat": "/",
        "conversation": f"/c/{conversation_id}/",
        "rename": f"/c/{conversation_id}/rename",
        "delete": f"/c/{conversation_id}/delete",
    }[page]
    user = {"alice": alice, "bob": bob, "anonymous": None}[who]
    client = browsers[who]
    body, content_type = request_body
    before = snapshot()

    answer = fetch(client, method, path, body, content_type)

    check(answer, secrets)
    changed = snapshot() != before
    if page in ("rename", "delete") and method != "POST":
        assert answer.status == 405 and not changed
        return
    media, _ = parse_header_parameters(content_type)
    if method == "POST" and answer.status == 400:
        # A form body Django cannot parse is refused before anything looks at it.
        assert media == "multipart/form-data" and not changed
        return
    if user is None:
        assert answer.status == 302 and answer.headers["Location"].startswith(
            "/accounts/login/?next="
        )
        assert not changed
        return
    owner = chosen_chat.owner if chosen_chat else None
    if page == "chat":
        assert answer.status == 200 and not changed
    elif owner != user:
        assert answer.status == 404 and not changed
    elif page == "conversation":
        assert answer.status == 200 and not changed
    elif page == "rename":
        conversation = Conversation.objects.get(pk=conversation_id)
        assert answer.status == 302
        assert answer.headers["Location"] == path.removesuffix("rename")
        if (
            media == "application/x-www-form-urlencoded"
            and "charset" not in content_type
        ):
            title = QueryDict(body).get("title")
            valid = (
                title is not None
                and "\x00" not in title
                and 0 < len(title.strip()) <= 200
            )
            assert conversation.title == (title.strip() if valid else "Fresh")
        # Nothing but the title may change.
        conversation.title = "Fresh"
        conversation.save()
        assert snapshot() == before
    else:  # delete
        assert (answer.status, answer.headers["Location"]) == (302, "/")
        assert not Conversation.objects.filter(pk=conversation_id).exists()
        assert not Message.objects.filter(conversation_id=conversation_id).exists()
        # The stream log stays, without its conversation: it is the record.
        answered = StreamLog.objects.get(prompt=f"Hi {conversation_id}")
        assert answered.conversation_id is None
        logs, conversations, messages, tokens = snapshot()
        assert tokens == before[3]
        assert [r for r in logs if r[0] != answered.pk] == [
            r for r in before[0] if r[0] != answered.pk
        ]
        assert conversations == [r for r in before[1] if r[0] != conversation_id]
        assert messages == [r for r in before[2] if r[1] != conversation_id]
