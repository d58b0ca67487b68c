"""Static files in production: hashed, compressed, served before Django.

`manage.py collectstatic` writes each file under STATIC_ROOT with a content hash in
its name (`chat.3f1c0b9a2e4d.js`), plus gzip and Brotli copies, and rewrites the
references between files, the ES-module imports of our scripts included. `serve()`
wraps the ASGI application in ServeStatic, which answers `/static/...` from memory
(the file list is read once, at startup) without entering Django, and hands every
other request to the application untouched: a stream request gains no thread trip
(WhiteNoise's middleware is synchronous, so Django would run each request's
middleware chain on a thread for it).
"""

from collections.abc import Callable
from wsgiref.headers import Headers

from django.conf import settings
from django.contrib.staticfiles.storage import staticfiles_storage
from servestatic import ServeStaticASGI
from servestatic.storage import CompressedManifestStaticFilesStorage


class Storage(CompressedManifestStaticFilesStorage):
    # Rewrite `import … from "./sse-client.js"` to the hashed name, or a browser
    # would fetch the unhashed file, cached for a minute instead of a year.
    support_js_module_import_aggregation = True


def serve(application: Callable) -> ServeStaticASGI:
    """`application`, with STATIC_ROOT served under STATIC_URL: hashed names cached
    for ten years as immutable, others for a minute, compressed copies to clients
    that accept them."""
    hashed = set(getattr(staticfiles_storage, "hashed_files", {}).values())
    prefix = f"/{settings.STATIC_URL.lstrip('/')}"
    return ServeStaticASGI(
        application,
        root=settings.STATIC_ROOT,
        prefix=prefix,
        immutable_file_test=lambda path, url: url.removeprefix(prefix) in hashed,
        add_headers_function=_add_headers,
    )


def _add_headers(headers: Headers, path: str, url: str) -> None:
    # What SecurityMiddleware adds to Django's responses, which these never enter.
    headers["X-Content-Type-Options"] = "nosniff"
