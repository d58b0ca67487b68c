from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import include, path

from streaming.pages.login import throttled
from streaming.server.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Before admin.site.urls, so the admin's own login route is never reached.
    path("admin/login/", throttled(admin.site.login)),
    path("admin/", admin.site.urls),
    path("accounts/login/", throttled(LoginView.as_view()), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("streaming.urls")),
]

# Our JSON error on the API's URLs, Django's pages elsewhere.
handler400 = "streaming.server.handlers.bad_request"
handler403 = "streaming.server.handlers.permission_denied"
handler404 = "streaming.server.handlers.page_not_found"
handler500 = "streaming.server.handlers.server_error"
