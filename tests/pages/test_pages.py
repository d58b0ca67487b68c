"""The pages people see: logging in and out, the chat page with its conversations,
renaming and deleting them. All in-process through Django's test client."""

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.test import Client
from django.test.html import Element, parse_html
from django.utils import timezone

from streaming.models import Conversation, Message, StreamLog

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-and-unusual-passphrase-17"
NEW_PASSWORD = "another-long-unusual-passphrase-42"
STOPPED = "The answer was stopped."
RATE_LIMITED = "The model provider is rate limiting requests; try again shortly."


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _conversation(user, title: str = "A chat", **fields) -> Conversation:
    return Conversation.objects.create(owner=user, title=title, **fields)


def _say(conversation: Conversation, text: str) -> Message:
    return conversation.messages.create(role=Message.Role.USER, content=text)


def _answer(conversation: Conversation, make_log, **fields) -> Message:
    log = make_log(conversation.owner, conversation=conversation, **fields)
    return conversation.messages.create(role=Message.Role.ASSISTANT, stream=log)


def _dom(response) -> Element:
    return parse_html(response.content.decode())


def _elements(node: Element) -> Iterator[Element]:
    yield node
    for child in node.children:
        if isinstance(child, Element):
            yield from _elements(child)


def _find(node: Element, tag: str | None = None, **attrs: str) -> list[Element]:
    """Descendants with this tag whose attributes have these values; `class_` is
    one class among the element's classes."""
    wanted_class = attrs.pop("class_", None)
    found = []
    for element in _elements(node):
        attributes = dict(element.attributes)
        if tag is not None and element.name != tag:
            continue
        if wanted_class and wanted_class not in (attributes.get("class") or "").split():
            continue
        if any(attributes.get(name) != value for name, value in attrs.items()):
            continue
        found.append(element)
    return found


def _one(node: Element, tag: str | None = None, **attrs: str) -> Element:
    found = _find(node, tag, **attrs)
    assert len(found) == 1, (tag, attrs, found)
    return found[0]


def _text(node: Element) -> str:
    parts = [
        child if isinstance(child, str) else _text(child) for child in node.children
    ]
    return " ".join(part for part in parts if part)


def _page_data(response) -> dict:
    return json.loads(_text(_one(_dom(response), "script", id="page-data")))


def _sidebar(response) -> list[tuple[str, str]]:
    """The conversation links in the sidebar: (title, href), top to bottom."""
    listing = _one(_dom(response), "ul", id="conversations")
    return [(_text(a), dict(a.attributes)["href"]) for a in _find(listing, "a")]


def _shown_messages(response) -> list[dict[str, str | None]]:
    """The messages of the conversation as the page shows them (not the template)."""
    shown = []
    for item in _find(
        _one(_dom(response), "ol", id="messages"), "li", class_="message"
    ):
        attributes = dict(item.attributes)
        role = "assistant" if "assistant" in attributes["class"].split() else "user"
        entry = {"role": role, "body": _text(_one(item, "div", class_="body"))}
        if role == "assistant":
            problem = _one(item, "div", class_="message-error")
            entry["status"] = attributes.get("data-status")
            entry["state"] = _text(_one(item, "span", class_="message-state"))
            hidden = "hidden" in dict(problem.attributes)
            entry["error"] = None if hidden else _text(problem)
        shown.append(entry)
    return shown


def _csrf_token(client: Client, url: str) -> str:
    """The token a browser would send back from the form on `url`."""
    response = client.get(url)
    assert response.status_code == 200
    field = _find(_dom(response), "input", name="csrfmiddlewaretoken")[0]
    return dict(field.attributes)["value"]


# --------------------------------------------------------------------------- logging in


