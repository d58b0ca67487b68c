import csv
import datetime as dt
import io
import re

import pytest
from django.contrib.auth.models import Permission

from streaming.accounting import limits, usage
from streaming.models import StreamLog, UsageLimit

pytestmark = pytest.mark.django_db

LOGS_URL = "/admin/streaming/streamlog/"
USAGE_URL = "/admin/streaming/streamlog/usage/"
LIMITS_URL = "/admin/streaming/usagelimit/"
SVG = re.compile(r"<svg class=\"usage-chart\".*?</svg>", re.S)
BAR = re.compile(r'<g class="day"><title>([^<]*)</title>.*?<rect class="bar"[^>]*>')
EVIL = "<script>x</script>"


def _day(days_ago: int) -> dt.date:
    return usage.today() - dt.timedelta(days=days_ago)


def _at(days_ago: int, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(_day(days_ago), dt.time(hour, minute), tzinfo=dt.UTC)


def _rows(response) -> list[tuple]:
    return [
        (
            row.day,
            row.username,
            row.streams,
            row.errors,
            row.input_tokens,
            row.output_tokens,
            row.total_tokens,
            row.estimated,
        )
        for row in response.context["rows"]
    ]


def _user_form(user) -> dict[str, object]:
    """What the admin's user change form posts for `user`, unchanged."""
    return {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": user.email,
        "is_active": "on",
        "date_joined_0": user.date_joined.date().isoformat(),
        "date_joined_1": "00:00:00",
        "last_login_0": "",
        "last_login_1": "",
    }


def test_the_report_sums_usage_per_user_per_utc_day(
    admin_client, settings, alice, bob, make_log
):
    # Auckland is half a day ahead: counting in local time would merge these days.
    settings.TIME_ZONE = "Pacific/Auckland"
    make_log(alice, created_at=_at(1, 8), input_tokens=5, output_tokens=0,
             status=StreamLog.Status.ERROR, tokens_estimated=True)  # fmt: skip
    make_log(alice, created_at=_at(1, 23, 30), input_tokens=10, output_tokens=20)
    make_log(alice, created_at=_at(0, 0, 30), input_tokens=100, output_tokens=200)
    make_log(bob, created_at=_at(1), input_tokens=7, output_tokens=3,
             status=StreamLog.Status.INTERRUPTED, tokens_estimated=True)  # fmt: skip
    make_log(bob, created_at=_at(0), status=StreamLog.Status.STREAMING)  # no counts yet

    response = admin_client.get(USAGE_URL)

    assert response.status_code == 200
    assert _rows(response) == [
        (_day(0), "alice", 1, 0, 100, 200, 300, 0),
        (_day(0), "bob", 1, 0, 0, 0, 0, 0),
        (_day(1), "alice", 2, 1, 15, 20, 35, 1),
        (_day(1), "bob", 1, 1, 7, 3, 10, 1),
    ]
    assert response.context["totals"] == {
        "streams": 5,
        "errors": 2,
        "input_tokens": 122,
        "output_tokens": 223,
        "total_tokens": 345,
        "estimated": 2,
        "cached_input_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost": None,
    }
    page = response.content.decode()
    assert f"<td>{_day(1).isoformat()}</td>" in page
    assert '<td class="num">345</td>' in page


def test_the_day_filter_leaves_out_older_days(admin_client, alice, bob, make_log):
    make_log(alice, created_at=_at(0), input_tokens=1, output_tokens=1)
    make_log(bob, created_at=_at(9), input_tokens=1, output_tokens=1)
    make_log(bob, created_at=_at(30), input_tokens=1, output_tokens=1)

    week = admin_client.get(USAGE_URL, {"days": "7"})
    month = admin_client.get(USAGE_URL)

    assert [(day, name) for day, name, *_ in _rows(week)] == [(_day(0), "alice")]
    assert [(day, name) for day, name, *_ in _rows(month)] == [
        (_day(0), "alice"),
        (_day(9), "bob"),
    ]
    assert len(BAR.findall(SVG.search(week.content.decode()).group())) == 7


def test_the_user_filter_shows_one_user(admin_client, alice, bob, make_log):
    make_log(alice, created_at=_at(0), input_tokens=1, output_tokens=1)
    make_log(bob, created_at=_at(0), input_tokens=40, output_tokens=2)

    response = admin_client.get(USAGE_URL, {"user": "bob"})

    assert _rows(response) == [(_day(0), "bob", 1, 0, 40, 2, 42, 0)]
    assert 'aria-label="Total tokens per day, last 30 days, bob"' in (
        response.content.decode()
    )


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"days": "0"}, "greater than or equal to 1"),
        ({"days": "x"}, "Enter a whole number."),
        ({"user": "nobody"}, "No user has this username."),
    ],
)
def test_a_bad_filter_is_refused_with_the_reason(
    admin_client, alice_log, query, reason
):
    response = admin_client.get(USAGE_URL, query)

    assert response.status_code == 400
    page = response.content.decode()
    assert reason in page
    assert not SVG.search(page)
    assert "rows" not in response.context


