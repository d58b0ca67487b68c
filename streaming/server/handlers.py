"""Django's error views (config/urls.py's handler400, 403, 404 and 500): our JSON
error on the API's URLs (OpenAI's envelope under /v1/), Django's own pages
everywhere else.

Django calls them for what no view answered: a URL no route takes, or an exception
a middleware or Django itself raised (a bad Host header, a bug).
"""

import re

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views import defaults

from streaming.api import decorators, openai_errors
from streaming.api.decorators import Errors

# The OpenAI-compatible API's URLs (streaming/api/openai_compat.py).
OPENAI_PATH = "/v1/"


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return errors_for(request)(400, "bad_request", "The request cannot be read.")
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return errors_for(request)(403, "forbidden", "You may not do this.")
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return errors_for(request)(404, "not_found", "No such endpoint or stream.")
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return errors_for(request)(500, "internal", "Something went wrong on our side.")
    return defaults.server_error(request)


def errors_for(request: HttpRequest) -> Errors:
    """How an error on this API URL is written: OpenAI's envelope under /v1/."""
    if request.path_info.startswith(OPENAI_PATH):
        return openai_errors.error
    return decorators.error


def _is_api(request: HttpRequest) -> bool:
    return re.match(settings.API_URLS_REGEX, request.path_info) is not None