@pytest.mark.parametrize("path", ["/", "/c/{id}/"])
def test_anonymous_visitors_are_sent_to_log_in_and_come_back_afterwards(
    client, alice, path
):
    alice.set_password(PASSWORD)
    alice.save()
    url = path.format(id=_conversation(alice, "Tides").pk)

    anonymous = client.get(url)
    assert anonymous.status_code == 302
    assert anonymous["Location"] == f"/accounts/login/?next={url}"
    form = client.get(anonymous["Location"])
    assert form.status_code == 200
    assert dict(_one(_dom(form), "input", name="next").attributes)["value"] == url
    logged_in = client.post(
        "/accounts/login/", {"username": "alice", "password": PASSWORD, "next": url}
    )
    page = client.get(url)

    assert logged_in.status_code == 302
    assert logged_in["Location"] == url
    assert page.status_code == 200
    assert page.context["user"] == alice


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/"])
def test_logging_in_never_sends_the_user_to_another_site(client, alice, next_url):
    alice.set_password(PASSWORD)
    alice.save()

    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": PASSWORD, "next": next_url},
    )

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/").context["user"] == alice


def test_a_wrong_password_shows_the_login_form_again(client, alice):
    alice.set_password(PASSWORD)
    alice.save()

    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "wrong", "next": "/"}
    )

    assert response.status_code == 200
    alert = _one(_dom(response), "p", class_="form-error")
    assert "didn't match" in _text(alert)
    assert not response.context["user"].is_authenticated
    assert client.get("/").status_code == 302


def test_the_login_page_is_ours(client):
    response = client.get("/accounts/login/")

    assert response.status_code == 200
    dom = _dom(response)
    assert _text(_one(dom, "title")) == "Log in · SSE relay"
    assert _text(_one(dom, "h1")) == "Log in"
    assert dict(_one(dom, "form").attributes)["action"] == "/accounts/login/"
    assert _one(dom, "input", name="username")
    assert _one(dom, "input", name="password", type="password")
    assert "Django administration" not in response.content.decode()


def test_logging_out_takes_a_post_and_ends_the_session(client, alice):
    client.force_login(alice)

    on_get = client.get("/accounts/logout/")
    assert on_get.status_code == 405
    assert client.get("/").status_code == 200  # still logged in
    logged_out = client.post("/accounts/logout/")
    after = client.get("/")

    assert logged_out.status_code == 302
    assert logged_out["Location"] == "/accounts/login/"
    assert after.status_code == 302
    assert after["Location"] == "/accounts/login/?next=/"


def test_the_chat_page_offers_logging_out_and_changing_the_password(client, alice):
    client.force_login(alice)

    response = client.get("/")

    account = _one(_dom(response), "div", class_="account")
    assert "alice" in _text(account)
    assert _find(account, "a", href="/accounts/password_change/")
    logout = _one(account, "form", action="/accounts/logout/")
    assert dict(logout.attributes)["method"] == "post"
    assert _find(logout, "input", name="csrfmiddlewaretoken")


