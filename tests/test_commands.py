import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from streaming.models import ApiToken

pytestmark = pytest.mark.django_db


def _call(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_api_token_prints_a_token_that_authenticates(client, alice):
    raw = _call("create_api_token", "alice", "--name", "ci").strip()

    token = ApiToken.objects.get()
    assert (token.user, token.name) == (alice, "ci")
    assert raw.startswith("relay_")
    assert token.key_hash == ApiToken.hash(raw)
    assert raw not in str(ApiToken.objects.values().get())
    authorised = client.get(
        "/streams/0/events", headers={"Authorization": f"Bearer {raw}"}
    )
    refused = client.get(
        "/streams/0/events", headers={"Authorization": "Bearer relay_x"}
    )
    assert authorised.status_code == 404  # known user, no such stream
    assert refused.status_code == 401


def test_create_api_token_makes_a_new_token_each_time(alice):
    first = _call("create_api_token", "alice").strip()
    second = _call("create_api_token", "alice").strip()

    assert first != second
    assert ApiToken.objects.filter(user=alice, name="cli").count() == 2


def test_create_api_token_refuses_an_unknown_user():
    with pytest.raises(CommandError, match="No user 'nobody'"):
        _call("create_api_token", "nobody")

    assert not ApiToken.objects.exists()


def test_ensure_admin_creates_one_superuser_with_a_password_shown_once():
    first = _call("ensure_admin")
    second = _call("ensure_admin")

    password = re.search(r"password: (\S+)", first).group(1)
    user = get_user_model().objects.get()
    assert user.username == "admin"
    assert user.is_superuser and user.is_staff
    assert user.check_password(password)
    assert len(password) >= 16
    assert second == ""
    assert get_user_model().objects.count() == 1


def test_ensure_admin_takes_a_username():
    output = _call("ensure_admin", "--username", "root")

    assert "username: root" in output
    assert get_user_model().objects.get().username == "root"


def test_ensure_admin_does_nothing_once_there_are_users(alice):
    output = _call("ensure_admin")

    assert output == ""
    assert list(get_user_model().objects.all()) == [alice]
    assert not alice.is_superuser
