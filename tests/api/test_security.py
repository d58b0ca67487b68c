"""Security headers, CORS, login throttling and the production settings."""

import os
import secrets
import subprocess
import sys

import pytest

from streaming.server.middleware import ADMIN_POLICY, PAGE_POLICY
from tests.helpers import BASE_DIR


def test_pages_forbid_inline_scripts_other_origins_and_framing(client, alice):
    client.force_login(alice)

    response = client.get("/")

    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert policy == PAGE_POLICY
    assert "script-src 'self';" in policy and "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_the_admin_allows_inline_styles_but_no_inline_scripts(admin_client):
    response = admin_client.get("/admin/")

    assert response["Content-Security-Policy"] == ADMIN_POLICY
    assert "script-src 'self';" in ADMIN_POLICY


def test_the_login_page_has_the_policy_too(client):
    assert client.get("/accounts/login/")["Content-Security-Policy"] == PAGE_POLICY


def test_cors_is_off_by_default(client):
    response = client.options(
        "/streams/",
        headers={
            "Origin": "https://elsewhere.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )

    assert "Access-Control-Allow-Origin" not in response


def test_cors_answers_listed_origins_only_and_only_on_the_api(client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example"]
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }

    listed = client.options(
        "/streams/", headers={"Origin": "https://app.example", **preflight}
    )
    other = client.options(
        "/streams/", headers={"Origin": "https://evil.example", **preflight}
    )
    page = client.get("/accounts/login/", headers={"Origin": "https://app.example"})

    assert listed.status_code == 200
    assert listed["Access-Control-Allow-Origin"] == "https://app.example"
    assert "authorization" in listed["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Origin" not in other
    assert "Access-Control-Allow-Origin" not in page


@pytest.fixture
def throttle(settings):
    settings.LOGIN_THROTTLE_ATTEMPTS = 3
    settings.LOGIN_THROTTLE_WINDOW_SECONDS = 60


def _log_in(client, username: str, password: str, address: str):
    return client.post(
        "/accounts/login/",
        {"username": username, "password": password},
        REMOTE_ADDR=address,
    )


def test_login_attempts_are_throttled_by_username(client, django_user_model, throttle):
    name = f"victim-{secrets.token_hex(4)}"
    django_user_model.objects.create_user(name, password="the-right-password")

    failures = [
        _log_in(client, name, "wrong", f"10.0.0.{i}").status_code for i in range(3)
    ]
    refused = _log_in(client, name, "the-right-password", "10.0.0.9")

    assert failures == [200, 200, 200]
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) == 60
    assert b"Too many failed attempts" in refused.content
    assert "_auth_user_id" not in client.session


def test_login_attempts_are_throttled_by_address(client, django_user_model, throttle):
    address = f"10.1.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    names = [f"guess-{secrets.token_hex(4)}" for _ in range(4)]
    django_user_model.objects.create_user(names[3], password="the-right-password")

    for name in names[:3]:
        assert _log_in(client, name, "wrong", address).status_code == 200
    refused = _log_in(client, names[3], "the-right-password", address)
    elsewhere = _log_in(client, names[3], "the-right-password", "10.2.0.1")

    assert refused.status_code == 429
    assert elsewhere.status_code == 302


def test_production_settings_pass_the_deploy_check(static_root):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "SECURE_", "SESSION_", "CSRF_"))
    }
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="chat.example.com",
        CSRF_TRUSTED_ORIGINS="https://chat.example.com",
        SECURE_PROXY_SSL_HEADER="true",
        STATIC_ROOT=str(static_root),  # collected, as the deploy doc says
        # Production runs several processes, so the deploy check wants Redis.
        REDIS_URL="redis://127.0.0.1:6379/0",
    )

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"} | {
        "DEBUG": "false"
    }

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "Set SECRET_KEY when DEBUG is off." in result.stderr
