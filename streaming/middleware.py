"""Security headers for the pages people see, and clear answers to requests that
cannot be served (an unreadable body, a service that is away)."""

import logging
from collections.abc import Callable

import redis
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django import db
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import sync_and_async_middleware

from streaming.auth import UNREADABLE_BODY

logger = logging.getLogger(__name__)

_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")

# Scripts, styles and everything else only from our own origin: no inline script, no
# eval, no other site. The admin keeps inline style attributes, which Django's own
# admin templates use; scripts stay ours only everywhere.
_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'{styles}; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_POLICY = _POLICY.format(styles="")
ADMIN_POLICY = _POLICY.format(styles=" 'unsafe-inline'")


@sync_and_async_middleware
def content_security_policy(get_response: Callable) -> Callable:
    """Set Content-Security-Policy on HTML responses (event streams need none).

    Async-capable, so streams are never pushed through a thread by this middleware.
    """

    def add_policy(request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if response.get("Content-Type", "").startswith("text/html"):
            admin = request.path.startswith("/admin/")
            response.setdefault(
                "Content-Security-Policy", ADMIN_POLICY if admin else PAGE_POLICY
            )
        return response

    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            return add_policy(request, await get_response(request))

    else:

        def middleware(request: HttpRequest) -> HttpResponse:
            return add_policy(request, get_response(request))

    return middleware


@sync_and_async_middleware
def unreadable_body(get_response: Callable) -> Callable:
    """Answer 400 (413 if too large), not 500, to a form body Django cannot parse.

    It must come before CsrfViewMiddleware, which reads the body for its token and
    would otherwise fail on a bad multipart body or a charset that is no text codec.
    """

    def refusal(request: HttpRequest) -> HttpResponse | None:
        if request.method != "POST" or request.content_type not in _FORMS:
            return None
        try:
            request.POST  # noqa: B018 - parse now, where a failure can be answered
        except RequestDataTooBig:
            return _refuse(413, "too_large", "The request body is too large.")
        except UNREADABLE_BODY:
            return _refuse(400, "bad_request", "The request body cannot be read.")
        return None

    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            return refusal(request) or await get_response(request)

    else:

        def middleware(request: HttpRequest) -> HttpResponse:
            return refusal(request) or get_response(request)

    return middleware


def _refuse(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": code, "message": message}, status=status)


# A database or Redis that is briefly away: the request can be tried again shortly.
_UNAVAILABLE = (
    db.OperationalError,
    db.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


class ServicesUnavailable:
    """Answer 503 + Retry-After, not a 500 page, while PostgreSQL or Redis is away."""

    sync_capable = async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        return self.get_response(request)

    def process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponse | None:
        if not isinstance(exception, _UNAVAILABLE):
            return None
        logger.warning(
            "%s %s: %s unavailable (%s)",
            request.method,
            request.path,
            "Redis" if isinstance(exception, redis.RedisError) else "the database",
            type(exception).__name__,
        )
        response = _refuse(
            503, "unavailable", "A service this needs is briefly away; try again."
        )
        response["Retry-After"] = "1"
        return response
