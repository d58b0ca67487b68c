"""Anthropic messages streaming (ANTHROPIC_BASE_URL for a compatible server)."""

from collections.abc import AsyncIterator
from typing import Any

import anthropic
from django.conf import settings

from streaming.providers import wire
from streaming.providers.base import (
    DEFAULT_OPTIONS,
    TRANSPORT_ERRORS,
    BadUpstream,
    Item,
    Message,
    Options,
    PerLoop,
    ProviderError,
    ReasoningDelta,
    TextDelta,
    Usage,
    count,
    error_for_status,
    sdk_error,
    token_limit,
)

# Anthropic's error types inside a stream, as the HTTP status they stand for.
_STREAM_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
# The usage fields we keep, as Anthropic names them.
_COUNTED = {
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "thinking_tokens",
}


class AnthropicProvider:
    name = "anthropic"
    label = "Anthropic"

    def __init__(self) -> None:
        self.models = settings.ANTHROPIC_MODELS
        self.default_model = settings.ANTHROPIC_MODEL
        self._clients = PerLoop(
            lambda: anthropic.AsyncAnthropic(
                api_key=settings.ANTHROPIC_API_KEY,
                base_url=settings.ANTHROPIC_BASE_URL,
                max_retries=0,  # generation retries (providers.retry_delay)
                http_client=anthropic.DefaultAioHttpClient()
                if settings.PROVIDER_HTTP_CLIENT == "aiohttp"
                else None,
                timeout=anthropic.Timeout(
                    settings.PROVIDER_STALL_TIMEOUT_SECONDS,
                    connect=settings.PROVIDER_CONNECT_TIMEOUT_SECONDS,
                ),
            )
        )

    async def stream(
        self, messages: list[Message], *, model: str, options: Options = DEFAULT_OPTIONS
    ) -> AsyncIterator[list[Item]]:
        client: anthropic.AsyncAnthropic = self._clients.get()
        try:
            async with client.messages.with_streaming_response.create(
                **_parameters(model, options),
                model=model,
                messages=list(messages),  # type: ignore[arg-type]
                stream=True,
            ) as response:
                chunks = response.iter_text()
                async for items in wire.items(chunks, _Parser()):
                    yield items
                await wire.finish(chunks)
        except (anthropic.APIError, *TRANSPORT_ERRORS) as error:
            raise sdk_error(error, anthropic) from None


def _parameters(model: str, options: Options) -> dict[str, Any]:
    """The options the request sets; the system prompt is a top-level `system`,
    never a message.

    Anthropic requires an output limit. A model with a thinking budget
    (ANTHROPIC_THINKING_BUDGET_BY_MODEL) thinks first, and its limit counts the
    thinking: the budget comes on top of the answer's own limit.

    The SDK (since 1.0) no longer takes temperature and top_p as arguments; the API
    still does on the models that allow sampling (its migration guide: send them in
    `extra_body`). Models that do not (thinking takes no temperature) answer 400,
    which the client gets."""
    limit = token_limit(model, options) or settings.ANTHROPIC_MAX_TOKENS
    parameters: dict[str, Any] = {"max_tokens": limit}
    if budget := settings.ANTHROPIC_THINKING_BUDGET_BY_MODEL.get(model):
        parameters["thinking"] = {"type": "enabled", "budget_tokens": budget}
        parameters["max_tokens"] = limit + budget
    if options.system:
        parameters["system"] = options.system
    if options.stop:
        parameters["stop_sequences"] = list(options.stop)
    sampling = {
        name: value
        for name, value in (
            ("temperature", options.temperature),
            ("top_p", options.top_p),
        )
        if value is not None
    }
    if sampling:
        parameters["extra_body"] = sampling
    return parameters


class _Parser:
    """Message stream events, until `message_stop` (which brings the usage counted
    along the way)."""

    def __init__(self) -> None:
        self.done = False
        self.counts: dict[str, int] = {}

    def __call__(self, event: str, data: str) -> list[Item]:
        if event == "ping":
            return []
        payload = wire.json_object(data)
        try:
            match event:
                case "content_block_delta":
                    delta = payload["delta"]
                    kind = delta.get("type")
                    if kind == "text_delta" and delta["text"]:
                        return [TextDelta(delta["text"])]
                    if kind == "thinking_delta" and delta["thinking"]:
                        return [ReasoningDelta(delta["thinking"])]
                case "message_start":
                    _count(self.counts, payload["message"].get("usage"))
                case "message_delta":
                    _count(self.counts, payload.get("usage"))
                case "message_stop":
                    self.done = True
                    return [_usage(self.counts)]
                case "error":
                    raise _stream_error(payload.get("error"))
        except (KeyError, TypeError, AttributeError):
            raise BadUpstream() from None
        return []


def _count(counts: dict[str, int], usage: dict[str, Any] | None) -> None:
    """Take the counts of one event's usage into `counts`. Both `message_start` and
    every `message_delta` carry usage, cumulative: the last count of each field wins
    (a gateway may send `input_tokens: 0` at the start and the real count later)."""
    if usage is None:
        return
    details = usage.get("output_tokens_details") or {}
    for name, value in [
        *usage.items(),
        ("thinking_tokens", details.get("thinking_tokens")),
    ]:
        if name in _COUNTED and (tokens := count(value)) is not None:
            counts[name] = tokens


def _usage(counts: dict[str, int]) -> Usage:
    """Anthropic's `input_tokens` leaves out the prompt tokens read from or written to
    its cache; our `input_tokens` counts the whole prompt (as OpenAI's does)."""
    cached = counts.get("cache_read_input_tokens")
    written = counts.get("cache_creation_input_tokens")
    uncached = counts.get("input_tokens")
    return Usage(
        None if uncached is None else uncached + (cached or 0) + (written or 0),
        counts.get("output_tokens"),
        cached_input_tokens=cached,
        cache_write_tokens=written,
        # Thinking is in output_tokens; newer APIs say how much of it in the details.
        reasoning_tokens=counts.get("thinking_tokens"),
    )


def _stream_error(error: Any) -> ProviderError:
    kind = error.get("type") if isinstance(error, dict) else None
    return error_for_status(_STREAM_ERROR_STATUS.get(kind, 500), {})
