"""Usage accounting: streams and tokens per user per UTC day, as rows, SVG and CSV.

Everything counts by the day a stream started, in UTC, whatever the site time zone.
"""

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

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
)
# Spreadsheets run a cell starting with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# Chart geometry, in SVG user units.
_WIDTH, _HEIGHT = 720, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 12, 16, 44


@dataclass(frozen=True)
class Row:
    """One user's usage on one UTC day."""

    day: dt.date
    user_id: int
    username: str
    streams: int
    errors: int
    input_tokens: int
    output_tokens: int
    estimated: int  # streams whose token counts are our estimate

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class Day:
    """Everyone's usage on one UTC day, for the charts."""

    day: dt.date
    streams: int
    tokens: int


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
            input_sum=Coalesce(Sum("input_tokens"), 0),
            output_sum=Coalesce(Sum("output_tokens"), 0),
            estimated=Count("id", filter=Q(tokens_estimated=True)),
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
            input_tokens=group["input_sum"],
            output_tokens=group["output_sum"],
            estimated=group["estimated"],
        )
        for group in grouped
    ]


def totals(rows: Iterable[Row]) -> dict[str, int]:
    """The column sums of `rows`, for a table footer."""
    sums = dict.fromkeys(
        ("streams", "errors", "input_tokens", "output_tokens", "estimated"), 0
    )
    for row in rows:
        for name in sums:
            sums[name] += getattr(row, name)
    return sums | {"total_tokens": sums["input_tokens"] + sums["output_tokens"]}


def daily(rows: Iterable[Row], *, since: dt.date, until: dt.date) -> list[Day]:
    """Every day from `since` to `until` inclusive, summed over users; zero when idle."""
    streams: dict[dt.date, int] = {}
    tokens: dict[dt.date, int] = {}
    for row in rows:
        streams[row.day] = streams.get(row.day, 0) + row.streams
        tokens[row.day] = tokens.get(row.day, 0) + row.total_tokens
    span = (until - since).days + 1
    days = [since + dt.timedelta(days=offset) for offset in range(span)]
    return [Day(day, streams.get(day, 0), tokens.get(day, 0)) for day in days]


def charts(days: Sequence[Day], *, scope: str) -> tuple[SafeString, SafeString]:
    """The tokens chart and the streams chart of `days`; `scope` ends both titles."""
    return (
        chart(
            [(day.day, day.tokens) for day in days],
            title=f"Total tokens per day, {scope}",
            unit="tokens",
        ),
        chart(
            [(day.day, day.streams) for day in days],
            title=f"Streams per day, {scope}",
            unit="streams",
        ),
    )


def chart(
    points: Sequence[tuple[dt.date, int]], *, title: str, unit: str
) -> SafeString:
    """An accessible SVG bar chart, one bar per (day, value) point, oldest first.

    Every bar has a `<title>` tooltip, and the chart a title and a summary for screen
    readers. All text is escaped, so `title` may hold user data.
    """
    top = _nice_ceiling(max((value for _, value in points), default=0))
    step = (_WIDTH - _LEFT - _RIGHT) / max(len(points), 1)
    summary = f"{sum(v for _, v in points):,} {unit} over {len(points)} days"
    return format_html(
        '<svg class="usage-chart" role="img" aria-label="{}" viewBox="0 0 {} {}"'
        ' xmlns="http://www.w3.org/2000/svg"><title>{}</title><desc>{}</desc>'
        "{}{}{}</svg>",
        title,
        _WIDTH,
        _HEIGHT,
        title,
        summary,
        _y_axis(top, unit),
        _x_axis(points, step),
        format_html_join(
            "",
            "{}",
            (
                (_bar(i, day, value, top=top, step=step, unit=unit),)
                for i, (day, value) in enumerate(points)
            ),
        ),
    )


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
            )
        )
    return out.getvalue()


def _defuse(text: str) -> str:
    # A leading quote makes spreadsheets read the cell as text (OWASP "CSV Injection").
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least `value` (min 1)."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if factor * magnitude >= value:
                return factor * magnitude
        magnitude *= 10


def _y(value: int, top: int) -> float:
    plot = _HEIGHT - _TOP - _BOTTOM
    return _TOP + plot - plot * value / top


def _y_axis(top: int, unit: str) -> SafeString:
    ticks = []
    for tick in (0, top // 2, top) if top >= 2 else (0, top):
        y = _num(_y(tick, top))
        ticks.append((_LEFT, _WIDTH - _RIGHT, y, y, _LEFT - 6, y, f"{tick:,}"))
    lines = format_html_join(
        "",
        '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}" stroke="#ccc"/>'
        '<text class="tick" x="{}" y="{}" text-anchor="end" dy="0.32em"'
        ' fill="currentColor">{}</text>',
        ticks,
    )
    return format_html(
        '{}<text class="axis-label" transform="translate(14 {}) rotate(-90)"'
        ' text-anchor="middle" fill="currentColor">{}</text>',
        lines,
        _num(_TOP + (_HEIGHT - _TOP - _BOTTOM) / 2),
        unit,
    )


def _x_axis(points: Sequence[tuple[dt.date, int]], step: float) -> SafeString:
    def x_of(index: int) -> str:
        return _num(_LEFT + step * (index + 0.5))

    last = len(points) - 1
    anchors = {0: "start", last // 2: "middle", last: "end"} if points else {}
    labels = format_html_join(
        "",
        '<text class="tick" x="{}" y="{}" text-anchor="{}" fill="currentColor">{}</text>',
        (
            (x_of(i), _HEIGHT - _BOTTOM + 16, anchor, points[i][0].isoformat())
            for i, anchor in sorted(anchors.items())
        ),
    )
    return format_html(
        '{}<text class="axis-label" x="{}" y="{}" text-anchor="middle"'
        ' fill="currentColor">date (UTC)</text>',
        labels,
        _num(_LEFT + (_WIDTH - _LEFT - _RIGHT) / 2),
        _HEIGHT - 6,
    )


def _bar(
    index: int, day: dt.date, value: int, *, top: int, step: float, unit: str
) -> SafeString:
    # The whole column carries the tooltip, so an empty day can be hovered too.
    x = _LEFT + step * index
    width = max(step * 0.8, 1)
    y = _y(value, top)
    return format_html(
        '<g class="day"><title>{}: {} {}</title>'
        '<rect class="column" x="{}" y="{}" width="{}" height="{}"'
        ' fill="transparent"/>'
        '<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="#79aec8"/></g>',
        day.isoformat(),
        f"{value:,}",
        unit if value != 1 else unit.removesuffix("s"),
        _num(x),
        _TOP,
        _num(step),
        _HEIGHT - _TOP - _BOTTOM,
        _num(x + (step - width) / 2),
        _num(y),
        _num(width),
        _num(_y(0, top) - y),
    )


def _num(value: float) -> str:
    return f"{value:.1f}"
