"""What a `POST /v1/chat/completions` asks for, read from its JSON body: the model it
names, the messages and the options we honour. Anything we cannot honour is refused
naming its parameter (`Unsupported`), never silently dropped."""

import json
import math
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from streaming import providers
from streaming.api import forms, openai_messages
from streaming.api.openai_errors import Invalid, TooLarge, UnknownModel, Unsupported
from streaming.providers.base import Message, Options

# Honoured: model, messages, stream, stream_options, max_tokens, max_completion_tokens,
# temperature, top_p, stop. Accepted and ignored, since they change nothing in the
# answer: these, with any value.
IGNORED = frozenset({"user", "safety_identifier", "prompt_cache_key", "metadata"})
# Accepted only with the value that asks for nothing more than we do (or null).
DEFAULT_ONLY: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "store": (False,),
    "logprobs": (False,),
    "presence_penalty": (0,),
    "frequency_penalty": (0,),
    "logit_bias": ({},),
    "parallel_tool_calls": (True, False),  # nothing to do without tools
    "service_tier": ("auto", "default"),
    "modalities": (["text"],),
    "response_format": ({"type": "text"},),
}
# OpenAI's other parameters, refused unless null: tools, structured output, audio…
UNSUPPORTED = frozenset(
    {
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "top_logprobs",
        "seed",
        "audio",
        "prediction",
        "reasoning_effort",
        "verbosity",
        "web_search_options",
    }
)
HONOURED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
    }
)


@dataclass(frozen=True)
class ChatRequest:
    model: str  # as the client named it, and as the answer names it back
    provider: str
    provider_model: str
    prompt: str  # the last user message, which the row records
    messages: list[Message]
    options: Options
    stream: bool
    include_usage: bool


def model_ids() -> dict[str, tuple[str, str]]:
    """The model ids `/v1/models` lists -> (provider, model): `<provider>/<model>`
    for each configured model, and `demo` for the demo."""
    ids = {}
    for name, provider in providers.configured().items():
        for model in provider.models:
            ids["demo" if name == "demo" else f"{name}/{model}"] = (name, model)
    return ids


def resolve(model_id: object) -> tuple[str, str]:
    """(provider, model) of a model id; `UnknownModel` for any other."""
    if not isinstance(model_id, str):
        raise Invalid("'model' must be a string.", param="model")
    if model_id in (ids := model_ids()):
        return ids[model_id]
    raise UnknownModel(
        f"The model {json.dumps(model_id)[:100]} does not exist; GET /v1/models "
        "lists ours.",
        param="model",
    )


def read(request: HttpRequest) -> ChatRequest:
    """The request, or a `Refused` naming what is wrong (400, 404, 413)."""
    body = _json(request)
    for name, value in body.items():
        _check_parameter(name, value)
    if "messages" not in body:
        raise Invalid("'messages' is required.", param="messages")
    if "model" not in body:
        raise Invalid("'model' is required.", param="model")
    provider, provider_model = resolve(body["model"])
    system, messages = openai_messages.read(body["messages"])
    prompt = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    stream = _boolean(body, "stream")
    stream_options = body.get("stream_options") or {}
    if stream_options and not stream:
        raise Invalid(
            "'stream_options' is only allowed with 'stream': true.",
            param="stream_options",
        )
    return ChatRequest(
        model=body["model"],
        provider=provider,
        provider_model=provider_model,
        prompt=prompt,
        messages=messages,
        options=_options(body, system),
        stream=stream,
        include_usage=_include_usage(stream_options),
    )


def _json(request: HttpRequest) -> dict[str, Any]:
    try:
        return forms.json_object(request)
    except forms.TooLarge:
        raise TooLarge("The request body is too large.") from None
    except forms.Invalid as invalid:
        raise Invalid(invalid.message, param=None) from None


def _check_parameter(name: str, value: object) -> None:
    if name in HONOURED or name in IGNORED:
        return
    if name not in DEFAULT_ONLY and name not in UNSUPPORTED:
        # As OpenAI answers it, but naming the parameter.
        raise Unsupported(f"Unrecognized request argument supplied: {name}", param=name)
    if value is None or any(_same(value, ok) for ok in DEFAULT_ONLY.get(name, ())):
        return
    shown = f" = {json.dumps(value)[:100]}" if name in DEFAULT_ONLY else ""
    raise Unsupported(f"The relay does not support {name!r}{shown}.", param=name)


def _same(value: object, allowed: object) -> bool:
    """Equal as JSON values: `1.0` is 1 and `true` is no 1."""
    if isinstance(value, bool) or isinstance(allowed, bool):
        return value is allowed
    return value == allowed


def _options(body: dict[str, Any], system: str | None) -> Options:
    limits = {
        name: _number(body, name, integer=True, low=1)
        for name in ("max_completion_tokens", "max_tokens")
    }
    return Options(
        system=system,
        # OpenAI deprecated max_tokens for max_completion_tokens, which wins.
        max_tokens=limits["max_completion_tokens"] or limits["max_tokens"],
        temperature=_number(body, "temperature", low=0, high=2),
        top_p=_number(body, "top_p", low=0, high=1),
        stop=_stop(body.get("stop")),
    )


def _number(
    body: dict[str, Any],
    name: str,
    *,
    integer: bool = False,
    low: float,
    high: float | None = None,
) -> Any:
    value = body.get(name)
    if value is None:
        return None
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(
        value, int if integer else int | float
    ):
        raise Invalid(f"{name!r} must be {kind}.", param=name)
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise Invalid(f"{name!r} must be {bounds}.", param=name)
    return value


def _stop(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    sequences = [value] if isinstance(value, str) else value
    if (
        not isinstance(sequences, list)
        or not 1 <= len(sequences) <= 4
        or not all(isinstance(s, str) and s for s in sequences)
    ):
        raise Invalid(
            "'stop' must be a non-empty string or a list of 1 to 4 of them.",
            param="stop",
        )
    return tuple(sequences)


def _boolean(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise Invalid(f"{name!r} must be true or false.", param=name)
    return bool(value)


def _include_usage(stream_options: object) -> bool:
    if not isinstance(stream_options, dict):
        raise Invalid("'stream_options' must be an object.", param="stream_options")
    value = stream_options.get("include_usage")
    if value is not None and not isinstance(value, bool):
        raise Invalid(
            "'stream_options.include_usage' must be true or false.",
            param="stream_options.include_usage",
        )
    # include_obfuscation pads chunks against side channels; ours need none.
    return bool(value)