def test_the_charts_have_one_bar_per_day_for_30_days(admin_client, alice, make_log):
    make_log(alice, created_at=_at(0), input_tokens=1200, output_tokens=34)
    make_log(alice, created_at=_at(29), input_tokens=1, output_tokens=1)
    make_log(alice, created_at=_at(29, 13), input_tokens=1, output_tokens=1)

    response = admin_client.get(USAGE_URL)

    tokens, streams = SVG.findall(response.content.decode())
    for svg, label in ((tokens, "Total tokens per day"), (streams, "Streams per day")):
        assert 'role="img"' in svg
        assert f'aria-label="{label}, last 30 days"' in svg
        assert f"<title>{label}, last 30 days</title>" in svg
        assert "date (UTC)" in svg
    token_bars = BAR.findall(tokens)
    assert token_bars[0] == f"{_day(29).isoformat()}: 4 tokens"
    assert token_bars[1] == f"{_day(28).isoformat()}: 0 tokens"
    assert token_bars[-1] == f"{_day(0).isoformat()}: 1,234 tokens"
    assert len(token_bars) == 30
    stream_bars = BAR.findall(streams)
    assert (stream_bars[0], stream_bars[-1]) == (
        f"{_day(29).isoformat()}: 2 streams",
        f"{_day(0).isoformat()}: 1 stream",
    )
    assert len(stream_bars) == 30


def test_an_idle_day_has_an_empty_bar_and_a_busy_one_a_tall_bar(
    admin_client, alice, make_log
):
    make_log(alice, created_at=_at(0), input_tokens=50, output_tokens=50)

    response = admin_client.get(USAGE_URL)

    tokens = SVG.search(response.content.decode()).group()
    heights = [
        float(h) for h in re.findall(r'class="bar"[^>]*height="([\d.]+)"', tokens)
    ]
    assert heights[:-1] == [0.0] * 29
    assert heights[-1] > 100


def test_a_malicious_username_is_escaped_in_the_table_and_the_chart(
    admin_client, django_user_model, make_log
):
    evil = django_user_model.objects.create_user(EVIL)
    make_log(evil, created_at=_at(0), input_tokens=1, output_tokens=1)

    response = admin_client.get(USAGE_URL, {"user": EVIL})

    assert response.status_code == 200
    page = response.content.decode()
    assert EVIL not in page
    escaped = "&lt;script&gt;x&lt;/script&gt;"
    assert "<td><a href=" in page and f">{escaped}</a></td>" in page
    svg = SVG.search(page).group()
    assert f'aria-label="Total tokens per day, last 30 days, {escaped}"' in svg


