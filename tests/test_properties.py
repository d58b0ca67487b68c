"""Properties of every endpoint over generated inputs (hypothesis), in-process.

Whatever a client sends (prompts with NUL, control characters or lone surrogates,
prompts far over MAX_PROMPT_CHARS, random provider and model names, ids, Last-Event-IDs,
JSON and form bodies, content types and charsets, credentials, origins and methods),
each endpoint gives its normal answer or a 4xx whose body is JSON with "error" and
"message": never a 500 or a traceback, never a provider key, SECRET_KEY or API token,
and a refused request changes no row.

The API goes through Django's AsyncClient inside `async_to_sync`, one event loop per
request: a stream the request starts is generated in that loop and is waited for
before the loop ends, so no task outlives its example and the next example sees
settled rows. The tests are transactional because a generation writes its row on its
own connection. A view that raises re-raises here (the test clients' default), with
its traceback; hypothesis then shrinks the input.
"""

import asyncio
import codecs
import json
import operator
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from urllib.parse import quote, quote_from_bytes, urlsplit

import hypothesis
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.http import QueryDict
from django.test import AsyncClient, Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.utils import timezone
from django.utils.http import parse_header_parameters
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from streaming import providers
from streaming.models import ApiToken, Conversation, Message, StreamLog
from tests.helpers import free_port, parse_sse, token_text

pytestmark = pytest.mark.django_db(transaction=True)

MAX_PROMPT = 100  # MAX_PROMPT_CHARS here, so ordinary text crosses it
HOST = "http://testserver"
NUMBER = re.compile(r"[0-9]{1,15}\Z")  # an offset or a stream id in Last-Event-ID
ROUTED_ID = re.compile(r"[0-9]{1,18}\Z")  # what the URL converter takes
TRACEBACK = ("Traceback", 'File "')
LOG_NAMES = ["alice done", "alice error", "alice cancelled", "alice live", "bob done"]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def examples(count: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=count,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
        ],
    )


