"""Security headers for the pages people see, and clear answers to requests that
cannot be served (an unreadable body, a service that is away)."""

import logging
from collections.abc import Callable

import redis
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django import db
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.middleware import clickjacking, common, csrf, security
from django.utils.decorators import sync_and_async_middleware

from streaming.api.decorators import UNREADABLE_BODY
from streaming.server.handlers import errors_for

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
            return errors_for(request)(
                413, "too_large", "The request body is too large."
            )
        except UNREADABLE_BODY:
            return errors_for(request)(
                400, "bad_request", "The request body cannot be read."
            )
        return None

    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            return refusal(request) or await get_response(request)

    else:

        def middleware(request: HttpRequest) -> HttpResponse:
            return refusal(request) or get_response(request)

    return middleware


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
        response = errors_for(request)(
            503, "unavailable", "A service this needs is briefly away; try again."
        )
        response["Retry-After"] = "1"
        return response


class _OnTheLoop:
    """Run a Django middleware's hooks on the event loop, not on a thread each.

    Under ASGI, MiddlewareMixin sends every process_request and process_response
    through sync_to_async: with Django's stock middleware, a dozen trips to a thread
    per request, which cost a stream's start more than its database work does. These
    hooks do no I/O, except where `needs_thread` says so (a session to save, messages
    to store), and then they still get their thread.
    """

    def needs_thread(self, request: HttpRequest) -> bool:
        return False

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        response = None
        if hasattr(self, "process_request"):
            response = await self._run(self.process_request, request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = await self._run(self.process_response, request, response)
        return response

    async def _run(self, hook: Callable, request: HttpRequest, *args: object):
        if self.needs_thread(request):
            return await sync_to_async(hook)(request, *args)
        return hook(request, *args)


class SecurityMiddleware(_OnTheLoop, security.SecurityMiddleware):
    pass


class CommonMiddleware(_OnTheLoop, common.CommonMiddleware):
    pass


class XFrameOptionsMiddleware(_OnTheLoop, clickjacking.XFrameOptionsMiddleware):
    pass


class AuthenticationMiddleware(_OnTheLoop, auth.AuthenticationMiddleware):
    """Sets the lazy `request.user` and `request.auser`; reading them is the I/O."""


class SessionMiddleware(_OnTheLoop, sessions.SessionMiddleware):
    """The session loads lazily; only saving a changed one needs the database."""

    def needs_thread(self, request: HttpRequest) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (
            session.modified or settings.SESSION_SAVE_EVERY_REQUEST
        )


class MessageMiddleware(_OnTheLoop, messages.MessageMiddleware):
    """Storing messages may load the session; a request that used none does not."""

    def needs_thread(self, request: HttpRequest) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class CsrfViewMiddleware(_OnTheLoop, csrf.CsrfViewMiddleware):
    """The CSRF secret lives in a cookie unless CSRF_USE_SESSIONS puts it in the
    session. The body a POST's check reads is already in memory (see
    `unreadable_body`)."""

    def needs_thread(self, request: HttpRequest) -> bool:
        return settings.CSRF_USE_SESSIONS

    async def process_view(self, request: HttpRequest, *args: object):
        return await self._run(super().process_view, request, *args)
