"""What the property tests share: the inputs they generate (hypothesis strategies),
the outcomes the README promises for them, and how a request is made and checked.

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
from urllib.parse import quote, quote_from_bytes, urlsplit

import hypothesis
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.http import QueryDict
from django.test import AsyncClient, Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.utils.http import parse_header_parameters
from hypothesis import HealthCheck
from hypothesis import strategies as st

from streaming import providers
from streaming.models import ApiToken, Conversation, Message, StreamLog
from tests.helpers import parse_sse

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
            + ["multipart", "other", "other", "conversation", "too large", "deep"]
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
                st.sampled_from(["own", "bob's", "", None, 1.5, 1e400, True])
                | NUMBERS
                | NUMBERS.map(int)
                | JSON_VALUES
            )
            value["regenerate"] = draw(
                st.sampled_from([True, False, "", None, "true", 1]) | JSON_VALUES
            )
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
    if kind == "deep":
        # Nested deeper than Python's parser recurses, in the body or in a field.
        depth = draw(st.integers(1_000, 3_000))
        nested = b"[" * depth + b"]" * depth * draw(st.integers(0, 1))
        body = draw(st.sampled_from([nested, b'{"prompt": ' + nested + b"}"]))
        return body, "application/json", 400
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


# The JSON type each field of a start takes (README, "Endpoints"): a bool is no
# integer and a float no id; "" and null leave conversation and regenerate unset.
JSON_TYPES = {
    "prompt": str,
    "provider": str,
    "model": str,
    "conversation": int,
    "regenerate": bool,
}


def wrong_json_fields(value: dict) -> set[str]:
    """The fields of a JSON body a start refuses for their type (400 naming them)."""
    return {
        name
        for name, kind in JSON_TYPES.items()
        if name in value
        and type(value[name]) is not kind
        and not (name in ("conversation", "regenerate") and value[name] in ("", None))
    }


def json_seen(body: bytes) -> dict | int:
    """What POST /streams/ makes of a JSON body: the fields it reads, or 400 (not
    JSON, nested too deep to parse, not an object, or a field of the wrong type)."""
    try:
        data = json.loads(body or b"null")
    except (ValueError, RecursionError):
        return 400
    if not isinstance(data, dict) or wrong_json_fields(data):
        return 400
    return {name: data[name] for name in JSON_TYPES if name in data}


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


def visible(log: StreamLog | None, user, *, may: str = "view") -> bool:
    """Whether `user` may `may` ("view" or "stop") the stream: their own, or anyone's
    with the permission (being staff is not enough)."""
    return log is not None and (
        log.user_id == user.pk or user.has_perm(f"streaming.{may}_streamlog")
    )


def replay_outcome(log: StreamLog, offset: str | None) -> int:
    """Following a stream the caller may read, after the client's last event id
    (None: a first connection): 400, 204 (a reconnect with nothing left) or 200."""
    known = len(log.response) if log.is_finished else None
    after = "0" if offset is None else offset
    if not NUMBER.match(after):
        return 400
    # Past the end of an answer that did not complete, the viewer gets its ending.
    if known is not None and int(after) > known and log.status == "completed":
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


def check_api(answer: Answer, secrets: list[str]) -> None:
    """…and for the API: 405 says what is allowed; every refusal is JSON with a code
    and a message, a URL the router does not know included."""
    check(answer, secrets)
    if answer.status == 405:
        assert "Allow" in answer.headers
    elif answer.status >= 400:
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


# Mostly streams that exist, at offsets around their lengths.
RESUMES = weighted(
    (4, st.tuples(STREAM_REFS, st.integers(0, 25).map(str))),
    (2, st.tuples(STREAM_REFS, HEADER_OFFSETS)),
    (1, st.tuples(NUMBERS, HEADER_OFFSETS).map(":".join)),
    (1, HEADER_TEXT),
    (1, st.sampled_from(["", ":", ":0", "0:0", "abc:0", "-1:0", "1:", "1::1", "²:0"])),
)


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
