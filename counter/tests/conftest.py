from datetime import date

import pytest

from counter import home_page, visits
from counter.models import VisitCounter
from counter.visits import COUNTER_ID

DAY = date(2026, 11, 24)


@pytest.fixture(autouse=True)
def _process_state(monkeypatch):
    """Per-process state of counter.visits and counter.home_page, fresh for each test."""
    monkeypatch.setattr(visits, "_past_days", None)
    monkeypatch.setattr(home_page, "_frame", None)


@pytest.fixture
def counter(db) -> VisitCounter:
    """A prepared database: the counter row exists, as `manage.py prepare` leaves it."""
    return VisitCounter.objects.create(pk=COUNTER_ID, total=0)