def test_the_password_change_pages_are_ours_and_change_the_password(client, alice):
    alice.set_password(PASSWORD)
    alice.save()
    client.force_login(alice)

    form = client.get("/accounts/password_change/")
    changed = client.post(
        "/accounts/password_change/",
        {
            "old_password": PASSWORD,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    done = client.get(changed["Location"])

    assert form.status_code == 200
    dom = _dom(form)
    assert _text(_one(dom, "title")) == "Change password · SSE relay"
    assert _text(_one(dom, "h1")) == "Change password"
    for name in ("old_password", "new_password1", "new_password2"):
        assert _one(dom, "input", name=name)
    assert changed.status_code == 302
    assert changed["Location"] == "/accounts/password_change/done/"
    assert done.status_code == 200
    assert _text(_one(_dom(done), "title")) == "Password changed · SSE relay"
    assert _text(_one(_dom(done), "h1")) == "Password changed"
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)
    assert not alice.check_password(PASSWORD)
    assert client.get("/").status_code == 200  # the session survived the change


def test_a_wrong_old_password_changes_nothing(client, alice):
    alice.set_password(PASSWORD)
    alice.save()
    client.force_login(alice)

    response = client.post(
        "/accounts/password_change/",
        {
            "old_password": "not it",
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )

    assert response.status_code == 200
    assert _find(_dom(response), "p", class_="form-error")
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


# --------------------------------------------------------------------------- chat page


def test_the_chat_page_lists_only_the_users_conversations_newest_first(
    client, alice, bob
):
    now = timezone.now()
    old = _conversation(alice, "Old one", updated_at=now - timedelta(days=2))
    new = _conversation(alice, "New one", updated_at=now)
    middle = _conversation(alice, "Middle", updated_at=now - timedelta(days=1))
    _conversation(bob, "Bob's secret plans", updated_at=now)
    client.force_login(alice)

    response = client.get("/")

    assert response.status_code == 200
    assert _sidebar(response) == [
        ("New one", f"/c/{new.pk}/"),
        ("Middle", f"/c/{middle.pk}/"),
        ("Old one", f"/c/{old.pk}/"),
    ]
    assert "Bob's secret plans" not in response.content.decode()
    assert _text(_one(_dom(response), "h1")) == "New chat"


def test_a_user_without_conversations_sees_placeholders(client, alice, bob):
    _conversation(bob, "Bob's")
    client.force_login(alice)

    response = client.get("/")

    assert response.status_code == 200
    assert _sidebar(response) == []
    assert _text(_one(_dom(response), "li", class_="empty")) == "No conversations yet."
    assert _one(_dom(response), "li", id="placeholder")
    assert _shown_messages(response) == []


def test_a_conversation_page_shows_its_messages_and_how_each_answer_ended(
    client, alice, make_log
):
    other = _conversation(alice, "Other")
    chat = _conversation(alice, "Tides")
    _say(chat, "What causes tides?")
    done = _answer(chat, make_log, response="The **Moon**'s gravity.")
    _say(chat, "And the Sun?")
    stopped = _answer(
        chat,
        make_log,
        response="Partly, the",
        status=StreamLog.Status.CANCELLED,
        error_code="stopped",
        error_message=STOPPED,
    )
    _say(chat, "Go on <please>")
    failed = _answer(
        chat,
        make_log,
        response="",
        status=StreamLog.Status.ERROR,
        error_code="rate_limited",
        error_message=RATE_LIMITED,
    )
    _say(other, "Not in this chat")
    client.force_login(alice)

    response = client.get(f"/c/{chat.pk}/")

    assert response.status_code == 200
    dom = _dom(response)
    assert _text(_one(dom, "h1")) == "Tides"
    assert _text(_one(dom, "title")) == "Tides · SSE relay"
    assert _shown_messages(response) == [
        {"role": "user", "body": "What causes tides?"},
        {
            "role": "assistant",
            "body": "The **Moon**'s gravity.",
            "status": "completed",
            "state": "",
            "error": None,
        },
        {"role": "user", "body": "And the Sun?"},
        {
            "role": "assistant",
            "body": "Partly, the",
            "status": "cancelled",
            "state": "Stopped",
            "error": STOPPED,
        },
        {"role": "user", "body": "Go on <please>"},
        {
            "role": "assistant",
            "body": "",
            "status": "error",
            "state": "",
            "error": RATE_LIMITED,
        },
    ]
    ids = [
        dict(li.attributes).get("data-stream-id")
        for li in _find(_one(dom, "ol", id="messages"), "li", class_="assistant")
    ]
    assert ids == [str(m.stream_id) for m in (done, stopped, failed)]
    assert "Go on &lt;please&gt;" in response.content.decode()  # escaped
    current = _one(_one(dom, "ul", id="conversations"), "li", class_="current")
    assert _text(current) == "Tides"
    assert "Not in this chat" not in response.content.decode()


def test_a_stored_reasoning_shows_folded_as_escaped_plain_text(client, alice, make_log):
    chat = _conversation(alice, "Thoughts")
    _say(chat, "Why?")
    reasoning = "Weigh <script>alert(1)</script>\n  then & so."
    _answer(chat, make_log, response="Because.", reasoning=reasoning)
    _say(chat, "And?")
    _answer(chat, make_log, response="No reasoning here.")
    client.force_login(alice)

    response = client.get(f"/c/{chat.pk}/")

    dom = _dom(response)
    answers = _find(_one(dom, "ol", id="messages"), "li", class_="assistant")
    blocks = [_one(item, "details", class_="thinking") for item in answers]
    # Closed (no `open`), and hidden when there is nothing to show.
    assert [dict(block.attributes) for block in blocks] == [
        {"class": "thinking"},
        {"class": "thinking", "hidden": None},
    ]
    assert [_text(_one(block, "summary")) for block in blocks] == ["Thinking"] * 2
    page = response.content.decode()
    assert (
        '<details class="thinking"><summary>Thinking</summary>'
        '<div class="thinking-body">Weigh &lt;script&gt;alert(1)&lt;/script&gt;\n'
        "  then &amp; so.</div></details>"
    ) in page
    assert "<script>alert(1)" not in page
    # New answers start from the template's block: hidden and empty.
    template = _one(dom, "template", id="message-template")
    block = _one(template, "details", class_="thinking")
    assert dict(block.attributes) == {"class": "thinking", "hidden": None}
    assert _text(_one(block, "div", class_="thinking-body")) == ""


def test_another_users_conversation_is_not_found(client, alice, bob, make_log):
    theirs = _conversation(bob, "Bob's secret plans")
    _say(theirs, "The plan is")
    client.force_login(alice)

    response = client.get(f"/c/{theirs.pk}/")

    assert response.status_code == 404
    assert "secret plans" not in response.content.decode()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/c/999999999999999999/"),  # 18 digits: a valid id nobody has
        ("get", "/c/9223372036854775807/"),  # the largest 64-bit id, 19 digits
        ("get", "/c/1234567890123456789/"),
        ("get", "/c/99999999999999999999999999/"),
        ("post", "/c/999999999999999999/rename"),
        ("post", "/c/1234567890123456789/rename"),
        ("post", "/c/1234567890123456789/delete"),
    ],
)
def test_an_unknown_or_too_long_id_is_not_found(client, alice, method, path):
    _conversation(alice, "Tides")
    client.force_login(alice)

    response = getattr(client, method)(path, {"title": "x"})

    assert response.status_code == 404
    assert Conversation.objects.get().title == "Tides"


