"""Errors as OpenAI's SDKs read them: the envelope `{"error": {"message", "type",
"param", "code"}}` with the statuses they map to exception classes (400
BadRequestError, 401 AuthenticationError, 403 PermissionDeniedError, 404
NotFoundError, 413, 429 RateLimitError, 5xx InternalServerError).

`code` is our own error code, as on every other endpoint; `type` follows the status.
"""

import math

from django.http import JsonResponse

from streaming.errors import Refused, StreamError


class Invalid(Refused):
    """A parameter with a value we do not accept (400, with its `param`)."""

    code = "invalid_value"


class Unsupported(Refused):
    """A parameter the relay cannot honour (400, with its `param`)."""

    code = "unsupported_parameter"


class UnknownModel(Refused):
    status = 404
    code = "model_not_found"


class TooLarge(Refused):
    status = 413
    code = "too_large"


# How a call that does not stream answers a stream that failed, by its error code:
# the provider's own rate limit and our budget as 429, the provider refusing the
# request as 400, a stop as 409, and the rest as the gateway errors they are.
_FAILURE_STATUS = {
    "rate_limited": 429,
    "budget_exceeded": 429,
    "bad_request": 400,
    "stopped": 409,
    "orphaned": 409,
    "auth": 502,
    "incomplete": 502,
    "bad_upstream": 502,
    "unavailable": 503,
    "interrupted": 503,
    "timeout": 504,
    "internal": 500,
}


def error(status: int, code: str, message: str, **extra: object) -> JsonResponse:
    """The envelope, for `api.decorators.endpoint(errors=...)`; of `extra` only
    `param` (the request parameter at fault) is kept."""
    return JsonResponse(
        envelope(status, code, message, extra.get("param")), status=status
    )


def envelope(
    status: int, code: str, message: str, param: object = None
) -> dict[str, dict[str, object]]:
    return {
        "error": {
            "message": message,
            "type": _type(status),
            "param": param,
            "code": code,
        }
    }


def stream_error(failure: StreamError) -> dict[str, dict[str, object]]:
    """A stream's error as the envelope (the `data: {"error": ...}` frame's)."""
    status = _FAILURE_STATUS.get(failure.code, 502)
    return envelope(status, failure.code, failure.message)


def failure(failure: StreamError) -> JsonResponse:
    """The response of a call that does not stream, for a stream that failed.

    The SDKs retry 409, 429 and 5xx by themselves: `x-should-retry: false` stops
    them for an error that is not retryable, `Retry-After` (and `retry-after-ms`,
    which the Python SDK reads first) says when to for one that is."""
    status = _FAILURE_STATUS.get(failure.code, 502)
    response = error(status, failure.code, failure.message)
    if not failure.retryable:
        response["x-should-retry"] = "false"
    if failure.retry_after is not None:
        response["Retry-After"] = str(math.ceil(failure.retry_after))
        response["retry-after-ms"] = str(round(failure.retry_after * 1000))
    return response


def _type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"
