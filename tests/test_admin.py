import re

import pytest

from streaming.models import ApiToken, StreamLog

pytestmark = pytest.mark.django_db

LOGS_URL = "/admin/streaming/streamlog/"
TOKENS_URL = "/admin/streaming/apitoken/"
RAW_TOKEN = re.compile(r"relay_[A-Za-z0-9_-]{43}")


def _change_url(log: StreamLog) -> str:
    return f"{LOGS_URL}{log.pk}/change/"


def test_staff_see_every_stream_log_in_the_list(admin_client, alice_log, bob, make_log):
    bobs = make_log(bob, prompt="Tell me about tides", status="error")

    response = admin_client.get(LOGS_URL)

    assert response.status_code == 200
    page = response.content.decode()
    assert _change_url(alice_log) in page
    assert _change_url(bobs) in page
    assert "alice" in page and "bob" in page


def test_the_list_finds_logs_by_their_prompt(admin_client, alice_log, bob, make_log):
    bobs = make_log(bob, prompt="Tell me about tides")

    response = admin_client.get(LOGS_URL, {"q": "Alice"})

    page = response.content.decode()
    assert _change_url(alice_log) in page
    assert _change_url(bobs) not in page


def test_the_list_filters_by_status(admin_client, alice_log, alice, make_log):
    failed = make_log(alice, status=StreamLog.Status.ERROR, error_code="timeout")

    response = admin_client.get(LOGS_URL, {"status__exact": "error"})

    page = response.content.decode()
    assert _change_url(failed) in page
    assert _change_url(alice_log) not in page


def test_a_stream_log_is_shown_read_only(admin_client, alice_log):
    before = StreamLog.objects.values().get(pk=alice_log.pk)

    shown = admin_client.get(_change_url(alice_log))
    posted = admin_client.post(
        _change_url(alice_log), {"prompt": "changed", "status": "completed"}
    )

    assert shown.status_code == 200
    page = shown.content.decode()
    assert "Say hello to Alice" in page
    assert "Hello, Alice!" in page
    assert 'name="_save"' not in page
    assert posted.status_code == 403
    assert StreamLog.objects.values().get(pk=alice_log.pk) == before


def test_stream_logs_cannot_be_added_in_admin(admin_client):
    response = admin_client.get(f"{LOGS_URL}add/")

    assert response.status_code == 403
    assert not StreamLog.objects.exists()


def test_an_error_is_shown_folded_and_escaped(admin_client, alice, make_log):
    log = make_log(
        alice,
        status=StreamLog.Status.ERROR,
        error_code="unavailable",
        error_message="Upstream said <script>alert(1)</script>",
    )

    response = admin_client.get(_change_url(log))

    page = response.content.decode()
    assert "<details><summary>unavailable</summary>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page


@pytest.mark.parametrize("url", [LOGS_URL, TOKENS_URL])
def test_non_staff_are_sent_to_the_admin_login(client, alice, url):
    client.force_login(alice)

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={url}"


def test_anonymous_visitors_are_sent_to_the_admin_login(client):
    response = client.get(LOGS_URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_adding_a_token_shows_its_secret_once_and_stores_only_a_hash(
    admin_client, client, alice
):
    response = admin_client.post(
        f"{TOKENS_URL}add/",
        {"user": alice.pk, "name": "laptop", "revoked_at_0": "", "revoked_at_1": ""},
        follow=True,
    )

    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    shown = [m for m in messages if RAW_TOKEN.search(m)]
    assert len(shown) == 1
    raw = RAW_TOKEN.search(shown[0]).group()
    assert "not shown again" in shown[0]
    token = ApiToken.objects.get()
    assert (token.user, token.name) == (alice, "laptop")
    assert token.key_hash == ApiToken.hash(raw)
    assert token.prefix == raw[:12]
    assert raw not in str(ApiToken.objects.values().get())
    # Never again: not in the list, not on the token's page.
    for url in (TOKENS_URL, f"{TOKENS_URL}{token.pk}/change/"):
        assert raw not in admin_client.get(url).content.decode()
    # And it works.
    used = client.get("/streams/0/events", headers={"Authorization": f"Bearer {raw}"})
    assert used.status_code == 404


def test_revoking_a_token_in_admin_keeps_its_hash_and_locks_it_out(
    admin_client, client, alice, make_token
):
    raw = make_token(alice, name="old")
    token = ApiToken.objects.get()

    response = admin_client.post(
        f"{TOKENS_URL}{token.pk}/change/",
        {
            "user": alice.pk,
            "name": "old",
            "revoked_at_0": "2025-01-01",
            "revoked_at_1": "00:00:00",
        },
        follow=True,
    )

    assert response.status_code == 200
    assert not any(RAW_TOKEN.search(str(m)) for m in response.context["messages"])
    token.refresh_from_db()
    assert token.key_hash == ApiToken.hash(raw)
    assert token.revoked_at is not None
    used = client.get("/streams/0/events", headers={"Authorization": f"Bearer {raw}"})
    assert used.status_code == 401


@pytest.mark.django_db
def test_admin_pages_never_show_a_provider_key(admin_client, alice, make_log, settings):
    secret = "sk-admin-page-secret-0123456789"
    settings.OPENAI_API_KEY = secret
    settings.ANTHROPIC_API_KEY = secret
    log = make_log(alice, provider="openai", model="gpt-4o-mini", error_code="auth")

    pages = [
        "/admin/streaming/streamlog/",
        f"/admin/streaming/streamlog/{log.pk}/change/",
        f"/admin/streaming/streamlog/{log.pk}/live/",
        "/admin/streaming/streamlog/usage/",
        "/admin/streaming/streamlog/usage/?format=csv",
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        assert secret not in response.content.decode(), page


def test_a_stream_log_shows_its_system_prompt(admin_client, alice, make_log):
    log = make_log(alice, system_prompt="You are <b>terse</b>.")
    page = admin_client.get(_change_url(log)).content.decode()
    assert "You are &lt;b&gt;terse&lt;/b&gt;." in page


def test_a_stream_log_shows_its_reasoning_folded_and_escaped(
    admin_client, alice, make_log
):
    log = make_log(alice, reasoning="Weigh <script>alert(1)</script>\nthen answer.")

    page = admin_client.get(_change_url(log)).content.decode()

    assert (
        '<details><summary>44 characters</summary><div class="reasoning">'
        "Weigh &lt;script&gt;alert(1)&lt;/script&gt;\nthen answer.</div></details>"
    ) in page
    assert "<script>alert(1)" not in page


def test_a_stream_log_without_reasoning_shows_a_dash(admin_client, alice_log):
    page = admin_client.get(_change_url(alice_log)).content.decode()

    assert '<div class="reasoning">' not in page
    shown = " ".join(page.split())
    assert '<label>Reasoning:</label> <div class="readonly">-</div>' in shown