# --------------------------------------------------------------------------- fixtures


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
def world(alice, bob, charlie, make_token, make_log) -> SimpleNamespace:
    """Alice's finished, failed, stopped and in-flight streams, Bob's stream, a
    conversation each, and the tokens of all three (one of Alice's revoked)."""
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
    }
    return SimpleNamespace(
        users={"alice": alice, "bob": bob, "charlie": charlie},
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


# --------------------------------------------------------------------------- strategies


def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """One of the strategies, chosen in proportion to its weight (st.one_of would
    weigh each branch of a nested one_of as much as a whole strategy)."""
    return st.sampled_from(
        [strategy for weight, strategy in choices for _ in range(weight)]
    ).flatmap(lambda strategy: strategy)


def _harmless(text: str) -> bool:
    """Input the relay may echo (a quoted prompt, an unknown provider's name) must not
    look like what the checks forbid."""
    return not any(
        marker in text for marker in (*TRACEBACK, django_settings.SECRET_KEY)
    )


# Everything a str can hold: NUL, control characters, lone surrogates, emoji.
TEXT = st.text(st.characters(exclude_categories=()), max_size=30).filter(_harmless)
# What an HTTP server hands over as a header value: latin-1 without NUL, CR and LF
# (daphne refuses those three).
HEADER_TEXT = st.text(
    st.characters(max_codepoint=0xFF, exclude_characters="\x00\r\n"), max_size=30
).filter(_harmless)
PROMPTS = st.one_of(
    TEXT,
    st.text(min_size=1, max_size=40).filter(_harmless),  # mostly fine prompts
    st.sampled_from(
        ["", " ", "\t\r\n ", "\x00", "hi\x00", "\ud800", "hi \udfff", "\x1b[2J\x07"]
        + ["Hello", "Say hi 😀", "line\r\nbreak"]
    ),
    # Either side of the limit, in characters of every width.
    st.builds(
        operator.mul,
        st.sampled_from(["a", "é", "😀", " ", "\x00", "\ud800"]),
        st.integers(MAX_PROMPT - 2, MAX_PROMPT + 2),
    ),
    st.builds(operator.mul, st.just("x"), st.sampled_from([10_000, 100_000])),
)
PROVIDERS = st.one_of(
    st.sampled_from(["demo", "openai", "anthropic", "", " demo ", "Demo", "demo\x00"]),
    TEXT,
)
MODELS = st.one_of(
    st.sampled_from(
        ["demo", "gpt-4o-mini", "claude-test", "", " demo", "gpt-4o", "m" * 129]
    ),
    TEXT,
)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3)
    ),
    max_leaves=6,
)
NUMBERS = st.one_of(
    st.integers(0, 25), st.integers(0, 10**25), st.integers(-(10**6), -1)
).map(str)
# Last-Event-ID values: a header is latin-1, a query parameter anything at all.
HEADER_OFFSETS = st.one_of(
    NUMBERS,
    HEADER_TEXT,
    st.sampled_from(["", "0", "00", "-1", "1.5", "0x1", " 1", "1 ", "+1", "1e3", "²"]),
)
QUERY_OFFSETS = HEADER_OFFSETS | TEXT | st.sampled_from(["١", "𝟙", "1\x00"])
STREAM_REFS = st.sampled_from([*LOG_NAMES, "missing"])
CHARSETS = st.sampled_from(
    ["", "; charset=utf-8", "; charset=UTF-8", "; charset=latin-1", "; charset=utf-16"]
    + ["; charset=rot13", "; charset=base64", "; charset=no-such-codec"]
)
ASCII_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
CONTENT_TYPES = st.one_of(
    st.sampled_from(
        ["", "text/plain", "application/octet-stream", "application/JSON"]
        + ["multipart/form-data", "multipart/form-data; boundary=", "text/event-stream"]
        + ["application/x-www-form-urlencoded", "application/json; charset=latin-1"]
    ),
    ASCII_TEXT,
)
ORIGINS = st.one_of(
    st.sampled_from(
        [HOST, HOST + "/", "https://testserver", "http://testserver:80", "null", ""]
        + ["http://[", "http://[::1", "http://[abc]/", "http://]", "//testserver"]
        + ["http://evil.example", "http://testserver.evil.example", "http://a b"]
    ),
    st.builds(
        "{}://{}{}".format, st.sampled_from(["http", "https"]), HEADER_TEXT, HEADER_TEXT
    ),
    HEADER_TEXT,
)
# Ids in URLs: numbers the converter takes (to 18 digits), and segments it does not.
SEGMENTS = st.one_of(
    st.integers(0, 10**18 - 1).map(str),
    st.integers(10**18, 10**40).map(str),
    st.sampled_from(["-1", "0", "00", "1.0", "1e3", "0x1", "١", "", " 1", "%", "1/2"]),
    TEXT,
)


def json_body(value: object, encoding: str) -> bytes:
    if encoding == "ascii":
        return json.dumps(value).encode()
    text = json.dumps(value, ensure_ascii=False)
    return text.encode(
        "utf-8" if encoding == "surrogatepass" else encoding, "surrogatepass"
    )


def urlencoded(fields: Mapping[str, str]) -> bytes:
    """A form body; a lone surrogate goes as the bytes of its (invalid) UTF-8 form."""
    return "&".join(
        f"{quote(name)}={quote_from_bytes(value.encode('utf-8', 'surrogatepass'), '')}"
        for name, value in fields.items()
    ).encode()


