"""A bar chart of visits per day as inline SVG, built on the server: no JavaScript, no assets.

Bars are drawn in visit units inside a group whose transform scales them to the busiest day, so
the markup of past days does not depend on today's count. The home page builds the chart once per
process and history window, with today's bar and the scale left as slots (counter/home_page.py).
"""

from datetime import date
from urllib.parse import urlsplit

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 420
PLOT_HEIGHT = 100
HEIGHT = PLOT_HEIGHT + 18
Day = tuple[date, int]


def _bar(index: int, slot: float, day: date, visits: int | str) -> str:
    return (
        f'<rect x="{index * slot + slot * 0.15:.1f}" width="{slot * 0.7:.1f}" height="{visits}">'
        f"<title>{day.isoformat()}: {visits} visits</title></rect>"
    )


def history_scale(*, busiest: int) -> str:
    """The vertical scale that makes the busiest day's bar (today included) fill the plot."""
    return f"{PLOT_HEIGHT / (busiest or 1):.6g}"


def history_svg(*, past: tuple[Day, ...], today: date, visits: str, scale: str) -> SafeString:
    """Bars for the `past` days, oldest first, then today's `visits` bar, all scaled by `scale`
    (history_scale). Both arrive as text, so the page can leave them as slots to fill in
    per visit (counter/home_page.py). Only dates, ints and those two reach the markup."""
    slot = WIDTH / (len(past) + 1)
    bars = "".join(_bar(index, slot, day, int(count)) for index, (day, count) in enumerate(past))
    first = past[0][0] if past else today
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-label="Visits per day, last {len(past) + 1} days">'
        f'<g transform="translate(0 {PLOT_HEIGHT}) scale(1 -{scale})">'
        f"{bars}{_bar(len(past), slot, today, visits)}</g>"
        f'<line class="axis" x1="0" y1="{PLOT_HEIGHT}" x2="{WIDTH}" y2="{PLOT_HEIGHT}"/>'
        f'<text x="0" y="{HEIGHT - 4}">{first:%b %d}</text>'
        f'<text x="{WIDTH}" y="{HEIGHT - 4}" text-anchor="end">{today:%b %d}</text></svg>'
    )


def cluster_svg(counts: list) -> SafeString:
    """One horizontal bar per pod, scaled to the busiest; an unreachable pod gets a red mark and
    its reason. Pod names and reasons come from the network, so they are escaped."""
    row, label_width = 34, 150
    peak = max((count.visits or 0 for count in counts), default=0) or 1
    rows = []
    for index, count in enumerate(counts):
        y = index * row
        name = escape(count.pod or urlsplit(count.url).netloc)
        if count.error is None:
            length = (WIDTH - label_width - 60) * count.visits / peak
            bar = (
                f'<rect x="{label_width}" y="{y + 6}" width="{length:.1f}" height="20"/>'
                f'<text x="{label_width + length + 6:.1f}" y="{y + 21}">{count.visits}</text>'
            )
        else:
            bar = (
                f'<rect class="down" x="{label_width}" y="{y + 6}" width="6" height="20"/>'
                f'<text x="{label_width + 14}" y="{y + 21}">'
                f"unreachable: {escape(count.error)}</text>"
            )
        rows.append(
            f'<g class="pod"><text x="{label_width - 8}" y="{y + 21}" text-anchor="end">'
            f"{name}</text>{bar}</g>"
        )
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {max(len(counts), 1) * row}" role="img"'
        f' aria-label="Visits per pod">{"".join(rows)}</svg>'
    )
