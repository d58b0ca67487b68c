import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from streaming.server import staticfiles
from streaming.server.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_asgi_application()

if settings.DEBUG:
    # In development daphne serves static/ itself (as `runserver` does).
    application = ASGIStaticFilesHandler(application)
else:
    # In production the app serves what collectstatic put in STATIC_ROOT, before
    # Django sees the request (nginx may serve STATIC_ROOT instead: docs/deploy.md).
    application = staticfiles.serve(application)
