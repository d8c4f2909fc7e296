import re
from datetime import date, timedelta

from counter.svg import PLOT_HEIGHT, history_scale, history_svg

TODAY = date(2026, 11, 24)


def past(*counts: int) -> tuple[tuple[date, int], ...]:
    return tuple((TODAY - timedelta(days=len(counts) - n), c) for n, c in enumerate(counts))


def chart(past_days: tuple[tuple[date, int], ...], visits: int) -> str:
    scale = history_scale(busiest=max([visits] + [count for _, count in past_days]))
    return history_svg(past=past_days, today=TODAY, visits=str(visits), scale=scale)


def test_one_bar_per_day_with_titles():
    svg = chart(past(3, 0, 7), 5)
    assert svg.count("<rect") == 4
    assert "<title>2026-11-21: 3 visits</title>" in svg
    assert "<title>2026-11-24: 5 visits</title>" in svg
    assert 'aria-label="Visits per day, last 4 days"' in svg


def test_bars_scale_to_the_busiest_day_including_today():
    svg = chart(past(10, 20), 40)
    scale = float(re.search(r"scale\(1 -([\d.e-]+)\)", svg).group(1))
    assert scale * 40 == PLOT_HEIGHT
    svg = chart(past(10, 20), 0)
    scale = float(re.search(r"scale\(1 -([\d.e-]+)\)", svg).group(1))
    assert scale * 20 == PLOT_HEIGHT


def test_no_visits_at_all_draws_flat_bars():
    svg = chart(past(0, 0), 0)
    assert svg.count('height="0"') == 3
    assert "Nov 22" in svg and "Nov 24" in svg
