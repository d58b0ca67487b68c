"""Usage accounting: streams, tokens and cost per user per UTC day, as rows and CSV
(the charts are in `charts`).

Everything counts by the day a stream started, in UTC, whatever the site time zone.
"""

import csv
import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from streaming.accounting import costs
from streaming.models import StreamLog

FAILED = (StreamLog.Status.ERROR, StreamLog.Status.INTERRUPTED)
CSV_HEADER = (
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
)
# Summed per row, as the row's field of the same name.
_SUMMED = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
# Spreadsheets run a cell starting with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Row:
    """One user's usage on one UTC day."""

    day: dt.date
    user_id: int
    username: str
    streams: int
    errors: int
    input_tokens: int  # the whole prompts, the cached parts included
    output_tokens: int  # the reasoning included
    estimated: int  # streams whose token counts are our estimate
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal | None = None  # None: none of the streams had a price

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class Day:
    """Everyone's usage on one UTC day, for the charts."""

    day: dt.date
    streams: int
    tokens: int
    cost: Decimal | None = None


def today() -> dt.date:
    return timezone.now().astimezone(dt.UTC).date()


def first_day(days: int) -> dt.date:
    """The first UTC day of a window of `days` days that ends today."""
    return today() - dt.timedelta(days=days - 1)


def rows(*, since: dt.date, user_id: int | None = None) -> list[Row]:
    """Usage per user per UTC day from `since` on, newest day first, then by username.

    One query. Token counts still unknown (a stream in flight) count as 0; errors are
    streams that failed or were interrupted.
    """
    logs = StreamLog.objects.filter(
        created_at__gte=dt.datetime.combine(since, dt.time.min, tzinfo=dt.UTC)
    )
    if user_id is not None:
        logs = logs.filter(user_id=user_id)
    grouped = (
        logs.annotate(day=TruncDate("created_at", tzinfo=dt.UTC))
        .values("day", "user_id", "user__username")
        .annotate(
            streams=Count("id"),
            errors=Count("id", filter=Q(status__in=FAILED)),
            **{f"{name}_sum": Coalesce(Sum(name), 0) for name in _SUMMED},
            estimated=Count("id", filter=Q(tokens_estimated=True)),
            cost_sum=Sum("cost"),
        )
        .order_by("-day", "user__username", "user_id")
    )
    return [
        Row(
            day=group["day"],
            user_id=group["user_id"],
            username=group["user__username"],
            streams=group["streams"],
            errors=group["errors"],
            estimated=group["estimated"],
            cost=_exact(group["cost_sum"]),
            **{name: group[f"{name}_sum"] for name in _SUMMED},
        )
        for group in grouped
    ]


def totals(rows: Iterable[Row]) -> dict[str, int | Decimal | None]:
    """The column sums of `rows`, for a table footer."""
    sums = dict.fromkeys(("streams", "errors", *_SUMMED, "estimated"), 0)
    cost = None
    for row in rows:
        for name in sums:
            sums[name] += getattr(row, name)
        cost = _add(cost, row.cost)
    total = sums["input_tokens"] + sums["output_tokens"]
    return sums | {"total_tokens": total, "cost": cost}


def daily(rows: Iterable[Row], *, since: dt.date, until: dt.date) -> list[Day]:
    """Every day from `since` to `until` inclusive, summed over users; zero when idle."""
    streams: dict[dt.date, int] = {}
    tokens: dict[dt.date, int] = {}
    cost: dict[dt.date, Decimal | None] = {}
    for row in rows:
        streams[row.day] = streams.get(row.day, 0) + row.streams
        tokens[row.day] = tokens.get(row.day, 0) + row.total_tokens
        cost[row.day] = _add(cost.get(row.day), row.cost)
    span = (until - since).days + 1
    days = [since + dt.timedelta(days=offset) for offset in range(span)]
    return [
        Day(day, streams.get(day, 0), tokens.get(day, 0), cost.get(day)) for day in days
    ]


def _exact(cost: Decimal | None) -> Decimal | None:
    # To the stored precision: SQLite sums decimals as floats.
    return None if cost is None else cost.quantize(costs.UNIT)


def _add(total: Decimal | None, cost: Decimal | None) -> Decimal | None:
    """A sum of costs that stays None while none is known."""
    if cost is None:
        return total
    return cost if total is None else total + cost


def to_csv(rows: Iterable[Row]) -> str:
    """The rows as CSV with a header, user data defused against formula injection."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for row in rows:
        writer.writerow(
            (
                row.day.isoformat(),
                _defuse(row.username),
                row.streams,
                row.errors,
                row.input_tokens,
                row.output_tokens,
                row.total_tokens,
                row.estimated,
                row.cached_input_tokens,
                row.cache_write_tokens,
                row.reasoning_tokens,
                "" if row.cost is None else row.cost,
            )
        )
    return out.getvalue()


def _defuse(text: str) -> str:
    # A leading quote makes spreadsheets read the cell as text (OWASP "CSV Injection").
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text
