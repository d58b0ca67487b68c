"""The two kinds of failure every room shares: a refused request, and a stream error.

`Refused` is raised wherever a request is turned down (a limit, a draining server, a
missing conversation, bad input); the API turns it into its JSON error in one place
(`api.decorators`). `StreamError` is what a stream that failed carries: providers
raise it (inside `ProviderError`), viewers receive it as an `error` frame, the frame
log keeps it and the stream's row records its code and message.
"""

from dataclasses import asdict, dataclass
from typing import Any

# The error codes a client may try again after, for live and replayed errors alike.
RETRYABLE = frozenset(
    {
        "rate_limited",
        "unavailable",
        "timeout",
        "incomplete",
        "bad_upstream",
        "interrupted",
    }
)


class Refused(Exception):
    """A request this service turns down, with the status and error to answer."""

    status = 400
    code = "bad_request"
    message = "The request cannot be served."

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: int | None = None,
        **details: object,
    ) -> None:
        self.message = message or self.message
        self.retry_after = retry_after
        self.details = details  # extra JSON fields, e.g. the form's field errors
        super().__init__(self.message)


@dataclass(frozen=True, slots=True)
class StreamError:
    """Why a stream ended without completing, as its viewers are told."""

    code: str
    message: str
    retryable: bool = False
    retry_after: float | None = None

    @classmethod
    def of(
        cls, code: str, message: str, *, retry_after: float | None = None
    ) -> "StreamError":
        """The error for `code`, retryable as the code is."""
        return cls(code, message, code in RETRYABLE, retry_after)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StreamError":
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        """The `error` frame's JSON: `retry_after` only when there is one."""
        data = asdict(self)
        if self.retry_after is None:
            del data["retry_after"]
        return data