@st.composite
def start_bodies(draw) -> tuple[bytes, str, dict | int | None]:
    """(body, content type, what POST /streams/ makes of it): the form fields it
    reads, the status a body that cannot be read gets, or None when only the general
    properties apply."""
    kind = draw(
        st.sampled_from(
            ["json", "json", "json", "json value", "form", "form", "bytes", "multipart"]
            + ["multipart", "other", "other", "conversation", "too large"]
        )
    )
    fields = draw(
        st.fixed_dictionaries(
            {"prompt": PROMPTS},
            optional={
                "provider": PROVIDERS,
                "model": MODELS,
                "note": TEXT,
            },
        )
    )
    if kind in ("json", "json value", "conversation"):
        if kind == "json value":
            value = draw(JSON_VALUES)
        else:
            for name in list(fields):
                if draw(st.integers(0, 3)) == 0:
                    fields[name] = draw(JSON_VALUES)
            value = fields
        if kind == "conversation":
            value["conversation"] = draw(
                st.sampled_from(["own", "bob's"]) | NUMBERS | JSON_VALUES
            )
            value["regenerate"] = draw(JSON_VALUES)
        encoding = draw(st.sampled_from(["ascii", "utf-8", "utf-16", "surrogatepass"]))
        content_type = "application/json" + draw(CHARSETS)
        return json_body(value, encoding), content_type, None  # judged once resolved
    if kind == "form":
        body = urlencoded(fields)
        content_type = "application/x-www-form-urlencoded" + draw(CHARSETS)
        return body, content_type, form_seen(body, content_type)
    if kind == "multipart":
        clean = {
            k: v
            for k, v in fields.items()
            if v == v.encode("utf-8", "replace").decode() and BOUNDARY not in v
        }
        body = encode_multipart(BOUNDARY, clean)
        if draw(st.booleans()):
            return body, MULTIPART_CONTENT, clean
        # A charset the parser may not know, or a body cut short.
        charset = draw(CHARSETS)
        return (
            body[: draw(st.integers(0, len(body)))],
            MULTIPART_CONTENT + charset,
            None,
        )
    if kind == "too large":
        size = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
        media = draw(
            st.sampled_from(["application/json", "application/x-www-form-urlencoded"])
        )
        return b"prompt=" + b"x" * size, media, 413
    body = draw(st.binary(max_size=60))
    if kind == "bytes":
        return body, "application/json" + draw(CHARSETS), None
    content_type = draw(CONTENT_TYPES)
    media, _ = parse_header_parameters(content_type)
    if media in ("application/json", "application/x-www-form-urlencoded") or (
        media.startswith("multipart/")
    ):
        return body, content_type, None
    return body, content_type, {}  # not a body the view reads: no fields at all


# --------------------------------------------------------------------------- oracles


def form_seen(body: bytes, content_type: str) -> dict | int:
    """What Django makes of an urlencoded body: its fields, or 400 for a charset other
    than UTF-8."""
    _, params = parse_header_parameters(content_type)
    charset = params.get("charset")
    if charset and charset.lower() != "utf-8" and _known_codec(charset):
        return 400
    return QueryDict(body).dict()


