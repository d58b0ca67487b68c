"""Logging in, with a brake on password guessing that locks no one else out.

Failures are counted per (username, client address) pair, LOGIN_THROTTLE_ATTEMPTS
in LOGIN_THROTTLE_WINDOW_SECONDS, so a stranger guessing a user's password from
elsewhere cannot lock that user out; and per address, a higher
LOGIN_THROTTLE_ADDRESS_ATTEMPTS, so one address cannot try many usernames while
the people behind a shared address still log in. A login clears its pair.
"""

import functools
import hashlib
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

View = Callable[..., HttpResponse]


def throttled(view: View) -> View:
    """Wrap a login view (Django's or the admin's): a POST from a pair or an address
    over its cap gets 429 with `Retry-After`; a failed one (the form comes back,
    200) counts against both; a successful one (a redirect) clears the pair."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        pair, address = _keys(request)
        if (
            cache.get(pair, 0) >= settings.LOGIN_THROTTLE_ATTEMPTS
            or cache.get(address, 0) >= settings.LOGIN_THROTTLE_ADDRESS_ATTEMPTS
        ):
            return _refusal(request)
        response = view(request, *args, **kwargs)
        if response.status_code == 200:
            _count(pair)
            _count(address)
        elif 300 <= response.status_code < 400:
            cache.delete(pair)
        return response

    return wrapper


def _keys(request: HttpRequest) -> tuple[str, str]:
    address = request.META.get("REMOTE_ADDR", "")
    username = request.POST.get("username", "").strip().lower()
    pair = f"{username}\0{address}".encode("utf-8", "replace")
    digest = hashlib.sha256(pair).hexdigest()[:32]
    return f"login:pair:{digest}", f"login:addr:{address}"


def _count(key: str) -> None:
    window = settings.LOGIN_THROTTLE_WINDOW_SECONDS
    cache.add(key, 0, window)
    try:
        cache.incr(key)
    except ValueError:  # it expired between the two calls
        cache.set(key, 1, window)


def _refusal(request: HttpRequest) -> HttpResponse:
    window = settings.LOGIN_THROTTLE_WINDOW_SECONDS
    context = {"minutes": max(1, window // 60)}
    response = TemplateResponse(
        request, "registration/throttled.html", context, status=429
    )
    response["Retry-After"] = str(window)
    return response
