"""What `DefaultChatTransport` POSTs to `/api/chat`: `{id, messages, trigger,
messageId?, ...body}`, read into the arguments of `generation.start`.

Only the last user message is read: the conversation's stored history is what the
model receives, so a client cannot rewrite the past. Bad input raises `Invalid`
naming the field (`TooLarge` for a prompt too long).
"""

import re
from dataclasses import dataclass
from typing import Any, NoReturn

from django.conf import settings
from django.http import HttpRequest

from streaming.api import forms
from streaming.api.forms import Invalid
from streaming.providers.base import Options

# A chat id: 1-128 characters, no slash (it is a path segment of the resume URL) and
# no control character; "." and ".." are no path segment either.
CHAT_ID = r"[^/\x00-\x1f\x7f]{1,128}"
_CHAT_ID = re.compile(CHAT_ID + r"\Z")
_TRIGGERS = ("submit-message", "regenerate-message")


@dataclass(frozen=True)
class ChatRequest:
    chat_id: str
    regenerate: bool
    message_id: str | None  # the answer to regenerate, when the client names it
    prompt: str
    provider: str
    model: str
    options: Options


def read(request: HttpRequest) -> ChatRequest:
    body = _json(request)
    chat_id = _field(body, "id", str, "a chat id (a string)", required=True)
    if not _CHAT_ID.match(chat_id) or chat_id in (".", ".."):
        _refuse("id", "The field 'id' must be 1-128 characters, without '/'.")
    trigger = _field(body, "trigger", str, "'submit-message' or 'regenerate-message'")
    if trigger not in _TRIGGERS:
        _refuse(
            "trigger", "The field 'trigger' must be one of: " + ", ".join(_TRIGGERS)
        )
    regenerate = trigger == "regenerate-message"
    message_id = _field(body, "messageId", str, "a message id (a string)")
    if message_id is not None and not regenerate:
        _refuse(
            "messageId",
            "The field 'messageId' edits an earlier message, which is not "
            "supported: send a new message, or regenerate the last answer.",
        )
    system = _field(body, "system", str, "a string")
    if system is not None and len(system) > settings.MAX_PROMPT_CHARS:
        _refuse(
            "system",
            f"The field 'system' is longer than {settings.MAX_PROMPT_CHARS} characters.",
        )
    arguments = _start_arguments(
        prompt=_prompt(body.get("messages")),
        provider=_field(body, "provider", str, "a string"),
        model=_field(body, "model", str, "a string"),
    )
    return ChatRequest(
        chat_id=chat_id,
        regenerate=regenerate,
        message_id=message_id,
        prompt=arguments["prompt"],
        provider=arguments["provider"],
        model=arguments["model"],
        # The chat's own `system`, else the deployment's, as for the chat page.
        options=Options(system=system or settings.SYSTEM_PROMPT or None),
    )


def _json(request: HttpRequest) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise Invalid("Send the chat as JSON (Content-Type: application/json).")
    return forms.json_object(request)


def _field(
    body: dict, name: str, kind: type, expected: str, *, required: bool = False
) -> Any:
    """`body[name]` if it is a `kind` (None, if absent or null and not required)."""
    value = body.get(name)
    if value is None and not required:
        return None
    if type(value) is not kind:
        _refuse(name, f"The field {name!r} must be {expected}.")
    return value


def _prompt(messages: object) -> str:
    """The text of the last message, which must be the user's."""
    if not isinstance(messages, list) or not messages:
        _refuse("messages", "The field 'messages' must be a list of UI messages.")
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        _refuse("messages", "The last of 'messages' must be a message of the user.")
    parts = last.get("parts")
    if not isinstance(parts, list):
        _refuse("messages", "The last of 'messages' needs 'parts', a list.")
    texts = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "file":
            _refuse("messages", "Files in 'messages' are not supported: send text.")
        elif kind == "text":
            _refuse("messages", "A text part in 'messages' needs its 'text' string.")
        elif not isinstance(kind, str):
            _refuse(
                "messages", "Each part in 'messages' must be an object with a 'type'."
            )
    return "".join(texts)


def _start_arguments(**data: str | None) -> dict[str, Any]:
    """The prompt, provider and model checked as `POST /streams/` checks them."""
    form = forms.StartForm(
        {name: value for name, value in data.items() if value is not None},
        single_turn=True,
    )
    try:
        return form.start(new_conversation=False)
    except Invalid as invalid:
        # The prompt is the last message's text.
        fields = invalid.details.get("fields", {})
        if "prompt" not in fields:
            raise
        fields["messages"] = fields.pop("prompt")
        error = type(invalid)(
            f"The last of 'messages': {invalid.message}", fields=fields
        )
        raise error from None


def _refuse(name: str, message: str) -> NoReturn:
    raise Invalid(message, fields={name: [{"message": message, "code": "invalid"}]})
