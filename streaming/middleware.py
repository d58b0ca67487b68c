"""Security headers for the pages people see."""

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

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
