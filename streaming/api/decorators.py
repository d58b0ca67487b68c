"""What every API endpoint shares: its methods, who is asking (a personal API token
or a session), and the one JSON error, which every `Refused` becomes here."""

import functools
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from streaming.api import credentials
from streaming.errors import Refused

View = Callable[..., Awaitable[HttpResponse]]
# How an endpoint writes an error: `(status, code, message, **extra)` -> the response.
# `error` below is ours; another wire protocol (OpenAI's envelope) brings its own.
Errors = Callable[..., JsonResponse]

# What reading a form body raises, besides RequestDataTooBig: a malformed multipart
# body, too many fields or files, a form charset other than UTF-8, or a charset Python
# has no text codec for (`charset=rot13`). Django would answer 400 HTML, or 500.
UNREADABLE_BODY = (BadRequest, MultiPartParserError, SuspiciousOperation, LookupError)

# What reading the request raises when a view first touches `request.GET`, `POST` or
# `body` (too many query parameters, say): a client's error, answered 400 without the
# ERROR line and the HTML page Django would give it.
UNREADABLE_REQUEST = (BadRequest, MultiPartParserError, SuspiciousOperation)


def error(status: int, code: str, message: str, **extra: object) -> JsonResponse:
    """The API's error body: `{"error": code, "message": ..., **extra}`."""
    return JsonResponse({"error": code, "message": message, **extra}, status=status)


def refusal(refused: Refused, errors: Errors = error) -> JsonResponse:
    """The JSON error for a `Refused`, with `Retry-After` when it says when."""
    extra = dict(refused.details)
    if refused.retry_after is not None:
        extra["retry_after"] = refused.retry_after
    response = errors(refused.status, refused.code, refused.message, **extra)
    if refused.retry_after is not None:
        response["Retry-After"] = str(refused.retry_after)
    return response


def endpoint(
    *methods: str,
    same_origin_session: bool = False,
    sessions: bool = True,
    errors: Errors = error,
) -> Callable[[View], View]:
    """An API view: only `methods` (else 405 JSON with Allow), a token or a session
    (else 401 JSON, never a login redirect), and any `Refused` it raises answered
    as its JSON error, as is a request it cannot read (400, or 413). `errors`
    writes every one of these errors.

    Session requests that change state must pass Django's CSRF check; token requests
    are exempt, since a browser never attaches a token on its own. With
    `same_origin_session`, a session is accepted on a GET only from our own pages,
    because that GET starts a paid generation; without `sessions`, only a token is.
    """

    def decorate(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: object, **kwargs: object):
            if request.method not in methods:
                response = errors(
                    405, "method_not_allowed", f"Use {' or '.join(methods)}."
                )
                response["Allow"] = ", ".join(methods)
                return response
            user = await credentials.user_of(request)
            if user is False:
                return errors(
                    401, "unauthorized", "The API token is invalid or revoked."
                )
            if user is None and not sessions:
                return errors(
                    401, "unauthorized", "Send 'Authorization: Bearer <API token>'."
                )
            if user is None:
                user = await request.auser()
                if not user.is_authenticated:
                    return errors(
                        401,
                        "unauthorized",
                        "Log in or send 'Authorization: Bearer <token>'.",
                    )
                if refusal_ := _refuse_session(request, same_origin_session, errors):
                    return refusal_
            request.user = user
            try:
                return await view(request, *args, **kwargs)
            except Refused as refused:
                return refusal(refused, errors)
            except RequestDataTooBig:
                return errors(413, "too_large", "The request body is too large.")
            except UNREADABLE_REQUEST:
                return errors(400, "bad_request", "The request cannot be read.")

        return wrapper

    return decorate


def _refuse_session(
    request: HttpRequest, same_origin_only: bool, errors: Errors
) -> HttpResponse | None:
    if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
        # The check reads a form body for its token, which may not parse.
        try:
            reason = CsrfViewMiddleware(lambda r: None).process_view(
                request, None, (), {}
            )
        except RequestDataTooBig:
            return errors(413, "too_large", "The request body is too large.")
        except UNREADABLE_BODY:
            return errors(400, "bad_request", "The request body cannot be read.")
        if reason is not None:
            return errors(
                403, "csrf", "CSRF check failed; reload the page and try again."
            )
    elif same_origin_only and not _is_same_origin(request):
        return errors(
            403,
            "cross_site",
            "This request did not come from our own pages. Programs must send a "
            "personal API token: 'Authorization: Bearer <token>'.",
        )
    return None


def _is_same_origin(request: HttpRequest) -> bool:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "same-origin"
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return False
    try:
        parts = urlsplit(source)
    except ValueError:  # e.g. "http://[": not a URL, so not ours
        return False
    return (
        f"{parts.scheme}://{parts.netloc}" == f"{request.scheme}://{request.get_host()}"
    )