# --------------------------------------------------------------------------- model picker


def _picker(response) -> list[tuple[str, str, str, bool]]:
    """The options of the model picker: (group, value, label, selected)."""
    options = []
    for group in _find(_one(_dom(response), "select", id="model-picker"), "optgroup"):
        label = dict(group.attributes)["label"]
        for option in _find(group, "option"):
            attributes = dict(option.attributes)
            options.append(
                (label, attributes["value"], _text(option), "selected" in attributes)
            )
    return options


def _configure(settings, *, openai: str = "", anthropic: str = "", demo: bool):
    settings.OPENAI_API_KEY = openai
    settings.ANTHROPIC_API_KEY = anthropic
    settings.DEMO_PROVIDER = demo
    settings.DEFAULT_PROVIDER = ""
    settings.OPENAI_MODEL = "gpt-4o-mini"
    settings.OPENAI_MODELS = ["gpt-4o-mini", "gpt-4o"]
    settings.ANTHROPIC_MODEL = "claude-sonnet-4-5"
    settings.ANTHROPIC_MODELS = ["claude-sonnet-4-5"]


def test_the_model_picker_offers_only_configured_providers(client, settings, alice):
    _configure(settings, openai="sk-picker-secret", demo=True)
    client.force_login(alice)

    response = client.get("/")

    assert response.status_code == 200
    assert _picker(response) == [
        ("OpenAI", "openai:gpt-4o-mini", "gpt-4o-mini", True),
        ("OpenAI", "openai:gpt-4o", "gpt-4o", False),
        ("Demo (offline)", "demo:demo", "demo — demo, no real model", False),
    ]
    assert not _find(_dom(response), "p", class_="demo-banner")
    assert "sk-picker-secret" not in response.content.decode()


