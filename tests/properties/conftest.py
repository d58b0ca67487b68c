"""The world every property test runs in: offline providers, a cast with streams,
conversations and tokens, and the clients that call as each of them."""

from types import SimpleNamespace

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission
from django.test import AsyncClient, Client
from django.utils import timezone

from streaming.models import Conversation, Message, StreamLog
from tests.helpers import free_port
from tests.properties.support import (
    MAX_PROMPT,
    bearer,
)


@pytest.fixture(autouse=True)
def _offline_providers(settings, provider_key):
    """Every provider is configured, with the session's secret key; the SDK ones point
    at a port where nothing listens (a started stream fails at once, offline), and the
    demo answers without pauses."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings.OPENAI_API_KEY = settings.ANTHROPIC_API_KEY = provider_key
    settings.OPENAI_BASE_URL = f"{nowhere}/v1"
    settings.ANTHROPIC_BASE_URL = nowhere
    settings.OPENAI_MODEL, settings.OPENAI_MODELS = "gpt-4o-mini", ["gpt-4o-mini"]
    settings.ANTHROPIC_MODEL, settings.ANTHROPIC_MODELS = "claude-test", ["claude-test"]
    settings.DEMO_PROVIDER = True
    settings.DEFAULT_PROVIDER = ""
    settings.DEMO_TOKEN_DELAY_MS = 0
    settings.PROVIDER_MAX_RETRIES = 0
    settings.PROVIDER_CONNECT_TIMEOUT_SECONDS = 2
    settings.MAX_PROMPT_CHARS = MAX_PROMPT
    # "alice live" below stays in flight: no lease reaper may end it mid-test.
    settings.STREAM_LEASE_SECONDS = 3600


@pytest.fixture
def erin(django_user_model):
    """Erin is staff who may view stream logs, and not stop them."""
    user = django_user_model.objects.create_user(
        "erin", "erin@example.com", is_staff=True
    )
    user.user_permissions.add(Permission.objects.get(codename="view_streamlog"))
    return user


@pytest.fixture
def world(alice, bob, charlie, dave, erin, make_token, make_log) -> SimpleNamespace:
    """Alice's finished, failed, stopped and in-flight streams, Bob's stream, a
    conversation each, and the tokens of all (one of Alice's revoked): staff who may
    view and stop anyone's streams (Charlie), only view them (Erin), or neither (Dave).
    """
    alice_chat = Conversation.objects.create(owner=alice, title="Alice's chat")
    alice_chat.messages.create(role=Message.Role.USER, content="Say hello")
    logs = {
        "alice done": make_log(
            alice, conversation=alice_chat, response="Hello, Alice!\n😀 ok"
        ),
        "alice error": make_log(
            alice,
            status=StreamLog.Status.ERROR,
            error_code="unavailable",
            error_message="The model provider is unavailable; try again shortly.",
            response="Hel",
        ),
        "alice cancelled": make_log(
            alice,
            status=StreamLog.Status.CANCELLED,
            error_code="stopped",
            error_message="The answer was stopped.",
            response="",
        ),
        # In flight on some other process: nothing here generates it.
        "alice live": make_log(
            alice, status=StreamLog.Status.STREAMING, response="Hel"
        ),
        "bob done": make_log(bob, response="Hello, Bob!"),
    }
    alice_chat.messages.create(role=Message.Role.ASSISTANT, stream=logs["alice done"])
    bob_chat = Conversation.objects.create(owner=bob, title="Bob's chat")
    bob_chat.messages.create(role=Message.Role.USER, content="Hi")
    tokens = {
        "alice": make_token(alice),
        "alice revoked": make_token(alice, revoked_at=timezone.now()),
        "bob": make_token(bob),
        "charlie": make_token(charlie),
        "dave": make_token(dave),
        "erin": make_token(erin),
    }
    return SimpleNamespace(
        users={
            "alice": alice,
            "bob": bob,
            "charlie": charlie,
            "dave": dave,
            "erin": erin,
        },
        logs=logs,
        tokens=tokens,
        alice_chat=alice_chat,
        bob_chat=bob_chat,
    )


@pytest.fixture
def secrets(world, provider_key) -> list[str]:
    """What no response may contain."""
    return [provider_key, django_settings.SECRET_KEY, *world.tokens.values()]


@pytest.fixture
def callers(world) -> dict[str, tuple[AsyncClient, dict[str, str], str | None]]:
    """name -> (client, headers, user name): three tokens, and Alice's session from
    our own pages, with and without Django's CSRF check enforced."""
    session = AsyncClient()
    session.force_login(world.users["alice"])
    checked = AsyncClient(enforce_csrf_checks=True)
    checked.force_login(world.users["alice"])
    checked.cookies[django_settings.CSRF_COOKIE_NAME] = csrf = "c" * 32
    nobody = AsyncClient(enforce_csrf_checks=True)
    nobody.cookies[django_settings.CSRF_COOKIE_NAME] = csrf
    same_origin = {"Sec-Fetch-Site": "same-origin"}
    return {
        "alice token": (AsyncClient(), bearer(world.tokens["alice"]), "alice"),
        "bob token": (AsyncClient(), bearer(world.tokens["bob"]), "bob"),
        "charlie token": (AsyncClient(), bearer(world.tokens["charlie"]), "charlie"),
        "dave token": (AsyncClient(), bearer(world.tokens["dave"]), "dave"),
        "erin token": (AsyncClient(), bearer(world.tokens["erin"]), "erin"),
        "alice session": (session, same_origin, "alice"),
        # The CSRF check reads a form body for its token before the view does.
        "alice checked": (checked, {**same_origin, "X-CSRFToken": csrf}, "alice"),
        "nobody checked": (nobody, {}, None),
    }


@pytest.fixture
def browsers(world) -> dict[str, Client]:
    """Django's test client logged in as Alice, as Bob, and as nobody."""
    clients = {name: Client() for name in ("alice", "bob", "anonymous")}
    clients["alice"].force_login(world.users["alice"])
    clients["bob"].force_login(world.users["bob"])
    return clients
