from django.contrib import admin
from django.urls import include, path

from streaming.pages.login import LoginView
from streaming.server.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("streaming.urls")),
]
