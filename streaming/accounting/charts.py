"""Accessible SVG bar charts of usage per day, for the admin's usage view."""

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from streaming.accounting.usage import Day

# Chart geometry, in SVG user units.
_WIDTH, _HEIGHT = 720, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 12, 16, 44


def for_days(days: Sequence[Day], *, scope: str) -> tuple[SafeString, ...]:
    """The tokens chart and the streams chart of `days`, and the cost chart when any
    day has a cost; `scope` ends every title."""
    charts = (
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
    if all(day.cost is None for day in days):
        return charts
    cost = chart(
        [(day.day, day.cost or Decimal(0)) for day in days],
        title=f"Cost per day, {scope}",
        unit="cost",
    )
    return (*charts, cost)


def chart(
    points: Sequence[tuple[dt.date, int | Decimal]], *, title: str, unit: str
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


def _nice_ceiling(value: int | Decimal) -> int | Decimal:
    """The smallest 1, 2 or 5 times a power of ten that is at least `value` (1 for
    nothing); below 1 only for amounts (a Decimal)."""
    if value <= 0:
        return 1
    magnitude = Decimal(1).scaleb(Decimal(value).adjusted())
    top = next(f * magnitude for f in (1, 2, 5, 10) if f * magnitude >= value)
    return int(top) if isinstance(value, int) else top


def _y(value: int | Decimal, top: int | Decimal) -> float:
    plot = _HEIGHT - _TOP - _BOTTOM
    return _TOP + plot - plot * value / top


def _y_axis(top: int | Decimal, unit: str) -> SafeString:
    ticks = []
    if isinstance(top, Decimal):
        marks = (0, top / 2, top)
    else:
        marks = (0, top // 2, top) if top >= 2 else (0, top)
    for tick in marks:
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


def _x_axis(points: Sequence[tuple[dt.date, int | Decimal]], step: float) -> SafeString:
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
    index: int,
    day: dt.date,
    value: int | Decimal,
    *,
    top: int | Decimal,
    step: float,
    unit: str,
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