def test_the_model_picker_follows_the_settings(client, settings, alice):
    _configure(settings, anthropic="sk-ant-secret", demo=False)
    settings.DEFAULT_PROVIDER = "anthropic"
    client.force_login(alice)

    response = client.get("/")

    assert _picker(response) == [
        ("Anthropic", "anthropic:claude-sonnet-4-5", "claude-sonnet-4-5", True),
    ]
    assert not _find(_dom(response), "p", class_="demo-banner")
    assert "sk-ant-secret" not in response.content.decode()


@pytest.mark.parametrize("demo", [True, False])
def test_the_demo_banner_shows_when_the_demo_is_the_only_provider(
    client, settings, alice, demo
):
    # Without any key the demo is offered even when DEMO_PROVIDER is off.
    _configure(settings, demo=demo)
    client.force_login(alice)

    response = client.get("/")

    assert _picker(response) == [
        ("Demo (offline)", "demo:demo", "demo — demo, no real model", True)
    ]
    banner = _one(_dom(response), "p", class_="demo-banner")
    assert "Demo mode." in _text(banner)


# --------------------------------------------------------------------------- page data


@pytest.mark.parametrize("in_conversation", [False, True])
def test_the_page_data_names_the_conversation_and_the_streams_url(
    client, alice, in_conversation
):
    chat = _conversation(alice, "</script><script>alert(1)</script>")
    client.force_login(alice)

    response = client.get(f"/c/{chat.pk}/" if in_conversation else "/")

    assert response.status_code == 200
    assert _page_data(response) == {
        "conversationId": chat.pk if in_conversation else None,
        "streamsUrl": "/streams/",
    }
    assert "<script>alert(1)" not in response.content.decode()


@pytest.mark.parametrize("in_conversation", [False, True])
def test_the_page_has_no_inline_script_but_its_json(
    client, alice, make_log, in_conversation
):
    chat = _conversation(alice, "Scripts")
    _say(chat, "hi")
    _answer(chat, make_log)
    client.force_login(alice)

    response = client.get(f"/c/{chat.pk}/" if in_conversation else "/")

    scripts = [dict(s.attributes) for s in _find(_dom(response), "script")]
    inline = [s for s in scripts if "src" not in s]
    assert inline == [{"id": "page-data", "type": "application/json"}]
    assert [s for s in scripts if "src" in s] == [
        {"type": "module", "src": "/static/streaming/chat.js"}
    ]
    handlers = [
        name
        for element in _elements(_dom(response))
        for name, _ in element.attributes
        if name.startswith("on")
    ]
    assert handlers == []


# --------------------------------------------------------------------------- rename


@pytest.mark.parametrize("action", ["rename", "delete"])
def test_rename_and_delete_take_only_a_post(client, alice, action):
    chat = _conversation(alice, "Tides")
    client.force_login(alice)

    response = client.get(f"/c/{chat.pk}/{action}", {"title": "Changed"})

    assert response.status_code == 405
    assert Conversation.objects.get(pk=chat.pk).title == "Tides"


@pytest.mark.parametrize("action", ["rename", "delete"])
def test_rename_and_delete_need_a_csrf_token(alice, action):
    chat = _conversation(alice, "Tides")
    _say(chat, "hi")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)

    refused = browser.post(f"/c/{chat.pk}/{action}", {"title": "Forged"})

    assert refused.status_code == 403
    assert Conversation.objects.get(pk=chat.pk).title == "Tides"
    assert chat.messages.count() == 1
    # The same request with the page's token goes through.
    token = _csrf_token(browser, f"/c/{chat.pk}/")
    accepted = browser.post(
        f"/c/{chat.pk}/{action}", {"title": "Renamed", "csrfmiddlewaretoken": token}
    )
    assert accepted.status_code == 302
    if action == "rename":
        assert Conversation.objects.get(pk=chat.pk).title == "Renamed"
    else:
        assert not Conversation.objects.filter(pk=chat.pk).exists()


