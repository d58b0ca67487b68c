"""Logging in, with a brake on password guessing."""

import hashlib

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse


class LoginView(auth_views.LoginView):
    """Django's login view that refuses, with 429, a client address or a username
    that failed LOGIN_THROTTLE_ATTEMPTS times within the window."""

    def post(
        self, request: HttpRequest, *args: object, **kwargs: object
    ) -> HttpResponse:
        keys = _keys(request)
        if any(cache.get(key, 0) >= settings.LOGIN_THROTTLE_ATTEMPTS for key in keys):
            minutes = max(1, settings.LOGIN_THROTTLE_WINDOW_SECONDS // 60)
            context = self.get_context_data(throttled_minutes=minutes)
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(settings.LOGIN_THROTTLE_WINDOW_SECONDS)
            return response
        response = super().post(request, *args, **kwargs)
        if response.status_code == 200:  # the form came back: wrong credentials
            for key in keys:
                cache.add(key, 0, settings.LOGIN_THROTTLE_WINDOW_SECONDS)
                cache.incr(key)
        return response


def _keys(request: HttpRequest) -> list[str]:
    username = request.POST.get("username", "").strip().lower()
    digest = hashlib.sha256(username.encode("utf-8", "replace")).hexdigest()[:32]
    return [f"login:addr:{request.META.get('REMOTE_ADDR', '')}", f"login:user:{digest}"]
