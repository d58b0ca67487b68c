"""OpenAI chat completions, or any server that speaks them (OPENAI_BASE_URL)."""

from collections.abc import AsyncIterator
from typing import Any

import openai
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
    Unavailable,
    Usage,
    count,
    error_for_status,
    sdk_error,
    token_limit,
)


class OpenAIProvider:
    name = "openai"
    label = "OpenAI"

    def __init__(self) -> None:
        self.models = settings.OPENAI_MODELS
        self.default_model = settings.OPENAI_MODEL
        self._clients = PerLoop(
            lambda: openai.AsyncOpenAI(
                api_key=settings.OPENAI_API_KEY,
                base_url=settings.OPENAI_BASE_URL,
                max_retries=0,  # generation retries (providers.retry_delay)
                http_client=openai.DefaultAioHttpClient()
                if settings.PROVIDER_HTTP_CLIENT == "aiohttp"
                else None,
                timeout=openai.Timeout(
                    settings.PROVIDER_STALL_TIMEOUT_SECONDS,
                    connect=settings.PROVIDER_CONNECT_TIMEOUT_SECONDS,
                ),
            )
        )

    async def stream(
        self, messages: list[Message], *, model: str, options: Options = DEFAULT_OPTIONS
    ) -> AsyncIterator[list[Item]]:
        client: openai.AsyncOpenAI = self._clients.get()
        try:
            async with client.chat.completions.with_streaming_response.create(
                **_parameters(model, options),
                model=model,
                messages=_messages(messages, options),  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            ) as response:
                chunks = response.iter_text()
                async for items in wire.items(chunks, _Parser()):
                    yield items
                await wire.finish(chunks)
        except (openai.APIError, *TRANSPORT_ERRORS) as error:
            raise sdk_error(error, openai) from None


def _messages(messages: list[Message], options: Options) -> list[dict[str, str]]:
    """The system prompt goes first, as a `system` message."""
    system = [{"role": "system", "content": options.system}] if options.system else []
    return system + [dict(message) for message in messages]


def _parameters(model: str, options: Options) -> dict[str, Any]:
    """The options the request sets. The output limit goes under the parameter name
    the upstream accepts: OpenAI's current models reject max_tokens; some compatible
    servers know only that."""
    parameters: dict[str, Any] = {}
    if (limit := token_limit(model, options)) is not None:
        parameters[settings.OPENAI_MAX_TOKENS_PARAM] = limit
    if options.temperature is not None:
        parameters["temperature"] = options.temperature
    if options.top_p is not None:
        parameters["top_p"] = options.top_p
    if options.stop:
        parameters["stop"] = list(options.stop)
    return parameters


class _Parser:
    """Chat completion chunks, until `[DONE]`."""

    done = False

    def __call__(self, event: str, data: str) -> list[Item]:
        if data == "[DONE]":
            self.done = True
            return []
        chunk = wire.json_object(data)
        if chunk.get("error"):
            raise _stream_error(chunk["error"])
        try:
            items: list[Item] = []
            for choice in chunk.get("choices") or ():
                items += _items(choice.get("delta") or {})
            if usage := chunk.get("usage"):
                items.append(_usage(usage))
        except (AttributeError, TypeError):
            raise BadUpstream() from None
        return items


def _items(delta: dict[str, Any]) -> list[TextDelta | ReasoningDelta]:
    """A delta's reasoning, then its text. OpenAI's own API sends no reasoning; the
    servers that do name it `reasoning_content` (vLLM, llama.cpp, DeepSeek) or
    `reasoning` (Ollama, OpenRouter, newer vLLM)."""
    items: list[TextDelta | ReasoningDelta] = []
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    if reasoning and isinstance(reasoning, str):
        items.append(ReasoningDelta(reasoning))
    if text := delta.get("content"):
        items.append(TextDelta(text))
    return items


def _usage(usage: dict[str, Any]) -> Usage:
    """OpenAI's `prompt_tokens` counts the cached tokens too, and `completion_tokens`
    the reasoning ones; the details (when sent) say how many."""
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    return Usage(
        count(usage.get("prompt_tokens")),
        count(usage.get("completion_tokens")),
        cached_input_tokens=count(prompt.get("cached_tokens")),
        reasoning_tokens=count(completion.get("reasoning_tokens")),
    )


def _stream_error(error: Any) -> ProviderError:
    """An error object sent inside a 200 stream, as OpenAI does after it has started."""
    kind = (
        str(error.get("type") or error.get("code") or "")
        if isinstance(error, dict)
        else ""
    )
    if "rate_limit" in kind:
        return error_for_status(429, {})
    if kind in ("invalid_request_error", "invalid_request"):
        return error_for_status(400, {})
    return Unavailable()
