import re
from datetime import date, timedelta

from counter.chart import PLOT_HEIGHT, history_chart_svg

TODAY = date(2026, 11, 24)


def past(*counts: int) -> tuple[tuple[date, int], ...]:
    return tuple((TODAY - timedelta(days=len(counts) - n), c) for n, c in enumerate(counts))


def test_one_bar_per_day_with_titles():
    svg = history_chart_svg(past=past(3, 0, 7), today=TODAY, visits=5)
    assert svg.count("<rect") == 4
    assert "<title>2026-11-21: 3 visits</title>" in svg
    assert "<title>2026-11-24: 5 visits</title>" in svg
    assert 'aria-label="Visits per day, last 4 days"' in svg


def test_bars_scale_to_the_busiest_day_including_today():
    svg = history_chart_svg(past=past(10, 20), today=TODAY, visits=40)
    scale = float(re.search(r"scale\(1 -([\d.e-]+)\)", svg).group(1))
    assert scale * 40 == PLOT_HEIGHT
    svg = history_chart_svg(past=past(10, 20), today=TODAY, visits=0)
    scale = float(re.search(r"scale\(1 -([\d.e-]+)\)", svg).group(1))
    assert scale * 20 == PLOT_HEIGHT


def test_no_visits_at_all_draws_flat_bars():
    svg = history_chart_svg(past=past(0, 0), today=TODAY, visits=0)
    assert svg.count('height="0"') == 3
    assert "Nov 22" in svg and "Nov 24" in svg
