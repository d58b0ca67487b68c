"""System checks for the mistakes that quietly break Server-Sent Events in production.

`manage.py check` runs the first group; `manage.py check --deploy` adds the channel
layer check, which only matters once more than one process serves, and the check
that collectstatic has run.
"""

from django.conf import settings
from django.contrib.staticfiles.storage import (
    ManifestStaticFilesStorage,
    staticfiles_storage,
)
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

# Middleware known to compress or buffer a response body, streams included.
BUFFERING_MIDDLEWARE = {
    "django.middleware.gzip.GZipMiddleware": "it gzips, and so buffers, event streams",
    "django.middleware.http.ConditionalGetMiddleware": "it hashes whole responses",
    "brotli_asgi.BrotliMiddleware": "it compresses event streams",
    "django_brotli.middleware.BrotliMiddleware": "it compresses event streams",
}


@register(Tags.compatibility)
def check_asgi(app_configs: object = None, **kwargs: object) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    if not getattr(settings, "ASGI_APPLICATION", None):
        problems.append(
            Error(
                "ASGI_APPLICATION is not set.",
                hint="Streams need ASGI: under WSGI Django drains a streaming body "
                "before sending it. Serve config.asgi:application with daphne.",
                id="streaming.E001",
            )
        )
    if settings.INSTALLED_APPS[0] != "daphne":
        problems.append(
            Warning(
                "'daphne' is not first in INSTALLED_APPS.",
                hint="Put it first so `runserver` serves ASGI too.",
                id="streaming.W002",
            )
        )
    for path in settings.MIDDLEWARE:
        if path in BUFFERING_MIDDLEWARE:
            problems.append(
                Error(
                    f"{path} is in MIDDLEWARE: {BUFFERING_MIDDLEWARE[path]}.",
                    hint="Remove it, or let the reverse proxy compress pages "
                    "(never text/event-stream).",
                    id="streaming.E003",
                )
            )
    return problems


# Django's deploy checks look for these exact paths (security.W001, W002, W003, which
# settings silence); ours accept the subclasses in streaming.middleware as well.
PROTECTIVE_MIDDLEWARE = {
    "django.middleware.security.SecurityMiddleware": "security headers and HTTPS",
    "django.middleware.clickjacking.XFrameOptionsMiddleware": "X-Frame-Options",
    "django.middleware.csrf.CsrfViewMiddleware": "CSRF protection",
}


@register(Tags.security, deploy=True)
def check_protective_middleware(
    app_configs: object = None, **kwargs: object
) -> list[CheckMessage]:
    installed = [import_string(path) for path in settings.MIDDLEWARE]
    return [
        Warning(
            f"Neither {path} nor a subclass of it is in MIDDLEWARE.",
            hint=f"Without it there is no {what}.",
            id="streaming.W008",
        )
        for path, what in PROTECTIVE_MIDDLEWARE.items()
        if not any(
            isinstance(cls, type) and issubclass(cls, import_string(path))
            for cls in installed
        )
    ]


@register(Tags.compatibility)
def check_sse_response(
    app_configs: object = None, **kwargs: object
) -> list[CheckMessage]:
    """The response helper itself: async body, no Connection header, no buffering."""
    from streaming import sse

    async def frames():
        yield ""

    body = frames()
    response = sse.response(body)
    problems: list[CheckMessage] = []
    if not response.is_async:
        problems.append(
            Error(
                "sse.response() does not stream an async iterator.",
                hint="A sync iterator under ASGI is drained in a thread before sending.",
                id="streaming.E004",
            )
        )
    if response.has_header("Connection"):
        problems.append(
            Error(
                "sse.response() sets a Connection header.",
                hint="It is forbidden in HTTP/2, and Safari drops such streams.",
                id="streaming.E005",
            )
        )
    if response.get("X-Accel-Buffering") != "no":
        problems.append(
            Error(
                "sse.response() does not send 'X-Accel-Buffering: no'.",
                hint="Without it nginx buffers tokens until its buffer fills.",
                id="streaming.E006",
            )
        )
    return problems


@register(Tags.compatibility, deploy=True)
def check_channel_layer(
    app_configs: object = None, **kwargs: object
) -> list[CheckMessage]:
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    if backend.endswith("InMemoryChannelLayer"):
        return [
            Warning(
                "The channel layer is in memory: it reaches this process only.",
                hint="With more than one daphne process, set REDIS_URL so that "
                "viewers, resumes and Stop reach a stream on any process.",
                id="streaming.W007",
            )
        ]
    return []


@register(Tags.staticfiles, deploy=True)
def check_collected_static(
    app_configs: object = None, **kwargs: object
) -> list[CheckMessage]:
    storage = staticfiles_storage
    if not isinstance(storage, ManifestStaticFilesStorage):
        return []  # DEBUG: served from static/ as they are
    if storage.manifest_storage.exists(storage.manifest_name):
        return []
    return [
        Warning(
            f"STATIC_ROOT ({settings.STATIC_ROOT}) holds no collected static files.",
            hint="Run `manage.py collectstatic --noinput`: with DEBUG off every page "
            "names its scripts by their hashed names, and fails without them.",
            id="streaming.W009",
        )
    ]
