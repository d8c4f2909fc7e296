"""A bar chart of visits per day as inline SVG, built on the server: no JavaScript, no assets.

Bars are drawn in visit units inside a group whose transform scales them to the busiest day, so
the markup of past days does not depend on today's count and is built once per process per
window (this runs on every GET /).
"""

import functools
from datetime import date

from django.utils.safestring import SafeString, mark_safe

WIDTH = 420
PLOT_HEIGHT = 100
HEIGHT = PLOT_HEIGHT + 18
Day = tuple[date, int]


def _bar(index: int, slot: float, day: date, visits: int) -> str:
    return (
        f'<rect x="{index * slot + slot * 0.15:.1f}" width="{slot * 0.7:.1f}" height="{visits}">'
        f"<title>{day.isoformat()}: {visits} visits</title></rect>"
    )


@functools.lru_cache(maxsize=4)
def _past_bars(past: tuple[Day, ...]) -> tuple[str, int]:
    slot = WIDTH / (len(past) + 1)
    bars = "".join(_bar(index, slot, day, int(visits)) for index, (day, visits) in enumerate(past))
    return bars, max((int(visits) for _, visits in past), default=0)


def history_chart_svg(*, past: tuple[Day, ...], today: date, visits: int) -> SafeString:
    """Bars for the `past` days, oldest first, then today. Only dates and ints reach the markup."""
    bars, past_peak = _past_bars(past)
    scale = PLOT_HEIGHT / (max(past_peak, visits) or 1)
    first = past[0][0] if past else today
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-label="Visits per day, last {len(past) + 1} days">'
        f'<g transform="translate(0 {PLOT_HEIGHT}) scale(1 -{scale:.6g})">'
        f"{bars}{_bar(len(past), WIDTH / (len(past) + 1), today, int(visits))}</g>"
        f'<text x="0" y="{HEIGHT - 4}">{first:%b %d}</text>'
        f'<text x="{WIDTH}" y="{HEIGHT - 4}" text-anchor="end">{today:%b %d}</text></svg>'
    )
