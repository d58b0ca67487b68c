"""Who is asking: a personal API token (`Authorization: Bearer`) or a session."""

import functools
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from streaming import caching
from streaming.models import ApiToken

View = Callable[..., Awaitable[HttpResponse]]

# What reading a form body raises, besides RequestDataTooBig: a malformed multipart
# body, too many fields or files, a form charset other than UTF-8, or a charset Python
# has no text codec for (`charset=rot13`). Django would answer 400 HTML, or 500.
UNREADABLE_BODY = (BadRequest, MultiPartParserError, SuspiciousOperation, LookupError)


def error(status: int, code: str, message: str, **extra: object) -> JsonResponse:
    return JsonResponse({"error": code, "message": message, **extra}, status=status)


def allow(*methods: str) -> Callable[[View], View]:
    """Like Django's require_http_methods, but the 405 is JSON like every API error."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: object, **kwargs: object):
            if request.method not in methods:
                response = error(
                    405, "method_not_allowed", f"Use {' or '.join(methods)}."
                )
                response["Allow"] = ", ".join(methods)
                return response
            return await view(request, *args, **kwargs)

        return wrapper

    return decorate


async def _token_user(request: HttpRequest) -> AbstractBaseUser | None | bool:
    """The token's user; None without a bearer token; False for a bad one."""
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    key_hash = ApiToken.hash(raw.strip())
    user = await caching.call(cache.get, _token_key(key_hash))
    if user is None:
        user = await sync_to_async(_token_owner)(key_hash)
        if user is None:
            return False
        await caching.call(cache.set, _token_key(key_hash), user, caching.CACHE_SECONDS)
    if not user.is_active:
        return False
    # Record use at most once a minute, so a busy token does not write per request.
    if await caching.call(cache.add, f"token-used:{key_hash}", 1, 60):
        await ApiToken.objects.filter(key_hash=key_hash).aupdate(
            last_used_at=timezone.now()
        )
    return user


def _token_owner(key_hash: str) -> AbstractBaseUser | None:
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=key_hash, revoked_at__isnull=True)
        .first()
    )
    return None if token is None else token.user


def _token_key(key_hash: str) -> str:
    return f"token:{key_hash}"


@receiver([post_save, post_delete], sender=ApiToken)
def _forget_token(instance: ApiToken, **kwargs: object) -> None:
    cache.delete(_token_key(instance.key_hash))


@receiver([post_save, post_delete], sender=get_user_model())
def _forget_users_tokens(instance: AbstractBaseUser, **kwargs: object) -> None:
    """A user deactivated, made staff or deleted: their tokens are looked up again."""
    hashes = ApiToken.objects.filter(user_id=instance.pk).values_list(
        "key_hash", flat=True
    )
    cache.delete_many([_token_key(key_hash) for key_hash in hashes])


def api_auth(*, same_origin_session: bool = False) -> Callable[[View], View]:
    """Require a token or a session; answer 401 JSON (never a login redirect).

    Session requests that change state must pass Django's CSRF check; token requests
    are exempt, since a browser never attaches a token on its own. With
    `same_origin_session`, a session is accepted on a GET only from our own pages,
    because that GET starts a paid generation.
    """

    def decorate(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: object, **kwargs: object):
            user = await _token_user(request)
            if user is False:
                return error(
                    401, "unauthorized", "The API token is invalid or revoked."
                )
            if user is None:
                user = await request.auser()
                if not user.is_authenticated:
                    return error(
                        401,
                        "unauthorized",
                        "Log in or send 'Authorization: Bearer <token>'.",
                    )
                if refusal := _refuse_session(request, same_origin_session):
                    return refusal
            request.user = user
            return await view(request, *args, **kwargs)

        return wrapper

    return decorate


def _refuse_session(
    request: HttpRequest, same_origin_only: bool
) -> HttpResponse | None:
    if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
        # The check reads a form body for its token, which may not parse.
        try:
            reason = CsrfViewMiddleware(lambda r: None).process_view(
                request, None, (), {}
            )
        except RequestDataTooBig:
            return error(413, "too_large", "The request body is too large.")
        except UNREADABLE_BODY:
            return error(400, "bad_request", "The request body cannot be read.")
        if reason is not None:
            return error(
                403, "csrf", "CSRF check failed; reload the page and try again."
            )
    elif same_origin_only and not _is_same_origin(request):
        return error(
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