def _known_codec(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def json_seen(body: bytes) -> dict | int:
    """What POST /streams/ makes of a JSON body: fields as a form sees them, or 400."""
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        return 400
    if not isinstance(data, dict):
        return 400
    return {name: _as_form_value(value) for name, value in data.items()}


def _as_form_value(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else ""
    if isinstance(value, str | int):
        return str(value)
    return None


def start_outcome(fields: Mapping[str, str | None]) -> int:
    """What a start with these form fields answers: 201 (it starts), 400 or 413."""
    prompt = fields.get("prompt") or ""
    refused = False
    if "\x00" in prompt:
        refused = True
    elif len(prompt) > MAX_PROMPT:
        return 413  # before anything else is looked at
    elif not _encodable(prompt) or not prompt.strip():
        refused = True
    provider_name = (fields.get("provider") or "").strip()
    if "\x00" in provider_name:
        return 400
    name = provider_name or providers.default_name()
    provider = providers.get(name)
    if provider is None:
        return 400
    model = (fields.get("model") or "").strip()
    if "\x00" in model or len(model) > 128:
        return 400
    if (model or provider.default_model) not in provider.models:
        return 400
    return 400 if refused else 201


def chosen(fields: Mapping[str, str | None]) -> tuple[str, str]:
    name = (fields.get("provider") or "").strip() or providers.default_name()
    model = (fields.get("model") or "").strip() or providers.get(name).default_model
    return name, model


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def seen_in_query(value: str) -> str:
    """A query value as the view reads it (invalid UTF-8 becomes U+FFFD)."""
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def query(**params: str | None) -> str:
    return "&".join(
        f"{name}={quote_from_bytes(value.encode('utf-8', 'surrogatepass'), '')}"
        for name, value in params.items()
        if value is not None
    )


def visible(log: StreamLog | None, user) -> bool:
    return log is not None and (log.user_id == user.pk or user.is_staff)


def replay_outcome(log: StreamLog, offset: str | None) -> int:
    """Following a stream the caller may read, after the client's last event id
    (None: a first connection): 400, 204 (a reconnect with nothing left) or 200."""
    known = len(log.response) if log.is_finished else None
    after = "0" if offset is None else offset
    if not NUMBER.match(after) or (known is not None and int(after) > known):
        return 400
    if offset is not None and log.is_finished and int(after) == known:
        return 204
    return 200


def is_same_origin(headers: Mapping[str, str]) -> bool:
    """Whether a session GET /chat/stream comes from our own pages (README)."""
    if "Sec-Fetch-Site" in headers:
        return headers["Sec-Fetch-Site"] == "same-origin"
    source = headers.get("Origin") or headers.get("Referer")
    if not source:
        return False
    try:
        parts = urlsplit(source)
    except ValueError:
        return False
    return f"{parts.scheme}://{parts.netloc}" == HOST


# --------------------------------------------------------------------------- requests


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str
    complete: bool = True  # False when an event stream was still open at the deadline

    def json(self) -> object:
        return json.loads(self.body)

    def events(self):
        return parse_sse(self.body)[0]

    def everything(self) -> str:
        return "\n".join([*(f"{k}: {v}" for k, v in self.headers.items()), self.body])


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def fetch(
    client: AsyncClient | Client,
    method: str,
    path: str,
    body: bytes = b"",
    content_type: str = "application/octet-stream",
    *,
    headers: Mapping[str, str] | None = None,
    read_seconds: float = 5,
) -> Answer:
    """One request, its body read (an event stream until it ends or for
    `read_seconds`), and every stream it started finished, all in one event loop."""
    if isinstance(client, Client):
        response = client.generic(
            method, path, body, content_type, headers=dict(headers or {})
        )
        return Answer(
            response.status_code, dict(response.items()), _text(response.content)
        )

    async def run() -> Answer:
        newest = (
            await StreamLog.objects.order_by("-pk")
            .values_list("pk", flat=True)
            .afirst()
        )
        response = await client.generic(
            method, path, body, content_type, headers=dict(headers or {})
        )
        complete = True
        if response.streaming:
            content, complete = await _drain(response, read_seconds)
        else:
            content = response.content
        await _settled(newest)
        return Answer(
            response.status_code, dict(response.items()), _text(content), complete
        )

    return async_to_sync(run)()


def _text(content: bytes) -> str:
    return content.decode("utf-8", "replace")


async def _drain(response, seconds: float) -> tuple[bytes, bool]:
    chunks = []
    stream = response.streaming_content
    try:
        async with asyncio.timeout(seconds):
            async for chunk in stream:
                chunks.append(chunk)
    except TimeoutError:
        return b"".join(chunks), False
    return b"".join(chunks), True


async def _settled(newest: int | None, timeout: float = 10) -> None:
    """Wait for the streams this request started (rows after `newest`) to end: none
    may outlive the example."""
    deadline = time.monotonic() + timeout
    running = StreamLog.objects.in_flight().filter(pk__gt=newest or 0)
    while await running.aexists():
        assert time.monotonic() < deadline, "a started stream never finished"
        await asyncio.sleep(0.005)


def snapshot() -> tuple:
    """Every row a request could change, in a comparable form."""
    return (
        list(
            StreamLog.objects.order_by("pk").values_list(
                "pk",
                "user_id",
                "conversation_id",
                "provider",
                "model",
                "prompt",
                "response",
                "status",
                "error_code",
                "finished_at",
            )
        ),
        list(
            Conversation.objects.order_by("pk").values_list(
                "pk", "owner_id", "title", "updated_at"
            )
        ),
        list(
            Message.objects.order_by("pk").values_list(
                "pk", "conversation_id", "role", "content", "stream_id"
            )
        ),
        list(
            ApiToken.objects.order_by("pk").values_list("pk", "key_hash", "revoked_at")
        ),
    )


def check(answer: Answer, secrets: list[str]) -> None:
    """What holds for every answer of every endpoint."""
    hypothesis.note(f"answer: {answer.status} {answer.body[:500]!r}")
    hypothesis.event(f"status {answer.status}")
    assert answer.status < 500, answer
    seen = answer.everything()
    for secret in secrets:
        assert secret not in seen, "a secret reached the client"
    for marker in TRACEBACK:
        assert marker not in answer.body, answer


def check_api(answer: Answer, secrets: list[str], *, routed: bool = True) -> None:
    """…and for the API: 405 says what is allowed; any other refusal is JSON with a
    code and a message (but a URL the router does not know gets Django's 404 page)."""
    check(answer, secrets)
    if answer.status == 405:
        assert "Allow" in answer.headers
    elif answer.status >= 400 and routed:
        assert answer.headers["Content-Type"] == "application/json", answer
        error = answer.json()
        assert isinstance(error["error"], str) and error["error"]
        assert isinstance(error["message"], str) and error["message"].strip()


def check_stream(answer: Answer, *, stream_id: int, id_prefix: str = "") -> list:
    """An event stream: retry, meta, then tokens numbered by offset, ending in done or
    one error (when it was read to its end)."""
    assert answer.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert answer.body.startswith("retry: ")
    events = answer.events()
    assert events[0].event == "meta"
    assert json.loads(events[0].data)["stream_id"] == stream_id
    for event in events[1:]:
        assert event.event in ("token", "usage", "done", "error"), event
        if event.event == "token":
            assert event.id.startswith(id_prefix)
            assert NUMBER.match(event.id.removeprefix(id_prefix))
    if answer.complete:
        assert events[-1].event in ("done", "error"), events[-3:]
        if events[-1].event == "error":
            error = json.loads(events[-1].data)
            assert error["code"] and error["message"] and "retryable" in error
    return events


def stream_pk(world, name: str) -> int:
    return world.logs[name].pk if name != "missing" else 10**15 - 1


# --------------------------------------------------------------------------- the API


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


# Mostly streams that exist, at offsets around their lengths.
RESUMES = weighted(
    (4, st.tuples(STREAM_REFS, st.integers(0, 25).map(str))),
    (2, st.tuples(STREAM_REFS, HEADER_OFFSETS)),
    (1, st.tuples(NUMBERS, HEADER_OFFSETS).map(":".join)),
    (1, HEADER_TEXT),
    (1, st.sampled_from(["", ":", ":0", "0:0", "abc:0", "-1:0", "1:", "1::1", "²:0"])),
)


@examples(90)
@given(
    caller=st.sampled_from(
        ["alice token", "bob token", "charlie token", "alice session"]
    ),
    resume=RESUMES,
    resume_in=st.sampled_from(["header", "query", "both"]),
    other=st.none() | RESUMES,
    prompt=st.none() | PROMPTS,
)
def test_get_chat_stream_resumes_or_refuses_and_never_starts_a_second_stream(
    world, callers, secrets, caller, resume, resume_in, other, prompt
):
    """A Last-Event-ID (`<stream id>:<offset>`, in the header or ?last_event_id=)
    resumes that stream or is refused; it never starts one, whatever the prompt."""
    client, headers, user_name = callers[caller]
    user = world.users[user_name]
    resume, other = (
        f"{stream_pk(world, v[0])}:{v[1]}" if isinstance(v, tuple) else v
        for v in (resume, other)
    )
    headers = dict(headers)
    in_query = None
    if resume_in == "header":
        headers["Last-Event-ID"] = resume
    elif resume_in == "query":
        in_query = resume
    else:  # the header wins when it is not empty
        headers["Last-Event-ID"], in_query = resume, other
    path = "/chat/stream?" + query(prompt=prompt, last_event_id=in_query)
    # A header counts when it is not empty; a query parameter, even when it is.
    last_event_id = headers.get("Last-Event-ID") or (
        seen_in_query(in_query) if in_query is not None else None
    )
    hypothesis.assume(last_event_id is not None)  # else a start: the test above
    live = world.logs["alice live"]
    following_live = last_event_id.startswith(f"{live.pk}:")
    before = snapshot()

    answer = fetch(
        client, "GET", path, headers=headers, read_seconds=0.2 if following_live else 5
    )

    check_api(answer, secrets)
    assert snapshot() == before
    stream, _, offset = last_event_id.partition(":")
    if not NUMBER.match(stream):
        assert (answer.status, answer.json()["error"]) == (400, "bad_last_event_id")
        return
    log = StreamLog.objects.filter(pk=int(stream)).first()
    if not visible(log, user):
        assert (answer.status, answer.json()["error"]) == (404, "not_found")
        return
    expected = replay_outcome(log, offset)
    assert answer.status == expected, answer
    if expected == 400:
        assert answer.json()["error"] == "bad_last_event_id"
    elif expected == 200:
        events = check_stream(answer, stream_id=log.pk, id_prefix=f"{log.pk}:")
        if answer.complete:
            assert token_text(events) == log.response[int(offset) :]


@examples(150)
@given(
    caller=st.sampled_from(["alice token", "alice session", "alice checked"]),
    request_body=start_bodies(),
)
def test_post_streams_starts_or_refuses(world, callers, secrets, caller, request_body):
    client, headers, _ = callers[caller]
    alice = world.users["alice"]
    body, content_type, seen = request_body
    if seen is None and content_type.startswith("application/json"):
        # Resolve the symbolic conversation ids, then judge the body as the view will.
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError):
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


@examples(120)
@given(
    caller=st.sampled_from(
        ["alice token", "bob token", "charlie token", "alice session", "alice checked"]
    ),
    target=weighted((3, STREAM_REFS), (1, NUMBERS)),
    in_header=st.none() | HEADER_OFFSETS,
    in_query=st.none() | QUERY_OFFSETS,
)
def test_stream_events_replay_or_refuse(
    world, callers, secrets, caller, target, in_header, in_query
):
    client, headers, user_name = callers[caller]
    user = world.users[user_name]
    pk = int(target) if target.lstrip("-").isdigit() else stream_pk(world, target)
    headers = dict(headers)
    if in_header is not None:
        headers["Last-Event-ID"] = in_header
    path = f"/streams/{pk}/events"
    if in_query is not None:
        path += "?" + query(last_event_id=in_query)
    routed = ROUTED_ID.match(str(pk)) is not None
    live = pk == world.logs["alice live"].pk
    before = snapshot()

    answer = fetch(
        client, "GET", path, headers=headers, read_seconds=0.2 if live else 5
    )

    check_api(answer, secrets, routed=routed)
    assert snapshot() == before
    if not routed:
        assert answer.status == 404
        return
    log = StreamLog.objects.filter(pk=pk).first()
    if not visible(log, user):
        assert (answer.status, answer.json()["error"]) == (404, "not_found")
        return
    offset = in_header or (seen_in_query(in_query) if in_query is not None else None)
    expected = replay_outcome(log, offset)
    assert answer.status == expected, answer
    if expected == 400:
        assert answer.json()["error"] == "bad_last_event_id"
    elif expected == 204:
        assert answer.body == ""
    else:
        events = check_stream(answer, stream_id=log.pk)
        if answer.complete:
            assert token_text(events) == log.response[int(offset or 0) :]
            last = events[-1]
            if log.status == StreamLog.Status.COMPLETED:
                assert last.event == "done"
            else:
                assert json.loads(last.data)["code"] == log.error_code
        else:
            assert not log.is_finished


@examples(80)
@given(
    caller=st.sampled_from(
        ["alice token", "bob token", "charlie token", "alice session", "alice checked"]
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

    check_api(answer, secrets, routed=routed)
    # No stream runs in this process: stopping one elsewhere only sends a message.
    assert snapshot() == before
    if answer.status == 400:
        # A form body nobody can read is refused before anything else looks at it.
        media, _ = parse_header_parameters(content_type)
        assert media in ("multipart/form-data", "application/x-www-form-urlencoded")
        assert answer.json()["error"] == "bad_request"
        return
    log = StreamLog.objects.filter(pk=pk).first() if routed else None
    if not visible(log, user):
        assert answer.status == 404
    elif log.is_finished:
        assert (answer.status, answer.json()) == (200, {"id": pk, "status": log.status})
    else:
        assert (answer.status, answer.json()) == (202, {"id": pk, "status": "stopping"})


# None; (scheme, a known token by name or ("text", any text), padding); any text.
AUTHORIZATIONS = weighted(
    (2, st.none()),
    (
        4,
        st.tuples(
            weighted(
                (3, st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token"])),
                (1, HEADER_TEXT),
            ),
            weighted(
                (3, st.sampled_from(["alice", "alice revoked", "bob", "charlie"])),
                (1, HEADER_TEXT.map(lambda text: ("text", text))),
            ),
            st.sampled_from(["", "", " ", "  ", "\t", "\xa0"]),
        ),
    ),
    (1, HEADER_TEXT),
)


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


@examples(100)
@given(
    endpoint=st.sampled_from(["events", "stop", "page", "rename", "delete"]),
    segment=SEGMENTS,
)
def test_ids_in_urls_route_or_404(world, callers, secrets, client, endpoint, segment):
    """Anything in an id's place: a number the converter takes is looked up (and is
    someone else's or missing: 404), anything else is not routed (404)."""
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
        check_api(answer, secrets, routed=bool(ROUTED_ID.match(segment)))
    else:
        answer = fetch(
            client, method, path, b"title=New", "application/x-www-form-urlencoded"
        )
        check(answer, secrets)

    assert answer.status == 404, answer
    assert snapshot() == before


# --------------------------------------------------------------------------- tokens


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


# --------------------------------------------------------------------------- pages


TITLE_BODIES = st.one_of(
    st.fixed_dictionaries({}, optional={"title": PROMPTS, "other": TEXT}).map(
        lambda fields: (urlencoded(fields), "application/x-www-form-urlencoded")
    ),
    st.tuples(st.binary(max_size=40), CONTENT_TYPES),
    st.tuples(
        JSON_VALUES.map(lambda v: json.dumps(v).encode()), st.just("application/json")
    ),
)


def fresh_chat(owner) -> Conversation:
    chat = Conversation.objects.create(owner=owner, title="Fresh")
    chat.messages.create(role=Message.Role.USER, content="Hi")
    answer = StreamLog.objects.create(
        user=owner,
        conversation=chat,
        provider="demo",
        model="demo",
        prompt=f"Hi {chat.pk}",
        response="Hello!",
        status=StreamLog.Status.COMPLETED,
    )
    chat.messages.create(role=Message.Role.ASSISTANT, stream=answer)
    return chat


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


# --------------------------------------------------------------------------- Django


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
