from datetime import timedelta

import pytest
from django.template.loader import render_to_string

from counter import home_page
from counter.home_page import home_page_html
from counter.store.visits import VisitTally, visit_record, visits_past_days
from counter.svg import history_scale, history_svg
from counter.tests.conftest import DAY


def rendered(*, tally: VisitTally, past, pod: str, version: str) -> str:
    """The page as rendering the template for this one visit gives it."""
    scale = history_scale(busiest=max([tally.today] + [count for _, count in past.days]))
    chart = history_svg(past=past.days, today=DAY, visits=str(tally.today), scale=scale)
    context = {
        "pod": pod,
        "total": str(tally.total),
        "today": str(tally.today),
        "chart": chart,
        "days": len(past.days) + 1,
        "version": version,
    }
    return render_to_string("counter/home.html", context)


def test_filled_page_is_the_page_rendered_for_each_visit(counter, settings):
    settings.POD_NAME = "app-python-2"
    for _ in range(3):
        visit_record(day=DAY - timedelta(days=2))
    past = visits_past_days(today=DAY)
    for _ in range(5):  # today's visits outgrow the busiest past day: the scale changes
        tally = visit_record(day=DAY)
        version = settings.APP_VERSION
        expected = rendered(tally=tally, past=past, pod="app-python-2", version=version)
        assert home_page_html(tally=tally, past=past) == expected
    assert '<strong id="total">8</strong>' in expected
    assert "\0" not in expected


def test_page_follows_a_new_window_and_a_new_pod_name(counter, settings):
    tally = visit_record(day=DAY)
    assert "Nov 11" in home_page_html(tally=tally, past=visits_past_days(today=DAY))
    next_day = DAY + timedelta(days=1)
    tally = visit_record(day=next_day)
    html = home_page_html(tally=tally, past=visits_past_days(today=next_day))
    assert "Nov 12" in html and "Nov 11" not in html
    assert "<title>2026-11-24: 1 visits</title>" in html  # yesterday is a past bar now
    settings.POD_NAME = "app-python-7"
    html = home_page_html(tally=tally, past=visits_past_days(today=next_day))
    assert '<span class="pod" id="pod">app-python-7</span>' in html


def test_a_template_without_the_slots_is_a_clear_error(counter, monkeypatch):
    monkeypatch.setattr(home_page, "render_to_string", lambda *args: "<p>no numbers here</p>")
    tally = visit_record(day=DAY)
    with pytest.raises(RuntimeError, match="rendered with slots"):
        home_page_html(tally=tally, past=visits_past_days(today=DAY))
