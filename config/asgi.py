import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from streaming.server.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_asgi_application()

if settings.DEBUG:
    # In development daphne serves static files itself (as `runserver` does);
    # in production the reverse proxy serves STATIC_ROOT.
    application = ASGIStaticFilesHandler(application)