@pytest.mark.parametrize("name", ["=cmd()", "+1", "-1", "@SUM(A1)"])
def test_the_csv_export_has_the_rows_and_defuses_formulas(
    admin_client, django_user_model, alice, make_log, name
):
    sneaky = django_user_model.objects.create_user(name)
    make_log(alice, created_at=_at(0), input_tokens=3, output_tokens=4)
    make_log(sneaky, created_at=_at(2), input_tokens=5, output_tokens=6,
             status=StreamLog.Status.ERROR, tokens_estimated=True)  # fmt: skip

    response = admin_client.get(USAGE_URL, {"format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="usage-{_day(29)}-{_day(0)}.csv"'
    )
    assert list(csv.reader(io.StringIO(response.content.decode()))) == [
        [
            "date",
            "user",
            "streams",
            "errors",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "estimated_rows",
            "cached_input_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "cost",
        ],
        [_day(0).isoformat(), "alice", "1", "0", "3", "4", "7", "0", "0", "0", "0", ""],
        [
            _day(2).isoformat(),
            f"'{name}",
            "1",
            "1",
            "5",
            "6",
            "11",
            "1",
            "0",
            "0",
            "0",
            "",
        ],
    ]


def test_the_csv_export_follows_the_filters(admin_client, alice, bob, make_log):
    make_log(alice, created_at=_at(0), input_tokens=3, output_tokens=4)
    make_log(bob, created_at=_at(0), input_tokens=3, output_tokens=4)
    make_log(bob, created_at=_at(20), input_tokens=3, output_tokens=4)

    response = admin_client.get(USAGE_URL, {"format": "csv", "user": "bob", "days": 7})

    lines = response.content.decode().splitlines()
    assert lines[1:] == [f"{_day(0).isoformat()},bob,1,0,3,4,7,0,0,0,0,"]
    page = admin_client.get(USAGE_URL, {"user": "bob", "days": 7}).content.decode()
    assert 'href="?user=bob&amp;days=7&amp;format=csv"' in page


@pytest.mark.parametrize("query", [{}, {"format": "csv"}])
def test_non_staff_are_sent_to_the_admin_login(client, alice, alice_log, query):
    client.force_login(alice)

    response = client.get(USAGE_URL, query)

    assert response.status_code == 302
    assert response["Location"].startswith(f"/admin/login/?next={USAGE_URL}")


def test_anonymous_visitors_are_sent_to_the_admin_login(client, alice_log):
    response = client.get(USAGE_URL)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={USAGE_URL}"


def test_staff_need_the_permission_to_view_stream_logs(client, dave, alice_log):
    client.force_login(dave)

    refused = client.get(USAGE_URL)
    dave.user_permissions.add(Permission.objects.get(codename="view_streamlog"))
    allowed = client.get(USAGE_URL)

    assert refused.status_code == 403
    assert allowed.status_code == 200
    assert [name for _, name, *_ in _rows(allowed)] == ["alice"]


def test_the_stream_log_list_links_to_usage(admin_client):
    response = admin_client.get(LOGS_URL)

    assert response.status_code == 200
    assert f'<a href="{USAGE_URL}" class="viewlink">Usage</a>' in (
        response.content.decode()
    )


def test_the_user_page_shows_the_limits_with_the_site_defaults(
    admin_client, settings, alice
):
    settings.LIMIT_CONCURRENT_STREAMS = 4
    settings.LIMIT_STARTS_PER_MINUTE = 25
    settings.LIMIT_TOKENS_PER_DAY = 150_000

    response = admin_client.get(f"/admin/auth/user/{alice.pk}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="usage_limit-TOTAL_FORMS"' in page
    assert 'name="usage_limit-MAX_NUM_FORMS" value="1"' in page
    assert "Empty: the site default (4)." in page
    assert "Empty: the site default (25)." in page
    assert "0 means unlimited. Empty: the site default (150,000)." in page


def test_an_unlimited_default_says_so(admin_client, settings, alice):
    settings.LIMIT_TOKENS_PER_DAY = 0

    response = admin_client.get(f"/admin/auth/user/{alice.pk}/change/")

    assert "Empty: the site default (unlimited)." in response.content.decode()


def test_saving_the_user_page_creates_the_limit_override(admin_client, alice):
    data = _user_form(alice) | {
        "usage_limit-TOTAL_FORMS": "1",
        "usage_limit-INITIAL_FORMS": "0",
        "usage_limit-MIN_NUM_FORMS": "0",
        "usage_limit-MAX_NUM_FORMS": "1",
        "usage_limit-0-concurrent_streams": "2",
        "usage_limit-0-starts_per_minute": "",
        "usage_limit-0-tokens_per_day": "5000",
        "usage_limit-0-id": "",
        "usage_limit-0-user": str(alice.pk),
    }

    response = admin_client.post(f"/admin/auth/user/{alice.pk}/change/", data)

    assert response.status_code == 302, response.context["errors"]
    own = UsageLimit.objects.get(user=alice)
    assert (own.concurrent_streams, own.starts_per_minute, own.tokens_per_day) == (
        2,
        None,
        5000,
    )
    assert limits.limits_for(alice.pk) == limits.Limits(
        concurrent_streams=2, starts_per_minute=100_000, tokens_per_day=5000
    )


def test_the_user_add_page_stays_django_s_own(admin_client):
    response = admin_client.get("/admin/auth/user/add/")

    assert response.status_code == 200
    assert "usage_limit-TOTAL_FORMS" not in response.content.decode()


def test_the_limits_list_shows_overrides_and_finds_them_by_username(
    admin_client, alice, bob
):
    UsageLimit.objects.create(user=alice, tokens_per_day=5000)
    UsageLimit.objects.create(user=bob, concurrent_streams=9)

    everyone = admin_client.get(LIMITS_URL)
    found = admin_client.get(LIMITS_URL, {"q": "alic"})

    assert everyone.status_code == 200
    assert [str(limit.user) for limit in everyone.context["cl"].result_list] == [
        "bob",
        "alice",
    ]
    page = everyone.content.decode()
    assert '<td class="field-tokens_per_day">5000</td>' in page
    assert '<td class="field-concurrent_streams">default</td>' in page
    assert [str(limit.user) for limit in found.context["cl"].result_list] == ["alice"]
