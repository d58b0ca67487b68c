"""The provider contract: what a provider yields, the errors it raises, and the retry
policy and error mapping every provider shares.

A provider's `stream(messages, *, model, options)` is an async iterator of lists of
`TextDelta`, `ReasoningDelta` (what a model that thinks sends apart from its answer)
and at most one `Usage`, a list for what arrived together (one read of the upstream:
a burst of tokens costs one wake-up, not one each), ending normally only when the
provider sent its terminator. Failures are raised as one of the `ProviderError`
subclasses below, whose `message` is written for the user: no SDK text, URL or key
ever reaches it.
Closing the iterator (or cancelling the task that runs it) closes the upstream
HTTP connection.
"""

import asyncio
import random
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol, TypedDict

import aiohttp
import httpx2
from django.conf import settings

from streaming.errors import RETRYABLE, StreamError


class Message(TypedDict):
    role: str  # "user" or "assistant"; the system prompt is `Options.system`
    content: str


@dataclass(frozen=True, slots=True)
class Options:
    """What one request asks of the model besides its messages; None (or empty) leaves
    the provider's default."""

    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()


DEFAULT_OPTIONS = Options()


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    """What the provider counted; None where it reported nothing.

    `input_tokens` counts the whole prompt, cached or not: `cached_input_tokens` of
    them were read from the provider's prompt cache and `cache_write_tokens` written
    to it. `reasoning_tokens` of the `output_tokens` were the model's reasoning.
    """

    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None


# What a provider's stream yields.
Item = TextDelta | ReasoningDelta | Usage


def count(value: Any) -> int | None:
    """A token count as a provider sent it, or None for anything but a count."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


class ProviderError(Exception):
    """A provider failure; `error` is what the stream's viewers are told."""

    code = "provider_error"
    message = "The model provider failed."

    def __init__(self, message: str | None = None, *, retry_after: float | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE

    @property
    def error(self) -> StreamError:
        return StreamError.of(self.code, self.message, retry_after=self.retry_after)


class RateLimited(ProviderError):
    code = "rate_limited"
    message = "The model provider is rate limiting requests; try again shortly."


class BadRequest(ProviderError):
    code = "bad_request"
    message = "The model provider rejected the request."


class AuthenticationFailed(ProviderError):
    code = "auth"
    message = (
        "The model provider refused our credentials; an administrator must fix them."
    )


class Unavailable(ProviderError):
    code = "unavailable"
    message = "The model provider is unavailable; try again shortly."


class Timeout(ProviderError):
    code = "timeout"
    message = "The model provider stopped sending data."


class Incomplete(ProviderError):
    code = "incomplete"
    message = "The model provider ended the answer before it was complete."


class BadUpstream(ProviderError):
    code = "bad_upstream"
    message = "The model provider sent data we could not read."


class Provider(Protocol):
    name: str
    label: str
    models: list[str]
    default_model: str

    def stream(
        self, messages: list[Message], *, model: str, options: Options = DEFAULT_OPTIONS
    ) -> AsyncIterator[list[Item]]: ...


def output_limit(model: str) -> int | None:
    """The most tokens one answer of `model` may have, as the settings say: by model
    first, then MAX_OUTPUT_TOKENS; None sends no limit (the model's own maximum)."""
    limit = settings.MAX_OUTPUT_TOKENS_BY_MODEL.get(model, settings.MAX_OUTPUT_TOKENS)
    return limit or None


def token_limit(model: str, options: Options) -> int | None:
    """The most tokens this answer may have: the request's `max_tokens`, within the
    configured `output_limit`; None when neither sets one."""
    limits = [limit for limit in (options.max_tokens, output_limit(model)) if limit]
    return min(limits) if limits else None


class PerLoop:
    """One SDK client per event loop: a client's pooled connections belong to one loop."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> Any:
        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            self._clients[loop] = self._make()
        return self._clients[loop]


def sdk_error(error: Exception, sdk: ModuleType) -> ProviderError:
    """The project error for what an official SDK (`openai`, `anthropic`: the two
    share their error classes' shape) or its HTTP transport raised."""
    if isinstance(error, sdk.APIStatusError):
        return error_for_status(error.status_code, error.response.headers)
    if isinstance(error, sdk.APITimeoutError | httpx2.TimeoutException):
        return _timeout_error(error)
    if isinstance(error, sdk.APIConnectionError):
        return Unavailable()
    # A transport error once the response had started: the body broke off.
    return Incomplete()


def _timeout_error(error: BaseException) -> ProviderError:
    """The error for what an SDK reports as a timeout. Its aiohttp transport reports a
    refused or unresolvable connection as a connect timeout too: that one is
    `Unavailable`, not a provider that stopped sending."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, aiohttp.ClientConnectorError):
            return Unavailable()
        cause = cause.__cause__ or cause.__context__
    return Timeout()


# What a provider's `stream` maps with `sdk_error` (its SDK's `APIError` besides).
TRANSPORT_ERRORS = (httpx2.TransportError,)


def retry_delay(attempt: int, error: ProviderError, *, elapsed: float) -> float | None:
    """Seconds to wait before attempt `attempt + 1`, or None to give up.

    The one place retries are decided: the SDK clients are built with `max_retries=0`,
    and generation retries only before the first token. Exponential backoff with full
    jitter; a provider's Retry-After wins (up to PROVIDER_RETRY_MAX_WAIT_SECONDS); at
    most PROVIDER_MAX_RETRIES retries within PROVIDER_RETRY_BUDGET_SECONDS in all.
    """
    if not error.retryable or attempt > settings.PROVIDER_MAX_RETRIES:
        return None
    cap = settings.PROVIDER_RETRY_MAX_WAIT_SECONDS
    if error.retry_after is not None:
        delay = min(error.retry_after, cap)
    else:
        delay = random.uniform(
            0, min(cap, settings.PROVIDER_RETRY_BASE_SECONDS * 2**attempt)
        )
    if elapsed + delay > settings.PROVIDER_RETRY_BUDGET_SECONDS:
        return None
    return delay


def error_for_status(status: int, headers: Mapping[str, str]) -> ProviderError:
    """The project error for an HTTP error status from a provider."""
    if status in (401, 403):
        return AuthenticationFailed()
    if status == 429:
        return RateLimited(retry_after=_retry_after(headers))
    if status in (400, 404, 413, 422):
        return BadRequest()
    return Unavailable(retry_after=_retry_after(headers))


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except ValueError:
        pass
    return None