@pytest.mark.parametrize("action", ["rename", "delete"])
def test_rename_and_delete_need_a_login(client, alice, action):
    chat = _conversation(alice, "Tides")

    response = client.post(f"/c/{chat.pk}/{action}", {"title": "Changed"})

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next=/c/{chat.pk}/{action}"
    assert Conversation.objects.get(pk=chat.pk).title == "Tides"


@pytest.mark.parametrize("action", ["rename", "delete"])
def test_rename_and_delete_of_another_users_conversation_are_not_found(
    client, alice, bob, make_log, action
):
    theirs = _conversation(bob, "Bob's")
    _say(theirs, "hi")
    _answer(theirs, make_log)
    client.force_login(alice)

    response = client.post(f"/c/{theirs.pk}/{action}", {"title": "Mine now"})

    assert response.status_code == 404
    assert Conversation.objects.get(pk=theirs.pk).title == "Bob's"
    assert theirs.messages.count() == 2
    assert StreamLog.objects.get().conversation_id == theirs.pk


def test_rename_changes_the_title(client, alice):
    chat = _conversation(alice, "Tides")
    updated_at = chat.updated_at
    client.force_login(alice)

    response = client.post(f"/c/{chat.pk}/rename", {"title": "  Moon and tides  "})

    assert response.status_code == 302
    assert response["Location"] == f"/c/{chat.pk}/"
    chat.refresh_from_db()
    assert chat.title == "Moon and tides"
    assert chat.updated_at == updated_at
    assert _sidebar(client.get(response["Location"])) == [
        ("Moon and tides", f"/c/{chat.pk}/")
    ]


@pytest.mark.parametrize("title", ["", "   ", "x" * 201, None])
def test_rename_with_an_empty_or_too_long_title_changes_nothing(client, alice, title):
    chat = _conversation(alice, "Tides")
    client.force_login(alice)

    response = client.post(
        f"/c/{chat.pk}/rename", {} if title is None else {"title": title}
    )

    assert response.status_code == 302
    assert response["Location"] == f"/c/{chat.pk}/"
    assert Conversation.objects.get(pk=chat.pk).title == "Tides"


def test_a_title_of_the_maximum_length_is_accepted(client, alice):
    chat = _conversation(alice, "Tides")
    client.force_login(alice)

    client.post(f"/c/{chat.pk}/rename", {"title": "x" * 200})

    assert Conversation.objects.get(pk=chat.pk).title == "x" * 200


# --------------------------------------------------------------------------- delete


def test_delete_removes_the_conversation_and_its_messages_but_keeps_the_logs(
    client, alice, make_log
):
    chat = _conversation(alice, "Tides")
    _say(chat, "What causes tides?")
    answer = _answer(chat, make_log, response="The Moon.")
    kept = _conversation(alice, "Kept")
    _say(kept, "Stay")
    _answer(kept, make_log)
    client.force_login(alice)

    response = client.post(f"/c/{chat.pk}/delete")

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert not Conversation.objects.filter(pk=chat.pk).exists()
    assert not Message.objects.filter(conversation_id=chat.pk).exists()
    log = StreamLog.objects.get(pk=answer.stream_id)
    assert (log.conversation_id, log.user_id, log.response) == (
        None,
        alice.pk,
        "The Moon.",
    )
    assert kept.messages.count() == 2
    assert StreamLog.objects.filter(conversation=kept).count() == 1
    assert _sidebar(client.get("/")) == [("Kept", f"/c/{kept.pk}/")]
    assert client.get(f"/c/{chat.pk}/").status_code == 404
