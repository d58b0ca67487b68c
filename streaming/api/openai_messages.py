"""The `messages` of a chat completion request, as the provider receives them: the
system prompt apart (every system or developer message, joined by a blank line), the
user and assistant turns in order, each content a string or a list of text parts."""

from django.conf import settings

from streaming.api.openai_errors import Invalid, TooLarge, Unsupported
from streaming.providers.base import Message

_SYSTEM_ROLES = ("system", "developer")


def read(value: object) -> tuple[str | None, list[Message]]:
    """The system prompt (None without one) and the other messages; a `Refused`
    naming the message at fault for anything we cannot send."""
    if not isinstance(value, list) or not value:
        raise Invalid("'messages' must be a non-empty list.", param="messages")
    system: list[str] = []
    messages: list[Message] = []
    for index, message in enumerate(value):
        role, content = _message(message, f"messages[{index}]")
        if role in _SYSTEM_ROLES:
            system.append(content)
        else:
            messages.append({"role": role, "content": content})
    if not any(m["role"] == "user" for m in messages):
        raise Invalid("'messages' must include a user message.", param="messages")
    total = sum(len(m["content"]) for m in messages) + sum(map(len, system))
    if total > settings.MAX_CONTEXT_CHARS:
        raise TooLarge(
            f"The messages are longer than {settings.MAX_CONTEXT_CHARS} characters.",
            param="messages",
        )
    return "\n\n".join(system) or None, messages


def _message(message: object, where: str) -> tuple[str, str]:
    if not isinstance(message, dict):
        raise Invalid(f"'{where}' must be an object.", param=where)
    for key, item in message.items():
        # A null field is one the client left unset (name, tool_calls, refusal…).
        if key not in ("role", "content") and item is not None:
            raise Unsupported(
                f"The relay does not support '{where}.{key}'.", param=f"{where}.{key}"
            )
    role = message.get("role")
    if role not in (*_SYSTEM_ROLES, "user", "assistant"):
        raise Unsupported(
            f"The relay does not support the role {role!r} in '{where}'; use "
            "system, developer, user or assistant.",
            param=f"{where}.role",
        )
    return role, _content(message.get("content"), where)


def _content(value: object, where: str) -> str:
    """A message's text: a string, or a list of text parts (joined)."""
    param = f"{where}.content"
    if isinstance(value, list):
        texts = []
        for index, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else None
                raise Unsupported(
                    f"The relay supports only text parts; '{param}[{index}]' is "
                    f"{kind!r}.",
                    param=f"{param}[{index}].type",
                )
            texts.append(_text(part.get("text"), f"{param}[{index}].text"))
        return "".join(texts)
    return _text(value, param)


def _text(value: object, param: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"'{param}' must be a string.", param=param)
    # What no database column can store, or what is not text at all.
    if "\x00" in value:
        raise Invalid(f"'{param}' contains a NUL character.", param=param)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(f"'{param}' is not valid Unicode.", param=param) from None
    return value
