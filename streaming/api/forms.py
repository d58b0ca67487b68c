"""The API's input: what starts a stream, the request body it comes in, and the
offset a reconnecting client sends. Bad input raises a `Refused`."""

import json
import re
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, QueryDict

from streaming import conversations, providers
from streaming.api.decorators import UNREADABLE_BODY
from streaming.errors import Refused
from streaming.relay.joined import Position

_NUMBER = re.compile(r"[0-9]{1,15}\Z")


class Invalid(Refused):
    """Input the API cannot take: 400 naming the fields (413 for a prompt too long)."""


class TooLarge(Refused):
    status = 413
    code = "too_large"
    message = "The request body is too large."


class BadLastEventId(Refused):
    code = "bad_last_event_id"


class StartForm(forms.Form):
    """What starts a stream: a prompt, and optionally a configured provider and model."""

    prompt = forms.CharField(strip=False, required=False)
    provider = forms.CharField(required=False)
    model = forms.CharField(required=False, max_length=128)
    conversation = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    regenerate = forms.BooleanField(required=False)

    def __init__(self, *args: object, single_turn: bool = False, **kwargs: object):
        super().__init__(*args, **kwargs)
        if single_turn:
            # The seed's GET endpoint answers one prompt, outside any conversation.
            del self.fields["conversation"], self.fields["regenerate"]

    def clean_prompt(self) -> str:
        prompt = self.cleaned_data["prompt"]
        if len(prompt) > settings.MAX_PROMPT_CHARS:
            raise forms.ValidationError(
                f"The prompt is longer than {settings.MAX_PROMPT_CHARS} characters.",
                code="too_long",
            )
        if "\x00" in prompt:
            raise forms.ValidationError("The prompt contains a NUL character.")
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError:
            raise forms.ValidationError("The prompt is not valid Unicode.") from None
        return prompt

    def clean(self) -> dict:
        data = super().clean()
        data.setdefault("conversation", None)
        data.setdefault("regenerate", False)
        if data["regenerate"] and data["conversation"] is None:
            self.add_error("conversation", "Regenerate needs a conversation.")
        if not data["regenerate"] and "prompt" in data and not data["prompt"].strip():
            self.add_error("prompt", "The prompt is empty.")
        name = data.get("provider") or providers.default_name()
        provider = providers.get(name)
        if provider is None:
            offered = ", ".join(providers.configured())
            self.add_error(
                "provider", f"Unknown provider {name!r}; choose one of: {offered}."
            )
            return data
        model = data.get("model") or provider.default_model
        if model not in provider.models:
            offered = ", ".join(provider.models)
            self.add_error(
                "model", f"Unknown model {model!r}; choose one of: {offered}."
            )
        data["provider"], data["model"] = name, model
        return data

    def start(self, *, new_conversation: bool) -> dict[str, object]:
        """The arguments of `generation.start`; raises `Invalid` or `TooLarge`."""
        if not self.is_valid():
            message = " ".join(
                str(e) for errors in self.errors.values() for e in errors
            )
            if self.has_error("prompt", code="too_long"):
                raise TooLarge(message)
            raise Invalid(message, fields=self.errors.get_json_data())
        data = self.cleaned_data
        conversation = data.get("conversation")
        if conversation is None and new_conversation:
            conversation = conversations.NEW
        return {
            "prompt": data["prompt"],
            "provider": data["provider"],
            "model": data["model"],
            "conversation": conversation,
            "regenerate": data.get("regenerate", False),
        }


# The JSON type each field of a start takes (bool is no int, and a float is no id);
# "" or null leaves the optional conversation and regenerate unset. Fields not listed
# are ignored, whatever their type.
_JSON_TYPES = {
    "prompt": (str, "a string"),
    "provider": (str, "a string"),
    "model": (str, "a string"),
    "conversation": (int, "a conversation id (an integer), or null"),
    "regenerate": (bool, "true or false"),
}
_MAY_BE_UNSET = {"conversation", "regenerate"}


def body(request: HttpRequest) -> QueryDict | dict:
    """The fields of a JSON or form body, as a form reads them."""
    if request.content_type == "application/json":
        return _typed(json_object(request))
    try:
        return request.POST
    except RequestDataTooBig:
        raise TooLarge() from None
    except UNREADABLE_BODY:
        raise Invalid("The form body cannot be read.") from None


def _typed(data: dict) -> dict:
    """The fields a start reads from a JSON object; raises `Invalid` naming each
    field of the wrong type."""
    wrong = {}
    for name, (kind, expected) in _JSON_TYPES.items():
        value = data.get(name)
        if name in data and type(value) is not kind:
            if name in _MAY_BE_UNSET and value in ("", None):
                continue
            wrong[name] = f"The field {name!r} must be {expected}."
    if wrong:
        raise Invalid(
            " ".join(wrong.values()),
            fields={
                name: [{"message": message, "code": "invalid"}]
                for name, message in wrong.items()
            },
        )
    return {name: data[name] for name in _JSON_TYPES if name in data}


def client(request: HttpRequest) -> conversations.Client:
    return conversations.Client(
        addr=request.META.get("REMOTE_ADDR") or None,
        user_agent=request.headers.get("User-Agent", ""),
    )


def last_event_id(request: HttpRequest) -> str | None:
    """The client's last event id: the header, or `?last_event_id=` for a client
    that builds a new EventSource and cannot set headers."""
    return request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")


def offset(value: str | None) -> Position | None:
    """Where a client is in a stream: `<offset>` of the answer (a token frame's id),
    `r<offset>` of the reasoning (a reasoning frame's); None stays None: a first
    connection."""
    if value is None:
        return None
    reasoning = value.startswith("r")
    if not _NUMBER.match(value[reasoning:]):
        raise BadLastEventId("Last-Event-ID is not an offset of this stream.")
    return Position(int(value[reasoning:]), reasoning=reasoning)


def stream_and_offset(value: str) -> tuple[int, str]:
    """The stream id of `<stream id>:<offset>` (the ids of `/chat/stream`), and the
    offset, for `offset()` once the stream is known."""
    stream_id, _, rest = value.partition(":")
    if not _NUMBER.match(stream_id):
        raise BadLastEventId("Last-Event-ID must be '<stream>:<offset>'.")
    return int(stream_id), rest


def json_object(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object; `Invalid` when it is not one, `TooLarge`
    past DATA_UPLOAD_MAX_MEMORY_SIZE."""
    try:
        data = json.loads(request.body or b"null")
    except RequestDataTooBig:
        raise TooLarge() from None
    # ValueError covers bad UTF-8 and numbers of over 4,300 digits; a deeply nested
    # body raises RecursionError.
    except (ValueError, RecursionError):
        raise Invalid("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise Invalid("The JSON body must be an object.")
    return data
