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
    Incomplete,
    Message,
    Options,
    PerLoop,
    ProviderError,
    TextDelta,
    Usage,
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
    ) -> AsyncIterator[TextDelta | Usage]:
        client: anthropic.AsyncAnthropic = self._clients.get()
        try:
            async with client.messages.with_streaming_response.create(
                **_parameters(options),
                model=model,
                messages=list(messages),  # type: ignore[arg-type]
                # Anthropic requires a limit.
                max_tokens=token_limit(model, options) or settings.ANTHROPIC_MAX_TOKENS,
                stream=True,
            ) as response:
                chunks = response.iter_text()
                async for item in _deltas(wire.lines(chunks)):
                    yield item
                await wire.finish(chunks)
        except (anthropic.APIError, *TRANSPORT_ERRORS) as error:
            raise sdk_error(error, anthropic) from None


def _parameters(options: Options) -> dict[str, Any]:
    """The options the request sets; the system prompt is a top-level `system`,
    never a message.

    The SDK (since 1.0) no longer takes temperature and top_p as arguments; the API
    still does on the models that allow sampling (its migration guide: send them in
    `extra_body`). Models that do not answer 400, which the client gets."""
    parameters: dict[str, Any] = {}
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


async def _deltas(lines: AsyncIterator[str]) -> AsyncIterator[TextDelta | Usage]:
    input_tokens = output_tokens = None
    async for event, data in wire.events(lines):
        if event == "ping":
            continue
        payload = wire.json_object(data)
        try:
            match event:
                case "content_block_delta":
                    delta = payload["delta"]
                    if delta.get("type") == "text_delta" and delta["text"]:
                        yield TextDelta(delta["text"])
                case "message_start":
                    input_tokens = payload["message"]["usage"].get("input_tokens")
                case "message_delta":
                    output_tokens = payload.get("usage", {}).get("output_tokens")
                case "message_stop":
                    yield Usage(input_tokens, output_tokens)
                    return
                case "error":
                    raise _stream_error(payload.get("error"))
        except (KeyError, TypeError, AttributeError):
            raise BadUpstream() from None
    raise Incomplete()


def _stream_error(error: Any) -> ProviderError:
    kind = error.get("type") if isinstance(error, dict) else None
    return error_for_status(_STREAM_ERROR_STATUS.get(kind, 500), {})
