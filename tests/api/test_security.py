"""Security headers, CORS, login throttling and the production settings."""

import os
import secrets
import subprocess
import sys

import pytest
from django.test import Client

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


LOGIN_FORMS = ["/accounts/login/", "/admin/login/"]


@pytest.fixture
def throttle(settings):
    """3 failures per (username, address), 5 per address, in a minute."""
    settings.LOGIN_THROTTLE_ATTEMPTS = 3
    settings.LOGIN_THROTTLE_ADDRESS_ATTEMPTS = 5
    settings.LOGIN_THROTTLE_WINDOW_SECONDS = 60


@pytest.fixture
def make_person(django_user_model):
    """`make_person()` saves a staff user (so the admin lets them in too) with a
    unique name, and returns the name; the password is "the-right-password"."""

    def make() -> str:
        name = f"person-{secrets.token_hex(4)}"
        django_user_model.objects.create_user(
            name, password="the-right-password", is_staff=True
        )
        return name

    return make


def _address() -> str:
    # Unique per test: the cache may be a Redis that outlives one test.
    return (
        f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    )


def _log_in(url: str, username: str, password: str, address: str):
    """One attempt from a fresh browser at `address`; `.logged_in` says if it worked."""
    client = Client()
    response = client.post(
        url, {"username": username, "password": password}, REMOTE_ADDR=address
    )
    response.logged_in = "_auth_user_id" in client.session
    return response


def _fail(url: str, username: str, address: str, times: int) -> list[int]:
    return [_log_in(url, username, "wrong", address).status_code for _ in range(times)]


@pytest.mark.parametrize("url", LOGIN_FORMS)
def test_a_username_and_address_that_keep_failing_are_refused(
    url, make_person, throttle
):
    name, address = make_person(), _address()

    failures = _fail(url, name, address, 3)
    refused = _log_in(url, name, "the-right-password", address)

    assert failures == [200, 200, 200]
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) == 60
    assert b"Too many failed attempts. Try again in 1 minute." in refused.content
    assert not refused.logged_in


def test_the_admin_login_is_throttled_like_the_site_login(make_person, throttle):
    """Regression: /admin/login/ took any number of wrong passwords."""
    name, address = make_person(), _address()

    failures = _fail("/admin/login/", name, address, 20)

    assert failures == [200] * 3 + [429] * 17


@pytest.mark.parametrize("url", LOGIN_FORMS)
def test_failures_from_one_address_do_not_lock_the_user_out_elsewhere(
    url, make_person, throttle
):
    """Regression: failures for a username locked it out from every address, so a
    stranger could lock anyone out."""
    name, attacker = make_person(), _address()
    _fail(url, name, attacker, 3)

    elsewhere = _log_in(url, name, "the-right-password", _address())

    assert elsewhere.status_code == 302
    assert elsewhere.logged_in
    assert _log_in(url, name, "the-right-password", attacker).status_code == 429


@pytest.mark.parametrize("url", LOGIN_FORMS)
def test_others_behind_one_address_log_in_until_the_address_cap(
    url, make_person, throttle
):
    """Regression: failures from an address locked out everyone behind it at once."""
    guesser, colleague, address = make_person(), make_person(), _address()
    _fail(url, guesser, address, 3)  # the guesser's pair is locked

    before_cap = _log_in(url, colleague, "the-right-password", address)
    _fail(url, f"nobody-{secrets.token_hex(4)}", address, 2)  # 5 from the address
    at_cap = _log_in(url, colleague, "the-right-password", address)
    elsewhere = _log_in(url, colleague, "the-right-password", _address())

    assert (before_cap.status_code, before_cap.logged_in) == (302, True)
    assert (at_cap.status_code, at_cap.logged_in) == (429, False)
    assert (elsewhere.status_code, elsewhere.logged_in) == (302, True)


@pytest.mark.parametrize("url", LOGIN_FORMS)
def test_a_login_clears_the_failures_of_its_pair(url, make_person, throttle):
    name, address = make_person(), _address()

    statuses = _fail(url, name, address, 2)
    statuses.append(_log_in(url, name, "the-right-password", address).status_code)
    statuses += _fail(url, name, address, 2)
    statuses.append(_log_in(url, name, "the-right-password", address).status_code)

    assert statuses == [200, 200, 302, 200, 200, 302]


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
